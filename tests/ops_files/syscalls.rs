//! The agent under `strace`, run as systemd would run it, against the
//! unit's sandbox: every system call it makes passes SystemCallFilter=,
//! every socket family RestrictAddressFamilies=, no mapping is writable and
//! executable; it tells systemd when it is ready and exits on SIGTERM.

use super::*;

/// How long the agent may take to exit after SIGTERM.
const AGENT_EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Every system call in the sets `expr` names (`@group` or a call),
/// expanded with `systemd-analyze syscall-filter` and cached.
fn syscalls(expr: &str, cache: &mut HashMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    if !expr.starts_with('@') {
        return BTreeSet::from([expr.to_owned()]);
    }
    if let Some(set) = cache.get(expr) {
        return set.clone();
    }
    let out = run(systemd_analyze().args(["syscall-filter", expr]));
    assert_success(&out, &format!("systemd-analyze syscall-filter {expr}"));
    let mut set = BTreeSet::new();
    // "@group" on the first line, then indented members and "# comments".
    for member in text(&out.stdout).lines().skip(1).map(str::trim) {
        if !member.is_empty() && !member.starts_with('#') {
            set.extend(syscalls(member, cache));
        }
    }
    assert!(!set.is_empty(), "systemd-analyze knows no calls in {expr}");
    cache.insert(expr.to_owned(), set.clone());
    set
}

/// The calls the unit's SystemCallFilter= lines allow (allow-list form: a
/// plain line adds, a `~` line removes, in order).
fn allowed_syscalls(unit: &str) -> BTreeSet<String> {
    let lines = unit_values(unit, "SystemCallFilter");
    assert!(
        lines.first().is_some_and(|l| !l.starts_with('~')),
        "expected the unit's SystemCallFilter= to start with an allow list, got {lines:?}"
    );
    let mut cache = HashMap::new();
    let mut allowed = BTreeSet::new();
    for line in lines {
        let (deny, list) = match line.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, line.as_str()),
        };
        for expr in list.split_whitespace() {
            let set = syscalls(expr, &mut cache);
            if deny {
                allowed.retain(|c| !set.contains(c));
            } else {
                allowed.extend(set);
            }
        }
    }
    allowed
}

/// What an `strace -f` log says the process did.
#[derive(Default)]
struct Trace {
    calls: BTreeSet<String>,
    socket_families: BTreeSet<String>,
    writable_and_executable: Vec<String>,
}

impl Trace {
    fn parse(log: &str) -> Trace {
        let mut t = Trace::default();
        for line in log.lines() {
            // "PID  name(args) = result" or "PID  name(args <unfinished ...>";
            // resumptions ("<... name resumed>"), signals and exits are skipped.
            let rest = line
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name.is_empty() || !rest[name.len()..].starts_with('(') {
                continue;
            }
            if name == "socket" {
                if let Some(family) = rest["socket(".len()..].split([',', ')']).next() {
                    t.socket_families.insert(family.to_owned());
                }
            }
            let maps = name.contains("mmap") || name.contains("mprotect");
            if maps && rest.contains("PROT_WRITE") && rest.contains("PROT_EXEC") {
                t.writable_and_executable.push(line.to_owned());
            }
            t.calls.insert(name);
        }
        t
    }
}

/// `strace -f` running the agent; kills both when dropped (a killed strace
/// would leave the agent running, detached).
struct Traced {
    child: Child,
    trace: PathBuf,
    log: PathBuf,
}

impl Traced {
    /// The agent's pid: strace -f starts every line with it, and the first
    /// line is the agent's own execve.
    fn agent_pid(&self) -> Option<u32> {
        let trace = fs::read_to_string(&self.trace).ok()?;
        trace.split_whitespace().next()?.parse().ok()
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        // strace outlives the agent (its tracee and child), so while strace
        // runs the pid cannot belong to an unrelated process yet.
        let strace_running = matches!(self.child.try_wait(), Ok(None));
        if let Some(pid) = self.agent_pid().filter(|_| strace_running) {
            // Fails only if the agent has exited just now.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        // Errors mean strace has already exited; either way it is gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn agent_system_calls_and_sockets_pass_the_units_filters() {
    let unit = fs::read_to_string(UNIT).expect("read the unit");
    let allowed = allowed_syscalls(&unit);
    let family_lines = unit_values(&unit, "RestrictAddressFamilies");
    assert!(
        family_lines.iter().all(|l| !l.starts_with('~')),
        "expected RestrictAddressFamilies= as an allow list, got {family_lines:?}"
    );
    let families: BTreeSet<String> = family_lines
        .iter()
        .flat_map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect();

    let broker = Broker::start("");
    let sshd = Sshd::start();
    let names = names("syscalls");
    let dir = tempfile::Builder::new()
        .prefix("mqtt-proxy-strace.")
        .tempdir()
        .expect("create test tempdir");
    // What a unit with LoadCredential= passes; read (and permission-checked)
    // even though the anonymous test broker gets no user name.
    let password = dir.path().join("mqtt-password");
    fs::write(&password, "unused\n").expect("write password file");
    set_mode(&password, 0o600);
    // systemd's notification socket, so the readiness path is traced too.
    let notify_path = dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).expect("bind the notification socket");
    notify
        .set_read_timeout(Some(AGENT_ONLINE_TIMEOUT))
        .expect("set a read timeout");
    let trace = dir.path().join("agent.strace");
    let log_path = dir.path().join("agent.log");
    let log = fs::File::create(&log_path).expect("create agent log");
    // As systemd would run it: only the unit's environment. "localhost"
    // makes the agent resolve a name, as it does for a real broker.
    let child = Command::new(find_tool("strace"))
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .arg("--")
        .arg(agent_bin())
        .args(["--host", "localhost", "--port", &broker.port().to_string()])
        .args(["--topic-prefix", &names.prefix, "--node-id", &names.node])
        .args(["--target", &sshd.target()])
        .arg("--password-file")
        .arg(&password)
        .env_clear()
        .env("RUST_LOG", "info")
        .env("NOTIFY_SOCKET", &notify_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup agent log"))
        .stderr(log)
        .spawn()
        .expect("spawn strace");
    let mut traced = Traced {
        child,
        trace,
        log: log_path,
    };

    let online = wait_until(AGENT_ONLINE_TIMEOUT, || {
        traced.log_text().contains(AGENT_ONLINE_TEXT)
    });
    assert!(
        online,
        "agent under strace did not come online:\n{}",
        traced.log_text()
    );
    let mut buf = [0u8; 256];
    let n = notify
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no readiness notification: {e}\n{}", traced.log_text()));
    let message = text(&buf[..n]);
    assert!(
        message.lines().any(|l| l == "READY=1"),
        "notification {message:?} lacks READY=1"
    );

    // A session with data both ways, then a clean shutdown.
    let ssh = Ssh::via_proxy(&broker, &names.prefix, &names.node, &sshd);
    let out = run(&mut ssh.ssh("echo ok"));
    assert_success(&out, "ssh echo ok through the traced agent");
    assert_eq!(text(&out.stdout), "ok\n");
    let local = dir.path().join("file.bin");
    let remote = dir.path().join("file.remote");
    let back = dir.path().join("file.back");
    write_random_file(&local, 2 << 20);
    assert_success(&run(&mut ssh.scp_upload(&local, &remote)), "scp upload");
    assert_success(&run(&mut ssh.scp_download(&remote, &back)), "scp download");
    assert_files_equal(&local, &back);

    let pid = traced.agent_pid().expect("agent pid from the strace log");
    let kill = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success(), "kill -TERM {pid} failed");
    let mut status = None;
    wait_until(AGENT_EXIT_TIMEOUT, || {
        status = traced.child.try_wait().expect("try_wait on strace");
        status.is_some()
    });
    assert!(
        status.is_some(),
        "agent did not exit within {AGENT_EXIT_TIMEOUT:?} of SIGTERM:\n{}",
        traced.log_text()
    );

    let trace = Trace::parse(&fs::read_to_string(&traced.trace).expect("read strace log"));
    assert!(
        trace.calls.contains("connect") && trace.calls.contains("epoll_wait"),
        "the strace log looks incomplete: {:?}",
        trace.calls
    );
    eprintln!(
        "agent made {} distinct system calls: {:?}; socket families {:?}",
        trace.calls.len(),
        trace.calls,
        trace.socket_families
    );
    let denied: Vec<_> = trace.calls.difference(&allowed).collect();
    assert!(
        denied.is_empty(),
        "the unit's SystemCallFilter= would make these calls fail with EPERM: {denied:?}"
    );
    let refused: Vec<_> = trace.socket_families.difference(&families).collect();
    assert!(
        refused.is_empty(),
        "the unit's RestrictAddressFamilies= would refuse sockets of {refused:?}"
    );
    assert!(
        trace.writable_and_executable.is_empty(),
        "MemoryDenyWriteExecute=yes would refuse: {:?}",
        trace.writable_and_executable
    );
}
