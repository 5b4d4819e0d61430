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

/// Size of the big transfers (the same as the undisturbed tunnel tests).
const BIG: u64 = 64 << 20;
/// Bound for a single 64 MiB transfer; only there to turn a stall into a failure.
const BIG_TIMEOUT: Duration = Duration::from_secs(300);
/// `scp -l` (Kbit/s) for the interrupted uploads: 100 Mbit/s, so 64 MiB take
/// at least ~5.4 s and an outage reliably lands in the middle, whatever the
/// machine's tunnel throughput. Used for the undisturbed baseline too, so the
/// two wall times are comparable.
const SCP_LIMIT_KBIT: &str = "100000";
/// How much of the upload must have reached the remote file before the
/// fault: past connection setup, well before the end.
const INTERRUPT_AT: u64 = 4 << 20;
/// Length of the outages that sessions must survive (far below the default
/// 60 s resume timeout).
const OUTAGE: Duration = Duration::from_secs(3);
/// The short `--resume-timeout` of the tests where it expires.
const SHORT_RESUME: Duration = Duration::from_secs(5);
/// An outage well beyond [`SHORT_RESUME`] plus its slack.
const LONG_OUTAGE: Duration = Duration::from_secs(12);
/// How long after its `--resume-timeout` has run out a session may take to
/// be closed on both sides.
const CLOSE_SLACK: Duration = Duration::from_secs(2);
/// mosquitto's log line when a client's queue overflows.
const BROKER_DROPS: &str = "Outgoing messages are being dropped";

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

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// `scp -l SCP_LIMIT_KBIT LOCAL node:REMOTE`.
fn scp_limited(ssh: &Ssh, local: &Path, remote: &Path) -> std::process::Command {
    ssh.scp(&[
        "-l",
        SCP_LIMIT_KBIT,
        &local.display().to_string(),
        &ssh.remote(remote),
    ])
}

/// Upload `local` to `remote` with [`scp_limited`]; once [`INTERRUPT_AT`]
/// bytes have arrived, run `fault` (which returns when the outage is over),
/// then wait for scp. Returns scp's output, how many bytes had arrived at the
/// fault, and the wall time of the whole upload.
fn interrupted_upload(
    agent: &Agent,
    ssh: &Ssh,
    local: &Path,
    remote: &Path,
    fault: impl FnOnce(),
) -> (Output, u64, Duration) {
    let t = Instant::now();
    let mut scp = Background::start(&mut scp_limited(ssh, local, remote));
    let mut exited = None;
    let reached = wait_until(Duration::from_secs(60), || {
        exited = scp.try_status();
        exited.is_some() || file_len(remote) >= INTERRUPT_AT
    });
    assert!(
        reached && exited.is_none(),
        "scp did not get {INTERRUPT_AT} bytes across while running (exited: {exited:?}, \
         remote has {} bytes)\n--- agent log ---\n{}",
        file_len(remote),
        agent.log_text()
    );
    let at = file_len(remote);
    fault();
    let out = scp.finish(BIG_TIMEOUT);
    (out, at, t.elapsed())
}

/// The checks after [`interrupted_upload`]: the fault hit mid-transfer, scp
/// succeeded, the copy is exact.
fn check_upload(s: &Setup, agent: &Agent, out: &Output, at: u64, local: &Path, remote: &Path) {
    assert!(
        at < BIG,
        "the upload was complete before the fault; lower SCP_LIMIT_KBIT"
    );
    s.check(agent, out, 0, "scp upload across the outage");
    assert_files_equal(local, remote);
}

// ---------------------------------------------------------------------------
// The relay itself
// ---------------------------------------------------------------------------

/// An echo server on a free port (the relay's upstream in its self-test).
fn echo_server() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind echo server");
    let port = listener.local_addr().expect("echo address").port();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            thread::spawn(move || {
                let mut read = conn.try_clone().expect("clone echo socket");
                // Ends on EOF or a reset, either way the connection is done.
                let _ = std::io::copy(&mut read, &mut conn);
            });
        }
    });
    port
}

/// Send `msg` and read the echo with a deadline; Err(kind) on failure.
fn echo(conn: &mut TcpStream, msg: &[u8], timeout: Duration) -> Result<Vec<u8>, ErrorKind> {
    conn.set_read_timeout(Some(timeout))
        .expect("set read timeout");
    conn.write_all(msg).map_err(|e| e.kind())?;
    let mut buf = vec![0u8; msg.len()];
    conn.read_exact(&mut buf).map_err(|e| e.kind())?;
    Ok(buf)
}

#[test]
fn relay_forwards_stalls_delays_cuts_and_blackholes() {
    let relay = Relay::start(echo_server());
    let connect = || TcpStream::connect((Ipv4Addr::LOCALHOST, relay.port())).expect("connect");
    let second = Duration::from_secs(1);

    let mut conn = connect();
    assert_eq!(echo(&mut conn, b"hello", second), Ok(b"hello".to_vec()));

    // Latency: one way each, so an echo takes at least twice the delay.
    relay.set_latency(Duration::from_millis(150));
    let t = Instant::now();
    assert_eq!(echo(&mut conn, b"slow", second), Ok(b"slow".to_vec()));
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "echo took {:?}",
        t.elapsed()
    );
    relay.set_latency(Duration::ZERO);

    // Stall: nothing arrives, the connection stays open, then all of it does.
    relay.stall(true);
    let res = echo(&mut conn, b"held", Duration::from_millis(500));
    assert!(
        matches!(res, Err(ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "bytes moved during a stall: {res:?}"
    );
    relay.stall(false);
    let mut buf = [0u8; 4];
    conn.read_exact(&mut buf)
        .expect("read the held bytes after the stall");
    assert_eq!(&buf, b"held");

    // Cut: the client sees a reset (not a clean EOF).
    relay.cut();
    let mut byte = [0u8; 1];
    conn.set_read_timeout(Some(second))
        .expect("set read timeout");
    let res = conn.read(&mut byte).map_err(|e| e.kind());
    assert_eq!(res, Err(ErrorKind::ConnectionReset), "read after a cut");

    // Blackhole: connections are accepted but answered only once it lifts.
    relay.set_blackhole(true);
    let mut held = connect();
    let res = echo(&mut held, b"lost?", Duration::from_millis(500));
    assert!(
        matches!(res, Err(ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "answer through a blackhole: {res:?}"
    );
    relay.set_blackhole(false);
    let mut buf = [0u8; 5];
    held.read_exact(&mut buf)
        .expect("read after the blackhole lifted");
    assert_eq!(&buf, b"lost?");

    // A cut while blackholed resets held connections too.
    relay.set_blackhole(true);
    let mut held = connect();
    assert!(
        wait_until(second, || relay.open() == 2),
        "open: {}",
        relay.open()
    );
    relay.cut();
    held.set_read_timeout(Some(second))
        .expect("set read timeout");
    assert_eq!(
        held.read(&mut byte).map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionReset)
    );
    assert!(
        wait_until(second, || relay.open() == 0),
        "open: {}",
        relay.open()
    );
    assert_eq!(relay.accepted(), 3);
}

// ---------------------------------------------------------------------------
// Outages shorter than the resume timeout
// ---------------------------------------------------------------------------

#[test]
fn scp_upload_survives_broker_kill_and_restart() {
    let mut s = Setup::new("broker_kill_scp");
    let mut agent = s.agent(s.broker.port(), &[]);
    let ssh = s.ssh(s.broker.port(), &[]);
    let local = s.path("big.bin");
    write_random_file(&local, BIG);

    let undisturbed_remote = s.path("undisturbed.remote");
    let t = Instant::now();
    let out = run_with_timeout(
        &mut scp_limited(&ssh, &local, &undisturbed_remote),
        BIG_TIMEOUT,
    );
    let undisturbed = t.elapsed();
    s.check(&agent, &out, 0, "undisturbed scp upload");
    assert_files_equal(&local, &undisturbed_remote);

    let remote = s.path("disturbed.remote");
    let broker = &mut s.broker;
    let (out, at, disturbed) = interrupted_upload(&agent, &ssh, &local, &remote, || {
        broker.stop();
        thread::sleep(OUTAGE);
        broker.restart();
    });
    check_upload(&s, &agent, &out, at, &local, &remote);
    agent.wait_log(AGENT_ONLINE_TEXT, 2, AGENT_ONLINE_TIMEOUT);
    eprintln!(
        "64 MiB scp -l {SCP_LIMIT_KBIT} upload: undisturbed {:.2} s; mosquitto SIGKILLed \
         after {at} bytes and restarted {OUTAGE:?} later: {:.2} s",
        undisturbed.as_secs_f64(),
        disturbed.as_secs_f64()
    );
}

#[test]
fn scp_upload_survives_cut_of_the_proxy_connection() {
    let s = Setup::new("cut_proxy_scp");
    let relay = Relay::start(s.broker.port());
    let agent = s.agent(s.broker.port(), &[]);
    let ssh = s.ssh(relay.port(), &[]);
    let local = s.path("big.bin");
    let remote = s.path("big.remote");
    write_random_file(&local, BIG);

    let (out, at, elapsed) =
        interrupted_upload(&agent, &ssh, &local, &remote, || relay.outage(OUTAGE));
    check_upload(&s, &agent, &out, at, &local, &remote);
    assert!(
        relay.accepted() >= 2,
        "the proxy never reconnected through the relay ({} connections)",
        relay.accepted()
    );
    eprintln!(
        "64 MiB scp -l {SCP_LIMIT_KBIT} upload, proxy's broker connection cut after {at} bytes \
         for {OUTAGE:?}: {:.2} s ({} proxy connections)",
        elapsed.as_secs_f64(),
        relay.accepted()
    );
}

#[test]
fn scp_upload_survives_cut_of_the_agent_connection() {
    let s = Setup::new("cut_agent_scp");
    let relay = Relay::start(s.broker.port());
    let mut agent = s.agent(relay.port(), &[]);
    let ssh = s.ssh(s.broker.port(), &[]);
    let local = s.path("big.bin");
    let remote = s.path("big.remote");
    write_random_file(&local, BIG);

    let (out, at, elapsed) =
        interrupted_upload(&agent, &ssh, &local, &remote, || relay.outage(OUTAGE));
    check_upload(&s, &agent, &out, at, &local, &remote);
    agent.wait_log(AGENT_ONLINE_TEXT, 2, AGENT_ONLINE_TIMEOUT);
    eprintln!(
        "64 MiB scp -l {SCP_LIMIT_KBIT} upload, agent's broker connection cut after {at} bytes \
         for {OUTAGE:?}: {:.2} s ({} agent connections)",
        elapsed.as_secs_f64(),
        relay.accepted()
    );
}

#[test]
fn scp_upload_survives_a_stall_of_the_agent_connection() {
    // No disconnect at all: the broker connection goes silent (packets
    // delayed, not lost) for less than MQTT's keepalive, then recovers.
    let s = Setup::new("stall_agent_scp");
    let relay = Relay::start(s.broker.port());
    let agent = s.agent(relay.port(), &[]);
    let ssh = s.ssh(s.broker.port(), &[]);
    let local = s.path("big.bin");
    let remote = s.path("big.remote");
    write_random_file(&local, BIG);

    let (out, at, elapsed) = interrupted_upload(&agent, &ssh, &local, &remote, || {
        relay.stall(true);
        thread::sleep(OUTAGE);
        relay.stall(false);
    });
    check_upload(&s, &agent, &out, at, &local, &remote);
    assert_eq!(
        relay.accepted(),
        1,
        "the agent reconnected during a mere stall"
    );
    eprintln!(
        "64 MiB scp -l {SCP_LIMIT_KBIT} upload, agent's broker connection stalled after {at} \
         bytes for {OUTAGE:?}: {:.2} s",
        elapsed.as_secs_f64()
    );
}

#[test]
fn interactive_session_keeps_printing_across_broker_restart() {
    let mut s = Setup::new("interactive_restart");
    let mut agent = s.agent(s.broker.port(), &[]);
    let ssh = s.ssh(s.broker.port(), &[]);
    let mut session = Background::start_streaming(
        &mut ssh.ssh("for i in $(seq 1 12); do echo line $i; sleep 1; done"),
    );
    let stdout = session.take_stdout();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            // The receiver only goes away if the test already failed.
            let _ = tx.send((Instant::now(), line.expect("read ssh stdout")));
        }
    });

    let mut lines = Vec::new();
    while lines.len() < 2 {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => lines.push(l),
            Err(e) => panic!("no line from ssh ({e}); got {lines:?}\n{}", s.logs(&agent)),
        }
    }
    let stopped = Instant::now();
    s.broker.stop();
    thread::sleep(OUTAGE);
    s.broker.restart();
    let restarted = Instant::now();
    // Ends when ssh closes its stdout.
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(30)) {
        lines.push(l);
    }
    let out = session.finish(Duration::from_secs(30));
    s.check(&agent, &out, 0, "ssh loop across a broker restart");
    let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    let expected: Vec<String> = (1..=12).map(|i| format!("line {i}")).collect();
    assert_eq!(text, expected, "lines printed across the restart");
    agent.wait_log(AGENT_ONLINE_TEXT, 2, AGENT_ONLINE_TIMEOUT);

    let after: Vec<String> = lines
        .iter()
        .filter(|(t, _)| *t > stopped)
        .map(|(t, l)| format!("{l} at +{:.1} s", t.duration_since(restarted).as_secs_f64()))
        .collect();
    eprintln!(
        "interactive: broker down {:.1} s; lines after the kill (relative to the restart): {}",
        restarted.duration_since(stopped).as_secs_f64(),
        after.join(", ")
    );
}

// ---------------------------------------------------------------------------
// Outages longer than the resume timeout, killed peers
// ---------------------------------------------------------------------------

/// A ProxyCommand that runs `mqtt-proxy ARGS %n` with its default log level
/// and records what it alone printed on stderr and its exit status (ssh
/// would only report 255 and its own message).
struct RecordedProxy {
    ssh: Ssh,
    stderr: PathBuf,
    status: PathBuf,
}

impl RecordedProxy {
    fn new(s: &Setup, port: u16, args: &[&str]) -> RecordedProxy {
        let stderr = s.path("proxy.stderr");
        let status = s.path("proxy.status");
        let script = s.path("proxy.sh");
        let mut command = format!(
            "{} --host 127.0.0.1 --port {port} --topic-prefix {}",
            shell_quote(proxy_bin()),
            shell_quote(&s.names.prefix)
        );
        for arg in args {
            command.push(' ');
            command.push_str(&shell_quote(arg));
        }
        // The status is written to a temporary file and renamed, so a reader
        // never sees it half-written.
        let text = format!(
            "#!/bin/sh\nunset RUST_LOG\n{command} \"$1\" 2>{err}\necho $? >{st}.tmp\nmv {st}.tmp {st}\n",
            err = shell_quote(&stderr.display().to_string()),
            st = shell_quote(&status.display().to_string()),
        );
        fs::write(&script, text).expect("write the ProxyCommand wrapper");
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755))
            .expect("make the ProxyCommand wrapper executable");
        let mut ssh = s.ssh(port, args);
        ssh.proxy_command = format!("{} %n", shell_quote(&script.display().to_string()));
        RecordedProxy {
            ssh,
            stderr,
            status,
        }
    }

    /// The proxy's exit status once it has exited.
    fn status(&self) -> Option<i32> {
        let text = fs::read_to_string(&self.status).ok()?;
        Some(text.trim().parse().expect("status file holds a number"))
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr)
            .unwrap_or_default()
            .trim_end()
            .to_owned()
    }
}

#[test]
fn outage_longer_than_resume_timeout_ends_the_session_on_both_sides() {
    let mut s = Setup::new("outage_too_long");
    let resume = SHORT_RESUME.as_secs().to_string();
    let mut agent = s.agent(s.broker.port(), &["--resume-timeout", &resume]);
    let pid = agent.pid();
    let idle_fds = fd_count(pid);
    let proxy = RecordedProxy::new(&s, s.broker.port(), &["--resume-timeout", &resume]);
    let mut session = Background::start(&mut proxy.ssh.ssh("sleep 60"));
    agent.wait_log("session opened", 1, Duration::from_secs(10));
    assert!(
        wait_until(Duration::from_secs(10), || s
            .sshd
            .log_text()
            .contains("Accepted publickey")),
        "ssh did not log in\n{}",
        s.logs(&agent)
    );

    // Idle for longer than the resume timeout is not an outage: keepalives
    // must keep the session up.
    thread::sleep(SHORT_RESUME + CLOSE_SLACK);
    assert!(
        session.try_status().is_none() && proxy.status().is_none(),
        "an idle session died within {:?} without any outage: proxy status {:?}, stderr {:?}\n{}",
        SHORT_RESUME + CLOSE_SLACK,
        proxy.status(),
        proxy.stderr(),
        s.logs(&agent)
    );
    assert_eq!(
        tcp_connections_to(pid, s.sshd.port()),
        1,
        "agent's sshd connections"
    );

    let stopped = Instant::now();
    s.broker.stop();
    let bound = SHORT_RESUME + Duration::from_secs(3);
    let exited = wait_until(bound, || proxy.status().is_some());
    let proxy_gone = stopped.elapsed();
    assert!(
        exited,
        "the proxy was still running {bound:?} after the broker died\n{}",
        s.logs(&agent)
    );
    assert_eq!(
        proxy.status(),
        Some(PROXY_FAILURE_STATUS),
        "proxy exit status"
    );
    let stderr = proxy.stderr();
    let node = &s.names.node;
    let lost = format!("mqtt-proxy: lost contact with node '{node}' for {resume} s");
    let offline = format!("mqtt-proxy: node '{node}' went offline");
    assert!(
        stderr == lost || stderr == offline,
        "proxy stderr is not one line saying {lost:?} or {offline:?}: {stderr:?}"
    );
    let out = session.finish(Duration::from_secs(10));
    assert_exit_code(&out, PROXY_FAILURE_STATUS, "ssh whose proxy gave up");

    // The agent must give up on its own, while the broker is still down.
    let closed = wait_until(
        (SHORT_RESUME + CLOSE_SLACK).saturating_sub(stopped.elapsed()),
        || agent.log_text().contains(SESSION_CLOSED),
    );
    let agent_gone = stopped.elapsed();
    assert!(
        closed,
        "the agent had not closed the session {:?} after the broker died\n{}",
        SHORT_RESUME + CLOSE_SLACK,
        s.logs(&agent)
    );
    thread::sleep(LONG_OUTAGE.saturating_sub(stopped.elapsed()));
    s.broker.restart();
    agent.wait_log(AGENT_ONLINE_TEXT, 2, AGENT_ONLINE_TIMEOUT);
    assert_eq!(
        agent.log_text().matches(SESSION_CLOSED).count(),
        1,
        "session closed lines"
    );
    let released = wait_until(Duration::from_secs(5), || {
        tcp_connections_to(pid, s.sshd.port()) == 0 && fd_count(pid) == idle_fds
    });
    assert!(
        released,
        "agent still holds {} sshd connections and {} fds (idle: {idle_fds})\n{}",
        tcp_connections_to(pid, s.sshd.port()),
        fd_count(pid),
        s.logs(&agent)
    );
    let closed_line = agent
        .log_text()
        .lines()
        .find(|l| l.contains(SESSION_CLOSED))
        .unwrap_or_default()
        .to_owned();
    eprintln!(
        "resume timeout {resume} s: proxy exited {:.2} s after the broker died ({stderr:?}); \
         agent closed the session after {:.2} s: {closed_line}",
        proxy_gone.as_secs_f64(),
        agent_gone.as_secs_f64()
    );
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

#[test]
fn agent_closes_the_sshd_connection_of_a_killed_proxy() {
    let s = Setup::new("proxy_sigkill");
    let resume = SHORT_RESUME.as_secs().to_string();
    let agent = s.agent(s.broker.port(), &["--resume-timeout", &resume]);
    let pid = agent.pid();
    let idle_fds = fd_count(pid);

    let mut cmd = proxy_command_at(s.broker.port(), &s.names.prefix, &s.names.node);
    cmd.stdin(Stdio::piped());
    let mut proxy = Background::start_streaming(&mut cmd);
    let _stdin = proxy.take_stdin();
    let banner = read_banner(proxy.take_stdout(), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}\n{}", s.logs(&agent)));
    assert!(
        banner.starts_with("SSH-2.0-"),
        "not an sshd banner: {banner:?}"
    );
    assert_eq!(
        tcp_connections_to(pid, s.sshd.port()),
        1,
        "agent's sshd connections"
    );

    proxy.kill();
    let killed = Instant::now();
    let bound = SHORT_RESUME + CLOSE_SLACK;
    let closed = wait_until(bound, || {
        tcp_connections_to(pid, s.sshd.port()) == 0 && agent.log_text().contains(SESSION_CLOSED)
    });
    let elapsed = killed.elapsed();
    assert!(
        closed,
        "{bound:?} after the proxy was killed the agent still has {} sshd connections \
         (session closed logged: {})\n{}",
        tcp_connections_to(pid, s.sshd.port()),
        agent.log_text().contains(SESSION_CLOSED),
        s.logs(&agent)
    );
    assert!(
        wait_until(Duration::from_secs(2), || fd_count(pid) == idle_fds),
        "agent has {} fds, {idle_fds} when idle",
        fd_count(pid)
    );
    let closed_line = agent
        .log_text()
        .lines()
        .find(|l| l.contains(SESSION_CLOSED))
        .unwrap_or_default()
        .to_owned();
    eprintln!(
        "proxy SIGKILLed: agent closed its sshd connection after {:.2} s (bound {bound:?}): \
         {closed_line}",
        elapsed.as_secs_f64()
    );
}

// ---------------------------------------------------------------------------
// Broker availability, node ownership
// ---------------------------------------------------------------------------

#[test]
fn agent_started_before_the_broker_comes_online() {
    let sshd = Sshd::start();
    let names = names("agent_before_broker");
    let port = free_port();
    let mut agent = Agent::spawn_at(port, &sshd.target(), &names.node, &names.prefix, &[], &[]);
    // Nothing listens yet: the agent keeps retrying with backoff.
    thread::sleep(OUTAGE);
    assert_eq!(
        agent.exit_status(),
        None,
        "agent gave up without a broker:\n{}",
        agent.log_text()
    );
    assert!(
        !agent.log_text().contains(AGENT_ONLINE_TEXT),
        "agent online without a broker:\n{}",
        agent.log_text()
    );

    let t = Instant::now();
    let broker = Broker::start_on(port, "");
    let bound = Duration::from_secs(8);
    agent.wait_log(AGENT_ONLINE_TEXT, 1, bound.saturating_sub(t.elapsed()));
    let online = t.elapsed();

    let ssh = Ssh::via_proxy(&broker, &names.prefix, &names.node, &sshd);
    let out = run(&mut ssh.ssh("echo hello"));
    if !out.status.success() {
        eprintln!("--- agent log ---\n{}", agent.log_text());
    }
    assert_success(&out, "ssh through an agent that started before its broker");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    eprintln!(
        "agent started {OUTAGE:?} before the broker: online {:.2} s after the broker started",
        online.as_secs_f64()
    );
}

/// The agent password both agents and the client use in
/// [`newest_agent_for_a_node_id_wins`]: an agent steps down only for an
/// announcement proven with it.
const TWO_AGENTS_PASSWORD: &str = "two agents, one password";

/// Two agents with one node id and an agent password: the newest wins, the
/// older exits with status 3. (Without a password both go on: anyone on the
/// broker could otherwise stop an agent with one forged presence message;
/// `tests/hostile.rs` publishes one.)
#[test]
fn newest_agent_for_a_node_id_wins() {
    let s = Setup::new("two_agents");
    let spawn = || {
        Agent::spawn_at(
            s.broker.port(),
            &s.sshd.target(),
            &s.names.node,
            &s.names.prefix,
            &[],
            &[("MQTT_AGENT_PASSWORD", TWO_AGENTS_PASSWORD)],
        )
    };
    let mut first = spawn();
    first.wait_online();
    let t = Instant::now();
    let mut second = spawn();
    second.wait_online();
    let bound = Duration::from_secs(5);
    let status = first.wait_exit(bound.saturating_sub(t.elapsed()));
    let elapsed = t.elapsed();
    assert_eq!(
        status.and_then(|st| st.code()),
        Some(AGENT_TAKEN_OVER_STATUS),
        "first agent's exit within {bound:?} of the second's start: {status:?}\n\
         --- first agent ---\n{}\n--- second agent ---\n{}",
        first.log_text(),
        second.log_text()
    );
    assert!(
        first.log_text().contains("another agent took over node"),
        "first agent's log:\n{}",
        first.log_text()
    );

    let ssh = s.ssh(s.broker.port(), &[]);
    let out = run(ssh
        .ssh("echo hello")
        .env("MQTT_AGENT_PASSWORD", TWO_AGENTS_PASSWORD));
    s.check(&second, &out, 0, "ssh through the surviving agent");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert_eq!(
        second.exit_status(),
        None,
        "second agent exited:\n{}",
        second.log_text()
    );
    assert!(
        !second.log_text().contains("took over"),
        "second agent stepped down:\n{}",
        second.log_text()
    );
    eprintln!(
        "two agents: the first exited with status {AGENT_TAKEN_OVER_STATUS} {:.2} s after the second started",
        elapsed.as_secs_f64()
    );
}

// ---------------------------------------------------------------------------
// Resources
// ---------------------------------------------------------------------------

#[test]
fn slow_reader_keeps_agent_memory_bounded() {
    let s = Setup::new("slow_reader");
    let agent = s.agent(s.broker.port(), &[]);
    let pid = agent.pid();
    let ssh = s.ssh(s.broker.port(), &[]);
    let remote = s.path("big.remote");
    write_random_file(&remote, BIG);
    let baseline = vm_rss_kib(pid);

    let sampler = RssSampler::start(pid);
    let mut session = Background::start_streaming(&mut ssh.ssh(&format!(
        "cat {}",
        shell_quote(&remote.display().to_string())
    )));
    let mut stdout = session.take_stdout();
    let stall = Duration::from_secs(10);
    thread::sleep(stall);
    let stalled_peak = vm_rss_kib(pid);
    assert!(
        agent.log_text().contains("session opened"),
        "the session did not even open while stdout was not read\n{}",
        s.logs(&agent)
    );
    let mut data = Vec::with_capacity(BIG as usize);
    stdout.read_to_end(&mut data).expect("read ssh stdout");
    let (peak, samples) = sampler.stop();
    let out = session.finish(BIG_TIMEOUT);
    s.check(&agent, &out, 0, "ssh cat of 64 MiB with a slow reader");

    let expected = fs::read(&remote).expect("read the remote file");
    assert_eq!(data.len(), expected.len(), "bytes received");
    if let Some(i) = (0..data.len()).find(|&i| data[i] != expected[i]) {
        panic!("received data differs from the file first at byte {i}");
    }
    let limit = 64 << 10;
    eprintln!(
        "slow reader: agent VmRSS baseline {baseline} KiB, after {stall:?} unread {stalled_peak} KiB, \
         peak {peak} KiB over {samples} samples (limit {limit} KiB)"
    );
    assert!(peak < limit, "agent VmRSS peaked at {peak} KiB");
    let broker_log = s.broker.log_text();
    assert!(
        !broker_log.contains(BROKER_DROPS),
        "mosquitto dropped messages:\n{}",
        broker_log
            .lines()
            .filter(|l| l.contains(BROKER_DROPS))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// What the agent holds, from /proc.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Usage {
    fds: usize,
    threads: usize,
    rss_kib: u64,
}

impl Usage {
    fn of(pid: u32) -> Usage {
        Usage {
            fds: fd_count(pid),
            threads: thread_count(pid),
            rss_kib: vm_rss_kib(pid),
        }
    }
}

/// One session driven by `mqtt-proxy` directly: read sshd's banner, close
/// stdin (FIN towards sshd, which then closes), expect exit status 0.
/// Returns the time to the banner and from closing stdin to the exit.
fn banner_session(s: &Setup, agent: &Agent, what: &str) -> (Duration, Duration) {
    let t = Instant::now();
    let mut cmd = proxy_command_at(s.broker.port(), &s.names.prefix, &s.names.node);
    cmd.stdin(Stdio::piped());
    let mut proxy = Background::start_streaming(&mut cmd);
    let stdin = proxy.take_stdin();
    let banner = match read_banner(proxy.take_stdout(), Duration::from_secs(10)) {
        Ok(b) => b,
        Err(e) => {
            proxy.kill();
            let out = proxy.finish(Duration::from_secs(1));
            panic!(
                "{what}: {e}; proxy stderr: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                s.logs(agent)
            );
        }
    };
    let opened = t.elapsed();
    assert!(
        banner.starts_with("SSH-2.0-"),
        "{what}: not an sshd banner: {banner:?}"
    );
    let t = Instant::now();
    drop(stdin);
    let out = proxy.finish(Duration::from_secs(10));
    let closed = t.elapsed();
    s.check(agent, &out, 0, what);
    (opened, closed)
}

#[test]
fn many_sessions_leave_no_fds_threads_or_memory_behind() {
    const SEQUENTIAL: usize = 500;
    const PARALLEL: usize = 50;
    /// How long tokio's blocking pool keeps an idle thread (its default
    /// `thread_keep_alive`) plus margin: extra threads may linger this long.
    const THREAD_SETTLE: Duration = Duration::from_secs(15);
    let rss_slack_kib = 16 << 10;

    // Without TCP_NODELAY on the broker's sockets each of the few small
    // messages of a session start and end waits out a delayed ACK (~40 ms),
    // which would make 500 sessions take ~50 s; examples/mosquitto sets it
    // (docs/brokers.md, "Broker notes", says why).
    let s = Setup::with_broker_conf("leak", "set_tcp_nodelay true");
    let mut agent = s.agent(s.broker.port(), &[]);
    let pid = agent.pid();
    // One warm-up session, so buffers allocated once per process count as idle.
    banner_session(&s, &agent, "warm-up session");
    agent.wait_log(SESSION_CLOSED, 1, Duration::from_secs(10));
    let idle = Usage::of(pid);

    let t = Instant::now();
    let (mut opening, mut closing) = (Duration::ZERO, Duration::ZERO);
    for i in 0..SEQUENTIAL {
        let (o, c) = banner_session(&s, &agent, &format!("sequential session {i}"));
        opening += o;
        closing += c;
    }
    let sequential = t.elapsed();
    let t = Instant::now();
    thread::scope(|scope| {
        for i in 0..PARALLEL {
            let (s, agent) = (&s, &agent);
            scope.spawn(move || banner_session(s, agent, &format!("parallel session {i}")));
        }
    });
    let parallel = t.elapsed();
    let total = 1 + SEQUENTIAL + PARALLEL;
    agent.wait_log(SESSION_CLOSED, total, Duration::from_secs(30));
    let loaded = Usage::of(pid);

    let settled = wait_until(THREAD_SETTLE, || {
        fd_count(pid) == idle.fds && thread_count(pid) <= idle.threads
    });
    let after = Usage::of(pid);
    eprintln!(
        "{SEQUENTIAL} sequential sessions in {:.1} s (mean {:.1} ms to the banner, {:.1} ms \
         from closing stdin to exit), {PARALLEL} parallel in {:.2} s; \
         agent idle {idle:?}, right after {loaded:?}, settled {after:?}",
        sequential.as_secs_f64(),
        opening.as_secs_f64() * 1000.0 / SEQUENTIAL as f64,
        closing.as_secs_f64() * 1000.0 / SEQUENTIAL as f64,
        parallel.as_secs_f64()
    );
    let log = agent.log_text();
    assert_eq!(
        log.matches("reason=\"closed\"").count(),
        total,
        "sessions that closed cleanly; others:\n{}",
        log.lines()
            .filter(|l| l.contains(SESSION_CLOSED) && !l.contains("reason=\"closed\""))
            .take(10)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        settled,
        "agent resources did not return to idle {idle:?}: {after:?}"
    );
    assert_eq!(after.fds, idle.fds, "agent fds");
    assert!(
        after.threads <= idle.threads,
        "agent threads {after:?} vs idle {idle:?}"
    );
    assert!(
        after.rss_kib <= idle.rss_kib + rss_slack_kib,
        "agent VmRSS grew from {} to {} KiB",
        idle.rss_kib,
        after.rss_kib
    );
}

/// One-way delay on each broker link in the distant-broker test: a path
/// round trip of 4 × this (80 ms), like a broker in another region.
const FAR_ONE_WAY: Duration = Duration::from_millis(20);
/// Bytes each way through the distant broker: enough for many windows.
const FAR_BYTES: u64 = 16 << 20;

#[test]
fn scp_both_ways_through_a_distant_broker() {
    // Both the agent's and the proxy's broker connections go through a
    // relay that delays every byte, on a broker with default settings
    // (Nagle on): what users of a hosted broker have.
    let s = Setup::new("far_scp");
    let agent_link = Relay::start(s.broker.port());
    let client_link = Relay::start(s.broker.port());
    agent_link.set_latency(FAR_ONE_WAY);
    client_link.set_latency(FAR_ONE_WAY);
    let agent = s.agent(agent_link.port(), &[]);
    let ssh = s.ssh(client_link.port(), &[]);

    let out = run_with_timeout(&mut ssh.ssh("echo far && exit 7"), BIG_TIMEOUT);
    s.check(&agent, &out, 7, "ssh through the distant broker");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "far\n");

    let local = s.path("far.bin");
    let remote = s.path("far.remote");
    let back = s.path("far.back");
    write_random_file(&local, FAR_BYTES);
    let t = Instant::now();
    let out = run_with_timeout(&mut ssh.scp_upload(&local, &remote), BIG_TIMEOUT);
    s.check(&agent, &out, 0, "scp upload through the distant broker");
    let up = t.elapsed();
    assert_files_equal(&local, &remote);
    let t = Instant::now();
    let out = run_with_timeout(&mut ssh.scp_download(&remote, &back), BIG_TIMEOUT);
    s.check(&agent, &out, 0, "scp download through the distant broker");
    let down = t.elapsed();
    assert_files_equal(&local, &back);
    // On a path this far, small frames went with a PAD behind them (and
    // the proxy dropped them: the checksums above).
    let log = agent.log_text();
    let (_, pads) = session_counts(&log, "pads");
    assert!(
        pads > 0,
        "no PAD frames in the agent's session lines:\n{}",
        tail(&log, 10)
    );
    eprintln!(
        "16 MiB scp through a broker {FAR_ONE_WAY:?} away on each link: up {}, down {}",
        rate(FAR_BYTES, up),
        rate(FAR_BYTES, down)
    );
}
