//! Outages shorter than the resume timeout, in the middle of a 64 MiB scp
//! upload or an interactive session: the broker killed and restarted, the
//! proxy's or the agent's broker connection cut or stalled. The sessions
//! survive and the copies are exact.

use super::*;

/// `scp -l` (Kbit/s) for the interrupted uploads: 100 Mbit/s, so 64 MiB take
/// at least ~5.4 s and an outage reliably lands in the middle, whatever the
/// machine's tunnel throughput. Used for the undisturbed baseline too, so the
/// two wall times are comparable.
const SCP_LIMIT_KBIT: &str = "100000";
/// How much of the upload must have reached the remote file before the
/// fault: past connection setup, well before the end.
const INTERRUPT_AT: u64 = 4 << 20;

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
