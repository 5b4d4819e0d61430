//! mqtt-proxy: an OpenSSH ProxyCommand tunnel over MQTT.
//!
//! Code map (the README points here; keep it true):
//! - `protocol`: the wire format: topics, frame layout, limits, encode/decode.
//! - `stream`: one session's reliable byte stream: sequencing, acks, windows,
//!   retransmission, with the round-trip estimator and congestion window in
//!   their own types. No I/O.
//! - `tunnel`: drives a `stream` over real I/O (a socket or pipes on one side,
//!   MQTT frames on the other).
//! - `mqtt`: the one task that owns the rumqttc event loop (connect,
//!   reconnect, resubscribe), and the user-facing connection errors.
//! - `config`: flags, environment, config file, validated settings.
//! - `tls`: rustls client configuration and TLS error messages.
//! - `auth`: agent passwords (challenge-response) and token buckets.
//! - `agent`: `mqtt-proxy-agent`: presence, session admission, sessions.
//! - `proxy`: `mqtt-proxy <node>`: opening a session, carrying it on stdio.
//! - `list`: `mqtt-proxy --list` (complete or an error) and `--forget`.
//! - `stdio`: the proxy's end of the ssh pipes.
//! - `notify`: systemd readiness notification.
//! - `logging`: `tracing` to stderr.
//!
//! Imports run one way: the roles (`agent`, `proxy`, `list`) use `tunnel`,
//! `mqtt`, `config` and `protocol`; `mqtt` uses `config`; `config` uses
//! neither.
#![forbid(unsafe_code)]

pub mod agent;
pub mod auth;
pub mod config;
pub mod list;
pub mod logging;
pub mod mqtt;
pub mod notify;
pub mod protocol;
pub mod proxy;
pub mod stdio;
pub mod stream;
pub mod tls;
pub mod tunnel;

/// `mqtt-proxy`'s exit status for every failure: what ssh itself uses for
/// connection failures, so scripts see one code either way.
pub const EXIT_PROXY_FAILURE: u8 = 255;

/// The agent's exit status when another agent with the same node id took
/// over: distinct, so systemd does not restart it
/// (`RestartPreventExitStatus=3` in the unit).
pub const EXIT_AGENT_TAKEN_OVER: u8 = 3;
