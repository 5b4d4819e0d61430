//! End-to-end: the rate caps of hosted brokers (`--max-publish-rate`,
//! `--max-bandwidth`). Both the agent's and the proxy's broker connection go
//! through their own [`Throttle`] relay, which closes a connection that
//! publishes more than N messages in any one second and paces its bytes,
//! like AWS IoT Core (100/s, 512 KB/s) or EMQX Serverless (10/s). With the
//! caps set on both binaries, transfers are intact, the relay never has to
//! disconnect anyone, and (behind the byte cap) nothing is retransmitted
//! because of our own pacing.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use crate::common::throttle::{Limits, Throttle};
use crate::common::*;
use tempfile::TempDir;

/// AWS IoT Core's per-connection limits.
const AWS: Limits = Limits {
    publishes_per_sec: 100,
    bytes_per_sec: Some(512 << 10),
};
/// EMQX Serverless's per-client limit.
const EMQX: Limits = Limits {
    publishes_per_sec: 10,
    bytes_per_sec: None,
};
/// Bound for one transfer behind the caps (8 MiB at 512 KiB/s is ~17 s);
/// only there to turn a stall into a failure.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(120);
/// How long after the client's command exits its session may take to be
/// logged as closed on both sides.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// The proxy's log filter: its `session closed` line is at debug level.
const PROXY_LOG: &str = "mqtt_proxy::proxy=debug";

/// The flags that set `limits` as caps.
fn cap_args(limits: Limits) -> Vec<String> {
    let mut v = vec![
        "--max-publish-rate".to_owned(),
        limits.publishes_per_sec.to_string(),
    ];
    if let Some(b) = limits.bytes_per_sec {
        v.extend(["--max-bandwidth".to_owned(), format!("{}K", b / 1024)]);
    }
    v
}

/// A broker and an sshd, an agent and the client side each behind a relay
/// of their own with `limits`, and the caps set on both binaries (or not).
struct Capped {
    _broker: Broker,
    sshd: Sshd,
    agent_relay: Throttle,
    proxy_relay: Throttle,
    agent: Agent,
    ssh: Ssh,
    dir: TempDir,
}

impl Capped {
    fn start(test: &str, limits: Limits, caps: bool) -> Capped {
        let broker = Broker::start("");
        let sshd = Sshd::start();
        let names = names(test);
        let agent_relay = Throttle::start(broker.port(), limits);
        let proxy_relay = Throttle::start(broker.port(), limits);
        let args = if caps { cap_args(limits) } else { Vec::new() };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let agent = Agent::start_at(
            agent_relay.port(),
            &sshd.target(),
            &names.node,
            &names.prefix,
            &args,
        );
        let dir = tempfile::tempdir().expect("create scratch dir");
        // Every proxy of the test appends its log here.
        let mut ssh =
            Ssh::via_proxy_at(proxy_relay.port(), &names.prefix, &names.node, &sshd, &args);
        let log = shell_quote(&dir.path().join("proxy.log").display().to_string());
        ssh.proxy_command = format!(
            "env RUST_LOG={PROXY_LOG} {} 2>>{}",
            ssh.proxy_command,
            log.replace('%', "%%")
        );
        Capped {
            _broker: broker,
            sshd,
            agent_relay,
            proxy_relay,
            agent,
            ssh,
            dir,
        }
    }

    fn proxy_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }

    /// Throttle disconnects on (agent's link, proxy's link).
    fn disconnects(&self) -> (u64, u64) {
        (
            self.agent_relay.disconnects(),
            self.proxy_relay.disconnects(),
        )
    }

    /// Sessions closed and retransmissions in all of them, from the
    /// agent's log and the proxies' log.
    fn retransmits(&self) -> ((usize, u64), (usize, u64)) {
        (
            retransmits(&self.agent.log_text()),
            retransmits(&self.proxy_log()),
        )
    }

    /// Wait until the agent and the proxies have closed `n` sessions (their
    /// log lines come a moment after the client's command exits).
    fn wait_sessions_closed(&mut self, n: usize) {
        self.agent.wait_log(SESSION_CLOSED, n, CLOSE_TIMEOUT);
        let closed = wait_until(CLOSE_TIMEOUT, || {
            self.proxy_log().matches(SESSION_CLOSED).count() >= n
        });
        assert!(
            closed,
            "the proxies did not log {n} closed sessions\n{}",
            report(self)
        );
    }
}

/// (sessions closed, sum of their `retransmits=`) in a log.
fn retransmits(log: &str) -> (usize, u64) {
    session_counts(log, "retransmits")
}

fn upload(c: &Capped, len: u64) {
    let local = c.dir.path().join("up.bin");
    write_random_file(&local, len);
    let remote = c.sshd.dir().join("up.bin");
    let out = run_with_timeout(&mut c.ssh.scp_upload(&local, &remote), TRANSFER_TIMEOUT);
    assert_success(&out, "scp upload behind the caps");
    assert_files_equal(&local, &remote);
}

fn report(c: &Capped) -> String {
    format!(
        "disconnects (agent, proxy) {:?}, relay publishes (agent, proxy) ({}, {}), \
         accepted ({}, {})\n--- agent log ---\n{}\n--- proxy log ---\n{}",
        c.disconnects(),
        c.agent_relay.publishes(),
        c.proxy_relay.publishes(),
        c.agent_relay.accepted(),
        c.proxy_relay.accepted(),
        tail(&c.agent.log_text(), 30),
        tail(&c.proxy_log(), 30)
    )
}

#[test]
fn scp_8_mib_behind_100_per_s_and_512_kib_per_s_without_retransmissions() {
    let mut c = Capped::start("limits-aws", AWS, true);
    upload(&c, 8 << 20);
    c.wait_sessions_closed(1);
    assert_eq!(c.disconnects(), (0, 0), "{}", report(&c));
    assert_eq!(
        c.retransmits(),
        ((1, 0), (1, 0)),
        "(sessions, retransmissions) of (agent, proxy)\n{}",
        report(&c)
    );
}

#[test]
fn ssh_and_scp_1_mib_behind_10_per_s() {
    let mut c = Capped::start("limits-emqx", EMQX, true);
    // An interactive session: lines typed one at a time and echoed back by
    // `cat`, while a 1 MiB upload shares the agent's connection with it.
    let mut shell = c.ssh.ssh("cat");
    shell.stdin(Stdio::piped());
    let mut session = Background::start_streaming(&mut shell);
    let mut keys = session.take_stdin();
    let mut echo = BufReader::new(session.take_stdout());
    let typed = |i: u32| format!("keystroke {i}\n");
    let mut line = String::new();
    // The first echo: the session is open.
    keys.write_all(typed(0).as_bytes()).expect("type");
    echo.read_line(&mut line).expect("read the echo");
    assert_eq!(line, typed(0));
    let upload = {
        let local = c.dir.path().join("up.bin");
        write_random_file(&local, 1 << 20);
        let remote = c.sshd.dir().join("up.bin");
        let mut cmd = c.ssh.scp_upload(&local, &remote);
        (Background::start(&mut cmd), local, remote)
    };
    for i in 1..=20 {
        keys.write_all(typed(i).as_bytes()).expect("type");
        line.clear();
        echo.read_line(&mut line).expect("read the echo");
        assert_eq!(line, typed(i), "{}", report(&c));
    }
    drop(keys);
    let (scp, local, remote) = upload;
    assert_success(&scp.finish(TRANSFER_TIMEOUT), "scp upload behind 10/s");
    assert_files_equal(&local, &remote);
    assert_success(&session.finish(TRANSFER_TIMEOUT), "ssh cat behind 10/s");
    c.wait_sessions_closed(2);
    assert_eq!(c.disconnects(), (0, 0), "{}", report(&c));
    let ((agent_sessions, _), (proxy_sessions, _)) = c.retransmits();
    assert_eq!((agent_sessions, proxy_sessions), (2, 2), "{}", report(&c));
}

#[test]
fn bad_cap_values_are_refused_with_the_reason_by_both_binaries() {
    let bad_bandwidth = "error: invalid value 'lots' for '--max-bandwidth <BYTES[K|M]>': invalid \
                         bandwidth \"lots\": use BYTES, or with K (KiB) or M (MiB), e.g. 512K";
    let low_bandwidth = "error: invalid value '1K' for '--max-bandwidth <BYTES[K|M]>': bandwidth \
                         1024 B/s is below the minimum of 65536 (64K): one largest frame must go \
                         within a second";
    let zero_rate =
        "error: invalid value '0' for '--max-publish-rate <N>': 0 is not in 1..=4294967295";
    // The proxy needs a node to get as far as the values; the agent takes
    // none. The proxy's lines say who speaks (ssh's are beside them) and it
    // fails as ssh does, with 255; the agent keeps clap's usage status.
    for (bin, rest, prefix, code) in [
        (proxy_bin(), &["node"][..], "mqtt-proxy: ", 255),
        (agent_bin(), &[][..], "", 2),
    ] {
        for (args, env, want) in [
            (&["--max-bandwidth", "lots"][..], None, bad_bandwidth),
            (&["--max-bandwidth", "1K"][..], None, low_bandwidth),
            (&[][..], Some(("MQTT_MAX_BANDWIDTH", "1K")), low_bandwidth),
            (&["--max-publish-rate", "0"][..], None, zero_rate),
        ] {
            let mut cmd = std::process::Command::new(bin);
            for var in MQTT_ENV {
                cmd.env_remove(var);
            }
            cmd.args(args).args(rest).stdin(Stdio::null());
            if let Some((k, v)) = env {
                cmd.env(k, v);
            }
            let out = run(&mut cmd);
            assert_exit_code(&out, code, &format!("{bin} {args:?} {env:?}"));
            let first = stderr_text(&out).lines().next().unwrap_or("").to_owned();
            assert_eq!(first, format!("{prefix}{want}"), "{bin} {args:?} {env:?}");
        }
    }
}
