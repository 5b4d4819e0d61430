//! mqtt-proxy: an OpenSSH ProxyCommand tunnel over MQTT.
//!
//! File map: `protocol` (wire format), `stream` (sequencing, acks, window,
//! retransmission; no I/O), `tunnel` (drives a stream over real I/O), `mqtt`
//! (the connection owner), `config` (settings), `agent` and `proxy` (the two
//! roles), `stdio` (the proxy's end of the ssh pipes).
#![forbid(unsafe_code)]

pub mod agent;
pub mod auth;
pub mod config;
pub mod list;
pub mod mqtt;
pub mod notify;
pub mod protocol;
pub mod proxy;
pub mod stdio;
pub mod stream;
pub mod tls;
pub mod tunnel;
