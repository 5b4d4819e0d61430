//! mqtt-proxy: an OpenSSH ProxyCommand tunnel over MQTT.
//!
//! Code map (the README points here; keep it true):
//! - `protocol`: the wire format, one part per concern: `protocol::limits`
//!   (sizes), `protocol::frames` (frame layout, encode/decode, QoS, PAD),
//!   `protocol::refuse` (REFUSE payloads), `protocol::topics` (topic
//!   layout), `protocol::ids` (node and client ids, prefixes, random ids),
//!   `protocol::presence` (the retained presence message); all used through
//!   `protocol`'s re-exports.
//! - `stream`: one session's reliable byte stream, no I/O: `stream::send`
//!   sequences and retransmits chunks, `stream::recv` reorders, delivers and
//!   acknowledges them, `stream::rtt` estimates the round trip and the
//!   retransmission timeout, `stream::congestion` keeps the delay-based
//!   congestion window (docs/interactive.md), `stream::autotune` grows the
//!   receive window with the round trip, `stream::segment` discovers the
//!   largest message that gets through, `stream::direction` tells which way bytes went lately,
//!   `stream::liveness` decides when a silent peer is probed or stalled and
//!   keeps a stop of this process from counting as its silence,
//!   `stream::framing` builds the outgoing frames; `stream` itself joins
//!   them and keeps the session timers.
//! - `tunnel`: drives a `stream` over real I/O (a socket or pipes on one side,
//!   MQTT frames on the other).
//! - `mqtt`: the one task that owns the rumqttc event loop (connect,
//!   reconnect, resubscribe, MQTT 5 with fallback to 3.1.1): `mqtt::client`
//!   is the handle everything else uses, `mqtt::engine` hides rumqttc's two
//!   APIs and the transports (TCP, TLS, WebSocket, HTTP proxy),
//!   `mqtt::describe` words the user-facing connection errors,
//!   `mqtt::pacer` keeps to a hosted broker's per-connection rate caps,
//!   `mqtt::schedule` orders the publishes that wait for them (small frames
//!   first, sessions in turn) and `mqtt::gate` makes them wait,
//!   `mqtt::size` finds a packet size limit from disconnects,
//!   `mqtt::socket` tunes rumqttc's socket (acks at once, probes a silent
//!   link), `mqtt::versions` remembers which version each broker spoke,
//!   `mqtt::failover` picks the broker of a list to connect to, without
//!   I/O.
//! - `config`: flags, environment and validated settings; `config::file`
//!   reads the config file, `config::liveness` the probing and resume
//!   timeouts, `config::url` parses broker and proxy URLs,
//!   `config::brokers` lists of them,
//!   `config::secret` keeps passwords out of `Debug`.
//! - `tls`: rustls client configuration and TLS error messages.
//! - `auth`: token buckets for admission, the challenge lifetime.
//! - `access`: who may open a session on the agent (issue 24): OpenSSH's
//!   `authorized_keys` and revoked keys (`access::lists`), the proofs a
//!   client presents and their encoding (`access::proof`), the rules
//!   without I/O (`access` itself) and the files' re-reading
//!   (`access::watch`).
//! - `identity`: the workstation's side of `access`: the user's keys from
//!   ssh-agent or `--identity FILE`, and the proofs they sign.
//! - `handshake`: the opening's key agreement (X25519, HKDF), the password
//!   answer bound to it, and the session keys.
//! - `seal`: sealing and opening frames with the session keys (AES-256-GCM),
//!   and the replay window.
//! - `agent`: `mqtt-proxy-agent`: its settings (`agent::settings`), presence
//!   (`agent::presence`), session admission without I/O
//!   (`agent::admission`), routing frames and carrying out admission's
//!   decisions (`agent::dispatch`), the session task (`agent::session`), and
//!   what they share (`agent::ctx`).
//! - `proxy`: `mqtt-proxy <node>`: its arguments and settings
//!   (`proxy::args`), with a list of brokers which one a session uses,
//!   decided without I/O (`proxy::choice`) from the node's presence on
//!   each (`proxy::lookup`, through `list`), the opening handshake without
//!   I/O (`proxy::opening`),
//!   the session run that drives the opening and then carries the session
//!   on stdio (`proxy::session`), and the one-line failures
//!   (`proxy::error`).
//! - `list`: `mqtt-proxy --list` (complete or an error) and `--forget`:
//!   what a pass counts, when passes agree and whether a node may be
//!   forgotten, without I/O (`list::pass`), the broker talk that carries
//!   it out (`list::broker`), the merge of several brokers' listings
//!   (`list::merge`), which nodes are printed (`list::filter`) and how
//!   (`list::render`).
//! - `stdio`: the proxy's end of the ssh pipes.
//! - `notify`: systemd readiness notification (the `sd-notify` crate).
//! - `logging`: `tracing` to stderr.
//! - `heap`: glibc keeps freed buffers for reuse (set at start-up).
//!
//! Imports run one way, with no loops: the roles (`agent`, `proxy`, `list`)
//! use `tunnel`, `mqtt`, `config` and `protocol`, and `proxy` uses `list`
//! to look a node up on a list of brokers; `tunnel` uses `stream` and
//! `mqtt`; `stream` and `mqtt` use `protocol`; `mqtt` uses `config`;
//! `config` uses neither; `identity` uses `access` and `config`, and `access`
//! uses none of them. Inside `agent`, `proxy`, `list`, `protocol`,
//! `stream`, `mqtt` and `config`, the parent uses its parts and
//! the parts use only siblings (and `stream::framing`, which holds more of
//! `Stream`'s methods, its `Stream`).
#![forbid(unsafe_code)]

pub mod access;
pub mod agent;
pub mod auth;
pub mod config;
pub mod handshake;
pub mod heap;
pub mod identity;
pub mod list;
pub mod logging;
pub mod mqtt;
pub mod notify;
pub mod protocol;
pub mod proxy;
pub mod seal;
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
