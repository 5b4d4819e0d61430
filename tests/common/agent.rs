//! The `mqtt-proxy-agent` binary, started against a test broker and
//! watched through its log.

use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::broker::Broker;
use super::host::{agent_bin, MQTT_ENV};
use super::process::{append_log, read_lossy, wait_until, Killed};

/// How long a freshly started agent may take to log `agent is online`; it
/// connects to a loopback broker, so this only turns a hang into a failure.
pub const AGENT_ONLINE_TIMEOUT: Duration = Duration::from_secs(10);
/// The text the agent logs once it is connected to the broker.
pub const AGENT_ONLINE_TEXT: &str = "agent is online";
/// The line the agent and the proxy log (info) for every ended
/// session, with its counters as `name=N`.
pub const SESSION_CLOSED: &str = "session closed";

/// (sessions closed, the sum of their `field=N` counters) in a log of
/// [`SESSION_CLOSED`] lines; panics on a line without the field.
pub fn session_counts(log: &str, field: &str) -> (usize, u64) {
    let key = format!("{field}=");
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(SESSION_CLOSED)).collect();
    let sum = lines
        .iter()
        .map(|l| {
            let v = l
                .split(&key)
                .nth(1)
                .unwrap_or_else(|| panic!("no {field} field in {l:?}"));
            let digits: String = v.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u64>().expect("a count")
        })
        .sum();
    (lines.len(), sum)
}

/// The agent's `RUST_LOG` for [`Agent::assert_quick_acks`].
pub const QUICKACK_LOG: (&str, &str) = ("RUST_LOG", "info,mqtt_proxy::mqtt::socket=debug");

/// The agent's exit status when another agent took over its node id, as
/// [`ExitStatus::code`] reports it ([`mqtt_proxy::EXIT_AGENT_TAKEN_OVER`]).
pub const AGENT_TAKEN_OVER_STATUS: i32 = mqtt_proxy::EXIT_AGENT_TAKEN_OVER as i32;

/// A running `mqtt-proxy-agent`, killed when dropped.
pub struct Agent {
    /// The agent's own temporary directory, removed when dropped.
    _dir: TempDir,
    log: PathBuf,
    child: Option<Killed>,
    pub node: String,
    pub prefix: String,
}

impl Agent {
    /// Start an agent for `node` under `prefix` that forwards sessions to
    /// 127.0.0.1:`sshd_port`, and wait until it logs `agent is online`.
    pub fn start(broker: &Broker, sshd_port: u16, node: &str, prefix: &str) -> Agent {
        Agent::start_with(
            broker,
            &format!("127.0.0.1:{sshd_port}"),
            node,
            prefix,
            &[],
            &[],
        )
    }

    /// [`Agent::start`] with an arbitrary `--target`, extra arguments and
    /// extra environment variables. `RUST_LOG` defaults to `info` (the online
    /// line must be visible); `MQTT_PROXY_TEST_LOG` or an `env` entry overrides it.
    pub fn start_with(
        broker: &Broker,
        target: &str,
        node: &str,
        prefix: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Agent {
        let mut agent = Agent::spawn(broker, target, node, prefix, extra_args, env);
        agent.wait_online();
        agent
    }

    /// Start the agent without waiting for it to come online.
    pub fn spawn(
        broker: &Broker,
        target: &str,
        node: &str,
        prefix: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Agent {
        Agent::spawn_at(broker.port(), target, node, prefix, extra_args, env)
    }

    /// [`Agent::start_with`] against a broker (or a [`super::relay::Relay`]) on
    /// 127.0.0.1:`broker_port`.
    pub fn start_at(
        broker_port: u16,
        target: &str,
        node: &str,
        prefix: &str,
        extra_args: &[&str],
    ) -> Agent {
        let mut agent = Agent::spawn_at(broker_port, target, node, prefix, extra_args, &[]);
        agent.wait_online();
        agent
    }

    /// [`Agent::spawn`] against a broker (or a [`super::relay::Relay`], or nothing
    /// yet) on 127.0.0.1:`broker_port`.
    pub fn spawn_at(
        broker_port: u16,
        target: &str,
        node: &str,
        prefix: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Agent {
        let port = broker_port.to_string();
        let broker = ["--host", "127.0.0.1", "--port", &port];
        Agent::spawn_on(&broker, target, node, prefix, extra_args, env)
    }

    /// [`Agent::spawn`] with `broker_args` naming the broker(s), e.g.
    /// `["--broker", "mqtt://127.0.0.1:P1,mqtt://127.0.0.1:P2"]`.
    pub fn spawn_on(
        broker_args: &[&str],
        target: &str,
        node: &str,
        prefix: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Agent {
        let dir = tempfile::Builder::new()
            .prefix("mqtt-proxy-agent.")
            .tempdir()
            .expect("create agent tempdir");
        let log = dir.path().join("agent.log");
        let mut cmd = Command::new(agent_bin());
        for var in MQTT_ENV {
            cmd.env_remove(var);
        }
        let filter = std::env::var("MQTT_PROXY_TEST_LOG").unwrap_or_else(|_| "info".to_owned());
        cmd.env("RUST_LOG", filter)
            .args(broker_args)
            .args([
                "--topic-prefix",
                prefix,
                "--node-id",
                node,
                "--target",
                target,
            ])
            .args(extra_args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(append_log(&log))
            .stderr(append_log(&log));
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Agent {
            _dir: dir,
            log,
            child: Some(Killed(child)),
            node: node.to_owned(),
            prefix: prefix.to_owned(),
        }
    }

    /// Wait until the log contains `agent is online`; panic with the log
    /// otherwise. After a broker restart use [`Agent::wait_log`] with a count.
    pub fn wait_online(&mut self) {
        self.wait_log(AGENT_ONLINE_TEXT, 1, AGENT_ONLINE_TIMEOUT);
    }

    /// Wait until the log contains `text` at least `count` times while the
    /// agent keeps running; panic with the log otherwise.
    pub fn wait_log(&mut self, text: &str, count: usize, timeout: Duration) {
        let log = self.log.clone();
        let mut status = None;
        let child = self.child.as_mut().expect("agent is running");
        let ok = wait_until(timeout, || {
            status = child.exited();
            status.is_some() || read_lossy(&log).matches(text).count() >= count
        });
        if let (true, None) = (ok, status) {
            return;
        }
        panic!(
            "agent {} did not log {text:?} ({count}x) within {timeout:?}{}\n--- agent log ---\n{}",
            self.node,
            status
                .map(|s| format!("; it exited with {s}"))
                .unwrap_or_default(),
            self.log_text()
        );
    }

    /// Everything the agent has written to stderr/stdout.
    pub fn log_text(&self) -> String {
        read_lossy(&self.log)
    }

    /// The agent (started with [`QUICKACK_LOG`]) found its broker
    /// connection's socket, to acknowledge what the broker sends at once
    /// and set its keepalive probes (`mqtt::socket`).
    pub fn assert_quick_acks(&self, what: &str) {
        let log = self.log_text();
        assert!(
            log.contains("broker socket for TCP_QUICKACK and probes found=true probing=true"),
            "{what}: the agent did not find its broker socket\n{}",
            super::process::tail(&log, 20)
        );
    }

    /// Kill the agent with SIGKILL and reap it.
    pub fn kill(&mut self) {
        self.child = None;
    }

    /// The agent's process id (panics once it has been killed or reaped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("agent is running").0.id()
    }

    /// Its exit status if it has exited on its own (it stays reaped-able;
    /// the status is returned again on later calls).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(Killed::exited)
    }

    /// Wait up to `timeout` for the agent to exit on its own, without
    /// signalling it; returns its status, or None if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(timeout, || {
            status = self.exit_status();
            status.is_some()
        });
        status
    }
}
