//! Shared harness for the end-to-end tests: a throwaway mosquitto, a throwaway
//! sshd, the agent binary, and `ssh`/`scp`/`sftp`/`rsync` commands that reach
//! that sshd either through `mqtt-proxy` or directly through `nc`.
//!
//! Every process listens on a free loopback port chosen at run time and lives
//! in its own temporary directory, and every test gets its own node id and
//! topic prefix, so test functions can run in parallel without crosstalk.
//! Every process this module starts is killed by pid when its owner drops,
//! including while a failing test unwinds.
//!
//! Synchronisation is by polling with a deadline (a port that accepts, a line
//! in a log), never by sleeping for a guessed duration.
//!
//! One file per concern, all re-exported here: `host` (ports, names, tools),
//! `process` (commands and their exit), `broker`, `amqtt` (a 3.1.1-only broker), `sshd`, `tinyproxy` (an HTTP CONNECT proxy), `agent`, `ssh`
//! (client commands and `mqtt-proxy` itself), `procfs` (what a process
//! holds), `files` (test data), `pki` (a test CA), `raw` (a bare MQTT
//! client), `netns` (a network namespace per test, a connection whose
//! packets are dropped, signals), `relay` (a fault-injecting TCP relay, used as
//! `common::relay::Relay`), `throttle` (a relay that enforces a hosted
//! broker's per-connection limits, `common::throttle::Throttle`) and `pace`
//! (a slow link with a deep buffer, `common::pace::PaceRelay`).

mod agent;
mod amqtt;
mod broker;
mod files;
mod host;
pub mod mqtt_wire;
mod netns;
pub mod pace;
mod pki;
mod process;
mod procfs;
mod raw;
pub mod relay;
mod ssh;
mod sshd;
pub mod throttle;
mod tinyproxy;

pub use self::{
    agent::*, amqtt::*, broker::*, files::*, host::*, netns::*, pki::*, process::*, procfs::*,
    raw::*, ssh::*, sshd::*, tinyproxy::*,
};
