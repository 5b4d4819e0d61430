//! The operations files, checked with the real tools: the systemd unit with
//! `systemd-analyze` (security rating, `verify`) and against the system calls
//! the agent makes under `strace`; `ssh_config.example` with real ssh, scp,
//! sftp, rsync and git through `mqtt-proxy`; `scripts/install-agent` into a
//! temporary DESTDIR; the Debian package `scripts/package` builds, with
//! `dpkg-deb` and installed by `dpkg` into a throwaway root. Nothing is skipped: a missing tool is a failure that
//! names it (`scripts/install-deps` installs them all).

// The man pages and completions, generated in-process from the same code
// `examples/gen_docs` runs, so the test needs no second cargo build.
#[path = "../examples/gen_docs/docs.rs"]
mod docs;

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::common::*;
use tempfile::TempDir;

/// The unit as shipped.
const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/systemd/mqtt-proxy-agent.service"
);
const UNIT_NAME: &str = "mqtt-proxy-agent.service";
const ENV_EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/agent.env.example");
const SSH_CONFIG_EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ssh_config.example");
const INSTALL_AGENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install-agent");
/// Where the unit expects the agent (scripts/install-agent's default).
const INSTALLED_AGENT: &str = "/usr/local/bin/mqtt-proxy-agent";
/// Highest acceptable "Overall exposure level" (0 = locked down, 10 = none).
const MAX_EXPOSURE: f64 = 2.0;
/// Where distributions put systemd's own units (Debian: /lib is /usr/lib).
const SYSTEM_UNIT_DIRS: &[&str] = &["/usr/lib/systemd/system", "/lib/systemd/system"];
/// Units every service depends on through DefaultDependencies=yes.
const DEFAULT_DEPENDENCIES: &[&str] = &["sysinit.target", "basic.target", "shutdown.target"];
/// The command the example's ProxyCommands start with; the test replaces it
/// with the built proxy and the test broker.
const EXAMPLE_PROXY: &str = "mqtt-proxy --host broker.example.com";
/// The example's second broker (`NODE@HOST`); the test points it at a
/// second test broker.
const EXAMPLE_SECOND_BROKER: &str = "broker-eu.example.com";
/// The password file the example names, relative to $HOME.
const EXAMPLE_PASSWORD_FILE: &str = ".config/mqtt-proxy/password";
/// How long the agent may take to exit after SIGTERM.
const AGENT_EXIT_TIMEOUT: Duration = Duration::from_secs(10);

fn systemd_analyze() -> Command {
    let mut cmd = Command::new(find_tool("systemd-analyze"));
    cmd.arg("--no-pager").stdin(Stdio::null());
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// The values of every uncommented `key=` line of a unit, in order.
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------
// systemd unit
// ---------------------------------------------------------------------------

/// The number in systemd-analyze's "→ Overall exposure level for X: 1.1 OK 🙂".
fn overall_exposure(stdout: &str) -> Option<f64> {
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level for"))?;
    line.rsplit_once(": ")?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn unit_security_exposure_is_at_most_2_0() {
    let out = run(systemd_analyze()
        .args(["security", "--offline=true"])
        .arg(UNIT));
    assert_success(&out, "systemd-analyze security --offline=true");
    let stdout = text(&out.stdout);
    let exposure = overall_exposure(&stdout)
        .unwrap_or_else(|| panic!("no \"Overall exposure level\" line in:\n{stdout}"));
    eprintln!("systemd-analyze security: overall exposure level {exposure:.1}");
    assert!(
        exposure <= MAX_EXPOSURE,
        "exposure {exposure} is above {MAX_EXPOSURE}; the ✗ lines say what to restrict:\n{stdout}"
    );
    // Parse warnings (unknown keys, bad values) would land here.
    assert_eq!(text(&out.stderr), "", "systemd-analyze security warned");
}

/// A root directory for `systemd-analyze verify --root`: `unit_text` as
/// /etc/systemd/system/mqtt-proxy-agent.service plus systemd's own copies of
/// the targets it depends on, and nothing else, so verify reads this unit and
/// none of the host's (whose warnings would be noise). Its ExecStart binary
/// is looked up under the root too; see [`add_agent`].
fn unit_root(unit_text: &str) -> TempDir {
    let root = tempfile::Builder::new()
        .prefix("mqtt-proxy-root.")
        .tempdir()
        .expect("create root tempdir");
    let etc = root.path().join("etc/systemd/system");
    fs::create_dir_all(&etc).expect("create etc/systemd/system");
    fs::write(etc.join(UNIT_NAME), unit_text).expect("write unit copy");
    add_targets(root.path(), unit_text);
    root
}

/// Copy systemd's own targets that `unit_text` depends on (implicitly or by
/// name) into ROOT/usr/lib/systemd/system.
fn add_targets(root: &Path, unit_text: &str) {
    let dest = root.join("usr/lib/systemd/system");
    fs::create_dir_all(&dest).expect("create usr/lib/systemd/system");
    let named = ["Wants", "Requires", "After", "Before", "WantedBy"]
        .iter()
        .flat_map(|key| unit_values(unit_text, key))
        .flat_map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .filter(|u| u.ends_with(".target"));
    let targets: BTreeSet<String> = DEFAULT_DEPENDENCIES
        .iter()
        .map(|t| t.to_string())
        .chain(named)
        .collect();
    for target in targets {
        let source = SYSTEM_UNIT_DIRS
            .iter()
            .map(|d| Path::new(d).join(&target))
            .find(|p| p.is_file())
            .unwrap_or_else(|| {
                panic!("{target} not found in {SYSTEM_UNIT_DIRS:?}; is systemd installed?")
            });
        fs::copy(&source, dest.join(&target))
            .unwrap_or_else(|e| panic!("copy {}: {e}", source.display()));
    }
}

/// Put the freshly built agent where the unit expects it, under `root`.
fn add_agent(root: &Path) {
    let dest = root.join(INSTALLED_AGENT.trim_start_matches('/'));
    fs::create_dir_all(dest.parent().expect("has a parent")).expect("create bin dir");
    fs::copy(agent_bin(), &dest).expect("copy the agent binary");
}

/// `systemd-analyze verify --root=ROOT UNIT`.
fn verify(root: &Path, unit: &str) -> Output {
    run(systemd_analyze()
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg(unit))
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let unit = fs::read_to_string(UNIT).expect("read the unit");
    let root = unit_root(&unit);

    // Without the binary, verify names it: ExecStart is checked.
    let out = verify(root.path(), UNIT_NAME);
    assert_eq!(
        text(&out.stderr).trim_end(),
        format!(
            "{UNIT_NAME}: Command {INSTALLED_AGENT} is not executable: No such file or directory"
        ),
        "verify without the agent binary in the root"
    );

    add_agent(root.path());
    let out = verify(root.path(), UNIT_NAME);
    eprintln!(
        "systemd-analyze verify: {}, stdout {:?}, stderr {:?}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_success(&out, "systemd-analyze verify");
    assert_eq!(text(&out.stdout), "", "systemd-analyze verify printed");
    assert_eq!(text(&out.stderr), "", "systemd-analyze verify warned");

    // The same setup does report mistakes in the unit itself.
    let broken = unit.replace(
        "[Service]\n",
        "[Service]\nRestartt=always\nSystemCallFilter=@no-such-group\n",
    );
    fs::write(
        root.path().join("etc/systemd/system/broken.service"),
        broken,
    )
    .expect("write broken unit");
    let out = verify(root.path(), "broken.service");
    let stderr = text(&out.stderr);
    for expected in [
        "Unknown key 'Restartt' in section [Service]",
        "Unknown system call group, ignoring: @no-such-group",
    ] {
        assert!(
            stderr.contains(expected),
            "verify of a broken unit should say {expected:?}; it printed:\n{stderr}"
        );
    }
}

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

// ---------------------------------------------------------------------------
// ssh_config.example
// ---------------------------------------------------------------------------

/// The `Host` patterns of an ssh_config, in order.
fn host_patterns(config: &str) -> Vec<String> {
    config
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Host "))
        .map(|p| p.trim().to_owned())
        .collect()
}

/// A broker, two sshds and agents for nodes `web1` and `web2` (one per
/// sshd, so a reply names the node that served it), a second broker with
/// node `db1` (known only there), and the example file rewritten to reach
/// them.
struct Fleet {
    // Dropped in declaration order: the agents go before what they talk to.
    web1: Agent,
    web2: Agent,
    db1: Agent,
    sshd1: Sshd,
    sshd2: Sshd,
    _broker: Broker,
    _broker2: Broker,
    config: PathBuf,
    home: PathBuf,
    dir: TempDir,
}

impl Fleet {
    fn start() -> Fleet {
        let broker = Broker::start("");
        let (sshd1, sshd2) = (Sshd::start(), Sshd::start());
        // Node ids as in the example; the prefix keeps them apart from
        // every other test's.
        let prefix = names("ssh_config_example").prefix;
        let web1 = Agent::start(&broker, sshd1.port(), "web1", &prefix);
        let web2 = Agent::start(&broker, sshd2.port(), "web2", &prefix);
        let broker2 = Broker::start("");
        let db1 = Agent::start(&broker2, sshd1.port(), "db1", &prefix);
        let dir = tempfile::Builder::new()
            .prefix("mqtt-proxy-ssh-config.")
            .tempdir()
            .expect("create test tempdir");

        // $HOME for the clients: holds the password file the example names
        // (read by the proxy; the anonymous broker is sent no credentials
        // because no user is set) and no ~/.config/mqtt-proxy/config.toml.
        let home = dir.path().join("home");
        let password = home.join(EXAMPLE_PASSWORD_FILE);
        fs::create_dir_all(password.parent().expect("has a parent")).expect("create ~/.config");
        fs::write(&password, "not-needed-by-the-test-broker\n").expect("write password file");
        set_mode(&password, 0o600);

        let example = fs::read_to_string(SSH_CONFIG_EXAMPLE).expect("read ssh_config.example");
        let proxy_bin = proxy_bin();
        assert_eq!(
            shell_quote(proxy_bin),
            proxy_bin,
            "proxy path needs no quoting"
        );
        let proxy = format!(
            "{} --host 127.0.0.1 --port {} --topic-prefix {prefix}",
            proxy_bin.replace('%', "%%"),
            broker.port()
        );
        let proxy_commands = example
            .lines()
            .filter(|l| l.trim_start().starts_with("ProxyCommand"))
            .collect::<Vec<_>>();
        for line in &proxy_commands {
            assert_eq!(
                line.matches(EXAMPLE_PROXY).count(),
                1,
                "every ProxyCommand in ssh_config.example should call {EXAMPLE_PROXY:?} once: {line}"
            );
        }
        // ssh takes the first value it finds for each option, so this block
        // in front wins over the example's `User admin`; it adds what the
        // test sshds need and sets no ProxyCommand.
        let prelude = format!(
            "# Added by tests/ops_files.rs\n\
             Host *\n    User {user}\n    IdentityFile {key1}\n    IdentityFile {key2}\n    \
             IdentitiesOnly yes\n    StrictHostKeyChecking no\n    \
             UserKnownHostsFile /dev/null\n    BatchMode yes\n    LogLevel ERROR\n\n",
            user = current_user(),
            key1 = sshd1.client_key().display(),
            key2 = sshd2.client_key().display(),
        );
        let config = dir.path().join("ssh_config");
        let rewritten = example.replace(EXAMPLE_PROXY, &proxy).replace(
            EXAMPLE_SECOND_BROKER,
            &format!("127.0.0.1:{}", broker2.port()),
        );
        fs::write(&config, prelude + &rewritten).expect("write rewritten ssh_config");
        Fleet {
            web1,
            web2,
            db1,
            sshd1,
            sshd2,
            _broker: broker,
            _broker2: broker2,
            config,
            home,
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `program` with only PATH and the test's HOME in its environment, so
    /// no MQTT_* variable or user config file of the developer's applies.
    fn client(&self, program: &str) -> Command {
        let mut cmd = Command::new(find_tool(program));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .stdin(Stdio::null());
        cmd
    }

    fn ssh_f(&self) -> String {
        format!("ssh -F {}", self.config.display())
    }

    /// Assert success, attaching every log that could explain a failure.
    fn check(&self, out: &Output, what: &str) {
        if !out.status.success() {
            eprintln!(
                "--- rewritten ssh_config ---\n{}\n--- web1 agent ---\n{}\n--- web2 agent ---\n{}\n\
                 --- db1 agent ---\n{}\n--- sshd1 ---\n{}\n--- sshd2 ---\n{}",
                fs::read_to_string(&self.config).unwrap_or_default(),
                self.web1.log_text(),
                self.web2.log_text(),
                self.db1.log_text(),
                self.sshd1.log_text(),
                self.sshd2.log_text()
            );
        }
        assert_success(out, what);
    }
}

#[test]
fn ssh_config_example_hosts_work_for_ssh_scp_sftp_rsync_and_git() {
    let example = fs::read_to_string(SSH_CONFIG_EXAMPLE).expect("read ssh_config.example");
    let patterns = host_patterns(&example);
    assert_eq!(
        patterns,
        ["web1", "*.fleet", "*.eu"],
        "ssh_config.example's Host blocks changed; give each one a case in this test"
    );
    let f = Fleet::start();
    let cfg = f.config.to_str().expect("config path is UTF-8");
    // The sshd's port, from the server side of the connection, says which
    // agent carried the session.
    let whoami = r#"echo ok; echo "${SSH_CONNECTION##* }""#;
    for (host, sshd) in [
        ("web1", &f.sshd1),
        ("web2.fleet", &f.sshd2),
        ("db1.eu", &f.sshd1),
    ] {
        let out = run(f.client("ssh").args(["-F", cfg, host, whoami]));
        f.check(&out, &format!("ssh -F ssh_config {host}"));
        assert_eq!(
            text(&out.stdout),
            format!("ok\n{}\n", sshd.port()),
            "ssh {host}"
        );
    }

    // scp up through one host, down through the other.
    let local = f.path("backup.tar");
    let remote = f.path("backup.remote");
    let back = f.path("backup.back");
    write_random_file(&local, 1 << 20);
    let out = run(f
        .client("scp")
        .args(["-F", cfg])
        .arg(&local)
        .arg(format!("web1:{}", remote.display())));
    f.check(&out, "scp to web1");
    let out = run(f
        .client("scp")
        .args(["-F", cfg])
        .arg(format!("web2.fleet:{}", remote.display()))
        .arg(&back));
    f.check(&out, "scp from web2.fleet");
    assert_files_equal(&local, &back);

    // sftp
    let batch = f.path("sftp.batch");
    let sftp_back = f.path("backup.sftp");
    fs::write(
        &batch,
        format!("get {} {}\n", remote.display(), sftp_back.display()),
    )
    .expect("write sftp batch");
    let out = run(f
        .client("sftp")
        .args(["-F", cfg, "-b"])
        .arg(&batch)
        .arg("web1"));
    f.check(&out, "sftp web1");
    assert_files_equal(&local, &sftp_back);

    // rsync a small tree.
    let site = f.path("site");
    fs::create_dir_all(site.join("css")).expect("create site tree");
    write_random_file(&site.join("index.html"), 10_000);
    write_random_file(&site.join("css/main.css"), 3_000);
    let copy = f.path("site.copy");
    let out = run(f
        .client("rsync")
        .args(["-e", &f.ssh_f(), "-a", "--partial"])
        .arg(format!("{}/", site.display()))
        .arg(format!("web2.fleet:{}/", copy.display())));
    f.check(&out, "rsync to web2.fleet");
    assert_trees_equal(&site, &copy);

    // git clone of a repository with one commit.
    let work = f.path("project");
    let bare = f.path("project.git");
    let git = |args: &[&str]| {
        let mut cmd = f.client("git");
        cmd.args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
            .args(args);
        cmd
    };
    let work_s = work.to_str().expect("UTF-8 path");
    let bare_s = bare.to_str().expect("UTF-8 path");
    f.check(&run(&mut git(&["init", "-q", work_s])), "git init");
    fs::write(work.join("README"), "hello through mqtt\n").expect("write README");
    f.check(&run(&mut git(&["-C", work_s, "add", "README"])), "git add");
    f.check(
        &run(&mut git(&["-C", work_s, "commit", "-q", "-m", "first"])),
        "git commit",
    );
    f.check(
        &run(&mut git(&["clone", "-q", "--bare", work_s, bare_s])),
        "git clone --bare",
    );
    let clone = f.path("project.clone");
    let out = run(git(&["clone", "-q", &format!("web1:{bare_s}")])
        .arg(&clone)
        .env("GIT_SSH_COMMAND", f.ssh_f()));
    f.check(&out, "git clone web1:...");
    assert_eq!(
        fs::read_to_string(clone.join("README")).expect("read cloned README"),
        "hello through mqtt\n"
    );
    // ... and a push back.
    let clone_s = clone.to_str().expect("UTF-8 path");
    fs::write(clone.join("NEWS"), "pushed through mqtt\n").expect("write NEWS");
    f.check(&run(&mut git(&["-C", clone_s, "add", "NEWS"])), "git add");
    f.check(
        &run(&mut git(&["-C", clone_s, "commit", "-q", "-m", "second"])),
        "git commit",
    );
    let out = run(
        git(&["-C", clone_s, "push", "-q", "origin", "HEAD"]).env("GIT_SSH_COMMAND", f.ssh_f())
    );
    f.check(&out, "git push web1:...");
    let out = run(&mut git(&["-C", bare_s, "show", "HEAD:NEWS"]));
    f.check(&out, "git show in the pushed-to repository");
    assert_eq!(text(&out.stdout), "pushed through mqtt\n");

    // ssh -L: a local port forwarded inside the tunnel, here to web2's sshd,
    // which greets whoever connects with its banner.
    let local_port = free_port();
    let forward = format!("{local_port}:127.0.0.1:{}", f.sshd2.port());
    let mut tunnel = Background::start(f.client("ssh").args([
        "-F",
        cfg,
        "-o",
        "ExitOnForwardFailure=yes",
        "-L",
        &forward,
        "web1",
        "sleep 60",
    ]));
    let mut banner = String::new();
    let forwarded = wait_until(Duration::from_secs(20), || {
        assert!(tunnel.try_status().is_none(), "ssh -L exited early");
        let Ok(conn) = std::net::TcpStream::connect(("127.0.0.1", local_port)) else {
            return false;
        };
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set read timeout");
        // An empty line: the forward was not up yet and closed the connection.
        banner.clear();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(conn), &mut banner).is_ok()
            && !banner.is_empty()
    });
    tunnel.kill();
    assert!(forwarded, "nothing came through the -L forward");
    assert!(
        banner.starts_with("SSH-2.0-"),
        "not an sshd banner: {banner:?}"
    );
}

// ---------------------------------------------------------------------------
// scripts/install-agent
// ---------------------------------------------------------------------------

fn install_agent(destdir: &Path, args: &[&str]) -> Output {
    run(Command::new(INSTALL_AGENT)
        .env("DESTDIR", destdir)
        .args(["--binary", agent_bin()])
        .args(args)
        .stdin(Stdio::null()))
}

#[test]
fn install_agent_stages_binary_unit_and_env_file() {
    let dest = tempfile::Builder::new()
        .prefix("mqtt-proxy-destdir.")
        .tempdir()
        .expect("create DESTDIR");
    let d = dest.path();
    let out = install_agent(d, &[]);
    assert_success(&out, "scripts/install-agent");
    let stdout = text(&out.stdout);
    for step in [
        "/etc/mqtt-proxy/agent.env",
        "systemctl enable --now mqtt-proxy-agent",
        "journalctl -u mqtt-proxy-agent -f",
    ] {
        assert!(
            stdout.contains(step),
            "next steps should mention {step:?}:\n{stdout}"
        );
    }
    assert!(
        text(&out.stderr).contains("not running systemctl daemon-reload"),
        "with DESTDIR, systemd must be left alone:\n{}",
        text(&out.stderr)
    );

    let bin = d.join("usr/local/bin/mqtt-proxy-agent");
    let unit = d.join("etc/systemd/system").join(UNIT_NAME);
    let conf = d.join("etc/mqtt-proxy");
    let env = conf.join("agent.env");
    assert_files_equal(Path::new(agent_bin()), &bin);
    assert_files_equal(Path::new(UNIT), &unit);
    assert_files_equal(Path::new(ENV_EXAMPLE), &env);
    for (path, expected) in [(&bin, 0o755), (&unit, 0o644), (&conf, 0o755), (&env, 0o600)] {
        assert_eq!(
            mode(path),
            expected,
            "mode of {} is {:o}",
            path.display(),
            mode(path)
        );
    }

    assert_verifies(d, &unit);

    // A second run (an upgrade) keeps the administrator's settings.
    fs::write(&env, "MQTT_HOST=broker.internal\n").expect("edit agent.env");
    let out = install_agent(d, &[]);
    assert_success(&out, "scripts/install-agent, second run");
    assert_eq!(
        fs::read_to_string(&env).expect("read agent.env"),
        "MQTT_HOST=broker.internal\n"
    );
    assert_eq!(mode(&env), 0o600);

    // --prefix moves the binary, and ExecStart follows it.
    let out = install_agent(d, &["--prefix", "/opt/mqtt-proxy"]);
    assert_success(&out, "scripts/install-agent --prefix /opt/mqtt-proxy");
    assert_files_equal(
        Path::new(agent_bin()),
        &d.join("opt/mqtt-proxy/bin/mqtt-proxy-agent"),
    );
    let installed = fs::read_to_string(&unit).expect("read installed unit");
    assert_eq!(
        unit_values(&installed, "ExecStart"),
        ["/opt/mqtt-proxy/bin/mqtt-proxy-agent"]
    );
    assert!(
        !installed.contains(INSTALLED_AGENT),
        "the commented ExecStart should follow --prefix too:\n{installed}"
    );
    assert_verifies(d, &unit);
}

/// `systemd-analyze verify` of the unit installed under `root` (against the
/// binary installed there) prints nothing.
fn assert_verifies(root: &Path, unit: &Path) {
    add_targets(
        root,
        &fs::read_to_string(unit).expect("read installed unit"),
    );
    let out = verify(root, UNIT_NAME);
    assert_success(&out, "systemd-analyze verify of the installed unit");
    assert_eq!(
        text(&out.stdout) + &text(&out.stderr),
        "",
        "systemd-analyze verify of the installed unit printed"
    );
}

// ---------------------------------------------------------------------------
// scripts/package (the Debian package)
// ---------------------------------------------------------------------------

const PACKAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/package");
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The packaged unit's ExecStart.
const PACKAGED_AGENT: &str = "/usr/bin/mqtt-proxy-agent";
const PACKAGED_UNIT: &str = "usr/lib/systemd/system/mqtt-proxy-agent.service";
const PACKAGED_ENV: &str = "etc/mqtt-proxy/agent.env";

/// Every entry of the package, as `dpkg-deb -c` lists it: mode and path
/// (all owned by root/root).
const PACKAGE_CONTENTS: &[(&str, &str)] = &[
    ("drwxr-xr-x", "./"),
    ("drwxr-xr-x", "./etc/"),
    ("drwxr-xr-x", "./etc/mqtt-proxy/"),
    ("-rw-------", "./etc/mqtt-proxy/agent.env"),
    ("drwxr-xr-x", "./usr/"),
    ("drwxr-xr-x", "./usr/bin/"),
    ("-rwxr-xr-x", "./usr/bin/mqtt-proxy"),
    ("-rwxr-xr-x", "./usr/bin/mqtt-proxy-agent"),
    ("drwxr-xr-x", "./usr/lib/"),
    ("drwxr-xr-x", "./usr/lib/systemd/"),
    ("drwxr-xr-x", "./usr/lib/systemd/system/"),
    (
        "-rw-r--r--",
        "./usr/lib/systemd/system/mqtt-proxy-agent.service",
    ),
    ("drwxr-xr-x", "./usr/share/"),
    ("drwxr-xr-x", "./usr/share/bash-completion/"),
    ("drwxr-xr-x", "./usr/share/bash-completion/completions/"),
    (
        "-rw-r--r--",
        "./usr/share/bash-completion/completions/mqtt-proxy",
    ),
    (
        "-rw-r--r--",
        "./usr/share/bash-completion/completions/mqtt-proxy-agent",
    ),
    ("drwxr-xr-x", "./usr/share/doc/"),
    ("drwxr-xr-x", "./usr/share/doc/mqtt-proxy/"),
    ("-rw-r--r--", "./usr/share/doc/mqtt-proxy/copyright"),
    ("drwxr-xr-x", "./usr/share/fish/"),
    ("drwxr-xr-x", "./usr/share/fish/vendor_completions.d/"),
    (
        "-rw-r--r--",
        "./usr/share/fish/vendor_completions.d/mqtt-proxy-agent.fish",
    ),
    (
        "-rw-r--r--",
        "./usr/share/fish/vendor_completions.d/mqtt-proxy.fish",
    ),
    ("drwxr-xr-x", "./usr/share/man/"),
    ("drwxr-xr-x", "./usr/share/man/man1/"),
    ("-rw-r--r--", "./usr/share/man/man1/mqtt-proxy-agent.1.gz"),
    ("-rw-r--r--", "./usr/share/man/man1/mqtt-proxy.1.gz"),
    ("drwxr-xr-x", "./usr/share/zsh/"),
    ("drwxr-xr-x", "./usr/share/zsh/vendor-completions/"),
    (
        "-rw-r--r--",
        "./usr/share/zsh/vendor-completions/_mqtt-proxy",
    ),
    (
        "-rw-r--r--",
        "./usr/share/zsh/vendor-completions/_mqtt-proxy-agent",
    ),
];

/// `dpkg` acting on the throwaway root: its database under ROOT/var/lib/dpkg,
/// maintainer scripts run without chroot (the root has no shell) and with
/// DPKG_ROOT set, which they take as "not this system's systemd";
/// dependencies (libc6, …) are not installed in that root.
fn dpkg_in(root: &Path) -> Command {
    let mut cmd = Command::new(find_tool("dpkg"));
    cmd.arg(format!("--root={}", root.display()))
        .args(["--force-script-chrootless", "--force-depends"])
        // Overrides a host's path-exclude (Docker images drop man pages).
        .arg("--path-include=*")
        .stdin(Stdio::null());
    if !is_root() {
        cmd.arg("--force-not-root");
    }
    cmd
}

fn dpkg_status(root: &Path) -> String {
    let out = run(Command::new(find_tool("dpkg-query"))
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .args([
            "-W",
            "-f",
            "${Status}|${Version}|${Conffiles}",
            "mqtt-proxy",
        ]));
    assert_success(&out, "dpkg-query -W mqtt-proxy");
    text(&out.stdout)
}

fn md5(path: &Path) -> String {
    let out = run(Command::new(find_tool("md5sum")).arg(path));
    assert_success(&out, "md5sum");
    text(&out.stdout)
        .split_whitespace()
        .next()
        .expect("md5sum prints a sum")
        .to_owned()
}

/// `man -l FILE` as plain text, without hyphenation, every word separated
/// by one space.
fn man_text(page: &Path) -> String {
    let out = run(Command::new(find_tool("man"))
        .args(["--warnings", "--nh", "--nj", "-l"])
        .arg(page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::null()));
    assert_success(&out, &format!("man -l {}", page.display()));
    assert_eq!(
        text(&out.stderr),
        "",
        "man --warnings -l {}",
        page.display()
    );
    text(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn debian_package_holds_binaries_unit_conffile_man_pages_and_completions() {
    let dir = tempfile::Builder::new()
        .prefix("mqtt-proxy-package.")
        .tempdir()
        .expect("create test tempdir");
    let docs_dir = dir.path().join("docs");
    let generated = docs::write_all(&docs_dir).expect("generate man pages and completions");
    let generated: Vec<String> = generated.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(
        generated,
        [
            "man1/mqtt-proxy.1",
            "bash/mqtt-proxy",
            "zsh/_mqtt-proxy",
            "fish/mqtt-proxy.fish",
            "man1/mqtt-proxy-agent.1",
            "bash/mqtt-proxy-agent",
            "zsh/_mqtt-proxy-agent",
            "fish/mqtt-proxy-agent.fish",
        ]
    );

    // Package the binaries this test run uses.
    let bin_dir = Path::new(proxy_bin())
        .parent()
        .expect("binary has a directory");
    assert_eq!(Path::new(agent_bin()).parent(), Some(bin_dir));
    let out_dir = dir.path().join("out");
    let out = run(Command::new(PACKAGE)
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--docs")
        .arg(&docs_dir)
        .arg("--out")
        .arg(&out_dir)
        .stdin(Stdio::null()));
    assert_success(&out, "scripts/package");
    let arch = run(Command::new(find_tool("dpkg")).arg("--print-architecture"));
    assert_success(&arch, "dpkg --print-architecture");
    let deb = out_dir.join(format!(
        "mqtt-proxy_{VERSION}_{}.deb",
        text(&arch.stdout).trim()
    ));
    assert_eq!(text(&out.stdout), format!("{}\n", deb.display()));

    // Contents, owners and modes.
    let dpkg_deb = || {
        let mut cmd = Command::new(find_tool("dpkg-deb"));
        cmd.stdin(Stdio::null());
        cmd
    };
    let out = run(dpkg_deb().arg("--contents").arg(&deb));
    assert_success(&out, "dpkg-deb --contents");
    let listing = text(&out.stdout);
    let mut entries = Vec::new();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 6, "unexpected dpkg-deb -c line {line:?}");
        assert_eq!(fields[1], "root/root", "owner in {line:?}");
        entries.push((fields[0].to_owned(), fields[5].to_owned()));
    }
    let expected: Vec<(String, String)> = PACKAGE_CONTENTS
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(entries, expected, "dpkg-deb -c:\n{listing}");
    let out = run(dpkg_deb().arg("--info").arg(&deb).arg("conffiles"));
    assert_success(&out, "dpkg-deb --info conffiles");
    assert_eq!(text(&out.stdout), "/etc/mqtt-proxy/agent.env\n");
    let out = run(dpkg_deb()
        .arg("--field")
        .arg(&deb)
        .args(["Package", "Version", "Depends"]));
    assert_success(&out, "dpkg-deb --field");
    let fields = text(&out.stdout);
    assert!(
        fields.starts_with(&format!(
            "Package: mqtt-proxy\nVersion: {VERSION}\nDepends: libc6 (>= 2."
        )) && fields.ends_with("), libgcc-s1\n"),
        "control fields: {fields:?}"
    );

    // Installed by dpkg into a throwaway root.
    let root = dir.path().join("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        fs::create_dir_all(root.join(d)).expect("create the dpkg database");
    }
    fs::write(root.join("var/lib/dpkg/status"), "").expect("create dpkg status");
    let out = run(dpkg_in(&root).arg("--install").arg(&deb));
    assert_success(&out, "dpkg --root --install");
    let env = root.join(PACKAGED_ENV);
    assert_eq!(
        dpkg_status(&root),
        format!(
            "install ok installed|{VERSION}| /etc/mqtt-proxy/agent.env {}",
            md5(Path::new(ENV_EXAMPLE))
        )
    );
    for (bin, name) in [
        (proxy_bin(), "mqtt-proxy"),
        (agent_bin(), "mqtt-proxy-agent"),
    ] {
        let installed = root.join("usr/bin").join(name);
        assert_files_equal(Path::new(bin), &installed);
        let out = run(Command::new(&installed)
            .arg("--version")
            .stdin(Stdio::null()));
        assert_success(&out, &format!("{name} --version"));
        assert_eq!(text(&out.stdout), format!("{name} {VERSION}\n"));
        assert_eq!(text(&out.stderr), "", "{name} --version stderr");

        let man = root.join(format!("usr/share/man/man1/{name}.1.gz"));
        let gunzip = run(Command::new(find_tool("gzip")).arg("-dc").arg(&man));
        assert_success(&gunzip, "gzip -dc");
        let roff = fs::read(docs_dir.join(format!("man1/{name}.1"))).expect("read roff");
        assert!(
            gunzip.stdout == roff,
            "{} is not the generated page",
            man.display()
        );
        let page = man_text(&man);
        let about = docs::commands()
            .into_iter()
            .find(|c| c.get_name() == name)
            .and_then(|c| c.get_about().map(|a| a.to_string()))
            .expect("the command has an about text");
        for expected in [
            format!("NAME {name} - {about}"),
            "SYNOPSIS".to_owned(),
            "--resume-timeout <SECONDS>".to_owned(),
            "MQTT_RESUME_TIMEOUT environment variable".to_owned(),
            format!("VERSION v{VERSION}"),
        ] {
            assert!(
                page.contains(&expected),
                "man -l {} lacks {expected:?}:\n{page}",
                man.display()
            );
        }

        for (installed, generated) in [
            (
                format!("usr/share/bash-completion/completions/{name}"),
                format!("bash/{name}"),
            ),
            (
                format!("usr/share/zsh/vendor-completions/_{name}"),
                format!("zsh/_{name}"),
            ),
            (
                format!("usr/share/fish/vendor_completions.d/{name}.fish"),
                format!("fish/{name}.fish"),
            ),
        ] {
            let generated = docs_dir.join(generated);
            assert!(
                fs::metadata(&generated).expect("stat").len() > 0,
                "{} is empty",
                generated.display()
            );
            assert_files_equal(&generated, &root.join(installed));
        }
        // bash loads the completion and binds it to the command.
        let bash_file = root.join(format!("usr/share/bash-completion/completions/{name}"));
        let out = run(Command::new(find_tool("bash"))
            .arg("-c")
            .arg(r#"source "$1" && complete -p "$2""#)
            .arg("bash")
            .arg(&bash_file)
            .arg(name));
        assert_success(&out, "bash: source the completion");
        assert!(
            text(&out.stdout).starts_with("complete ")
                && text(&out.stdout).contains(" -F _")
                && text(&out.stdout).trim_end().ends_with(&format!(" {name}")),
            "complete -p {name}: {:?}",
            text(&out.stdout)
        );
        let zsh =
            fs::read_to_string(root.join(format!("usr/share/zsh/vendor-completions/_{name}")))
                .expect("read zsh completion");
        assert_eq!(
            zsh.lines().next(),
            Some(format!("#compdef {name}").as_str())
        );
        let fish = fs::read_to_string(
            root.join(format!("usr/share/fish/vendor_completions.d/{name}.fish")),
        )
        .expect("read fish completion");
        assert!(
            fish.contains(&format!("complete -c {name} ")),
            "fish completion for {name}:\n{fish}"
        );
    }

    // The unit, pointed at the packaged binary, verifies against it.
    let unit = root.join(PACKAGED_UNIT);
    let shipped = fs::read_to_string(UNIT).expect("read the unit");
    let packaged = fs::read_to_string(&unit).expect("read the packaged unit");
    assert_eq!(packaged, shipped.replace(INSTALLED_AGENT, PACKAGED_AGENT));
    assert_eq!(unit_values(&packaged, "ExecStart"), [PACKAGED_AGENT]);
    assert_verifies(&root, &unit);

    // agent.env: the example, 0600, and the administrator's once edited.
    assert_files_equal(Path::new(ENV_EXAMPLE), &env);
    assert_eq!(mode(&env), 0o600, "mode of the installed agent.env");
    fs::write(&env, "MQTT_HOST=broker.internal\n").expect("edit agent.env");
    let out = run(dpkg_in(&root).arg("--install").arg(&deb));
    assert_success(&out, "dpkg --install again (an upgrade)");
    assert_eq!(
        fs::read_to_string(&env).expect("read agent.env"),
        "MQTT_HOST=broker.internal\n",
        "reinstalling replaced the edited conffile"
    );
    let out = run(dpkg_in(&root).args(["--remove", "mqtt-proxy"]));
    assert_success(&out, "dpkg --remove");
    assert!(!root.join("usr/bin/mqtt-proxy").exists(), "removed binary");
    assert!(env.exists(), "--remove deleted the conffile");
    let out = run(dpkg_in(&root).args(["--purge", "mqtt-proxy"]));
    assert_success(&out, "dpkg --purge");
    assert!(!env.exists(), "--purge left the conffile");
}
