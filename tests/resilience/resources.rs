//! Resources in the agent: a slow reader keeps its memory bounded, and many
//! sessions leave no file descriptors, threads or memory behind.

use super::*;

/// mosquitto's log line when a client's queue overflows.
const BROKER_DROPS: &str = "Outgoing messages are being dropped";

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
