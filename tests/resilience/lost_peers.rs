//! Peers lost for good: an outage longer than `--resume-timeout` ends the
//! session on both sides, and the agent closes the sshd connection of a
//! killed proxy.

use super::*;

/// The short `--resume-timeout` of the tests where it expires.
const SHORT_RESUME: Duration = Duration::from_secs(5);
/// An outage well beyond [`SHORT_RESUME`] plus its slack.
const LONG_OUTAGE: Duration = Duration::from_secs(12);
/// How long after its `--resume-timeout` has run out a session may take to
/// be closed on both sides.
const CLOSE_SLACK: Duration = Duration::from_secs(2);

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
