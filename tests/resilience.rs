//! End-to-end: the tunnel survives the network. A real mosquitto is killed
//! and restarted, or a fault-injecting relay ([`crate::common::relay::Relay`]) cuts
//! only the proxy's or only the agent's broker connection, in the middle of
//! real scp/ssh sessions through `mqtt-proxy` and `mqtt-proxy-agent`; outages
//! longer than `--resume-timeout` end sessions cleanly; a killed proxy, a
//! slow reader and many short sessions leave no resources behind in the agent.
//!
//! Every test has its own broker, sshd, agent, node id and topic prefix, so
//! they run in parallel. Sleeps only create outages of a given length; all
//! other waiting is polling with a deadline.
//!
//! One file per concern: `relay` (the fault-injecting relay's self-test),
//! `outages` (outages shorter than the resume timeout), `lost_peers`
//! (outages longer than it, a killed proxy), `agents` (an agent started
//! before its broker, two agents for one node), `resources` (a slow reader,
//! many sessions) and `distant` (scp through a distant broker). This file
//! holds the setup they share.

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::relay::Relay;
use crate::common::*;
use tempfile::TempDir;

mod agents;
mod distant;
mod lost_peers;
mod outages;
mod relay;
mod resources;

/// Size of the big transfers (the same as the undisturbed tunnel tests).
const BIG: u64 = 64 << 20;
/// Bound for a single 64 MiB transfer; only there to turn a stall into a failure.
const BIG_TIMEOUT: Duration = Duration::from_secs(300);
/// Length of the outages that sessions must survive (far below the default
/// 60 s resume timeout).
const OUTAGE: Duration = Duration::from_secs(3);

/// A broker, an sshd, unique names and a scratch directory; the agent and the
/// client side are set up per test (direct or through a relay, with flags).
struct Setup {
    sshd: Sshd,
    broker: Broker,
    names: Names,
    dir: TempDir,
}

impl Setup {
    fn new(test: &str) -> Setup {
        Setup::with_broker_conf(test, "")
    }

    fn with_broker_conf(test: &str, broker_conf: &str) -> Setup {
        let broker = Broker::start(broker_conf);
        let sshd = Sshd::start();
        let dir = tempfile::Builder::new()
            .prefix("mqtt-proxy-resilience.")
            .tempdir()
            .expect("create test tempdir");
        Setup {
            sshd,
            broker,
            names: names(test),
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An agent for this test's node connecting to `port` (the broker's or a
    /// relay's), online.
    fn agent(&self, port: u16, args: &[&str]) -> Agent {
        Agent::start_at(
            port,
            &self.sshd.target(),
            &self.names.node,
            &self.names.prefix,
            args,
        )
    }

    /// ssh/scp through `mqtt-proxy ARGS` connecting to `port`.
    fn ssh(&self, port: u16, args: &[&str]) -> Ssh {
        Ssh::via_proxy_at(port, &self.names.prefix, &self.names.node, &self.sshd, args)
    }

    /// Every log that could explain a failure.
    fn logs(&self, agent: &Agent) -> String {
        format!(
            "--- agent log ---\n{}\n--- sshd log (tail) ---\n{}\n--- broker log (tail) ---\n{}",
            agent.log_text(),
            tail(&self.sshd.log_text(), 30),
            tail(&self.broker.log_text(), 60)
        )
    }

    fn check(&self, agent: &Agent, out: &Output, code: i32, what: &str) {
        if out.status.code() != Some(code) {
            eprintln!("{}", self.logs(agent));
        }
        assert_exit_code(out, code, what);
    }
}

/// Read the first line the proxy writes (sshd's banner) within `timeout`;
/// the rest of stdout is drained by the thread until EOF.
fn read_banner(stdout: std::process::ChildStdout, timeout: Duration) -> Result<String, String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let res = reader.read_line(&mut line).map(|_| line);
        // The receiver is gone only if the caller timed out already.
        let _ = tx.send(res);
        // A read error only ends the draining.
        let _ = reader.read_to_end(&mut Vec::new());
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(line)) => Ok(line),
        Ok(Err(e)) => Err(format!("reading the proxy's stdout: {e}")),
        Err(_) => Err(format!("no line from the proxy within {timeout:?}")),
    }
}
