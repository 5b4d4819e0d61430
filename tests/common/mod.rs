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
#![allow(dead_code)] // each test crate uses a different subset of the harness

pub mod relay;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

/// How long a freshly started mosquitto or sshd may take to accept connections.
pub const SERVER_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the agent may take to log `agent is online` (the brief's bound).
pub const AGENT_ONLINE_TIMEOUT: Duration = Duration::from_secs(10);
/// The text the agent logs once it is connected to the broker.
pub const AGENT_ONLINE_TEXT: &str = "agent is online";
/// Default bound for a single client command in [`run`]; generous, because it
/// only exists to turn a hung tunnel into a failure instead of a hung suite.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the pipes of a finished command may stay open because a
/// descendant (e.g. a ProxyCommand that did not exit) still holds them.
const PIPE_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How many fresh ports to try when a server loses the race for its port.
const BIND_ATTEMPTS: usize = 5;
/// Polling interval of every wait loop in this module.
const POLL: Duration = Duration::from_millis(20);

/// Environment variables read by both binaries; removed from every command this
/// harness builds so a developer's shell settings cannot leak into a test.
pub const MQTT_ENV: &[&str] = &[
    "MQTT_HOST",
    "MQTT_PORT",
    "MQTT_USER",
    "MQTT_USERNAME",
    "MQTT_PASSWORD",
    "MQTT_TOPIC_PREFIX",
    "MQTT_CLIENT_ID_PREFIX",
    "MQTT_ID",
    "MQTT_TARGET",
    "MQTT_BROKER",
    "MQTT_PASSWORD_FILE",
    "MQTT_RESUME_TIMEOUT",
    "MQTT_MAX_SESSIONS",
    "MQTT_PROXY_CONFIG",
    "MQTT_AGENT_PASSWORD",
    "MQTT_AGENT_PASSWORD_FILE",
    "MQTT_TLS",
    "MQTT_CA_CERTS",
    "MQTT_CERTFILE",
    "MQTT_KEYFILE",
];

// ---------------------------------------------------------------------------
// Names, ports, tools
// ---------------------------------------------------------------------------

/// A loopback port that was free a moment ago (bind port 0, read it, drop).
/// Servers started on it retry with a new port if they lose the race.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0 to find a free port")
        .port()
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// A name unique to this test process and call, usable as an MQTT node id,
/// an MQTT topic level and an ssh host name: `[a-z0-9-]` only.
pub fn unique_id(tag: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tag: String = tag
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(24)
        .collect();
    format!("{}-{}-{}", tag.trim_matches('-'), std::process::id(), n)
}

/// A node id and a topic prefix that no other test (or test process) uses.
pub struct Names {
    pub node: String,
    pub prefix: String,
}

/// Fresh [`Names`] for the test called `test`.
pub fn names(test: &str) -> Names {
    Names {
        node: format!("node-{}", unique_id(test)),
        prefix: format!("test-{}", unique_id(test)),
    }
}

/// Absolute path of `name`, looked up in PATH and then in the sbin
/// directories (which are not in a normal user's PATH on Debian).
pub fn find_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} not found in PATH or /usr/sbin; run scripts/test to install it")
        })
}

/// The name of the user running the tests (sshd logs in as this user).
pub fn current_user() -> &'static str {
    static USER: OnceLock<String> = OnceLock::new();
    USER.get_or_init(|| {
        let out = Command::new("id").arg("-un").output().expect("run id -un");
        assert!(out.status.success(), "id -un failed");
        String::from_utf8(out.stdout)
            .expect("user name is UTF-8")
            .trim()
            .to_owned()
    })
}

/// Whether the tests run as root (sshd then needs /run/sshd).
pub fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("run id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// Path of the `mqtt-proxy` binary built by cargo for this test run.
pub fn proxy_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mqtt-proxy")
}

/// Path of the `mqtt-proxy-agent` binary built by cargo for this test run.
pub fn agent_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mqtt-proxy-agent")
}

/// Quote `s` for a POSIX shell (unchanged if it needs no quoting).
pub fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-=:,+@%".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// Poll `ready` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn append_log(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open log file {}: {e}", path.display()))
}

/// A started process that is SIGKILLed and reaped when dropped.
struct Killed(Child);

impl Killed {
    fn exited(&mut self) -> Option<ExitStatus> {
        self.0.try_wait().expect("try_wait on a child process")
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        // Errors mean the process has already exited; either way it is gone.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait until `log` contains `text` and `port` accepts, or the process exits.
/// Returns Ok(()) when ready, Err(description) otherwise.
fn wait_server(
    child: &mut Killed,
    log: &Path,
    text: &str,
    port: u16,
    what: &str,
) -> Result<(), String> {
    let mut status = None;
    let ready = wait_until(SERVER_START_TIMEOUT, || {
        status = child.exited();
        status.is_some() || (read_lossy(log).contains(text) && port_accepts(port))
    });
    match (ready, status) {
        (true, None) => Ok(()),
        (_, Some(st)) => Err(format!("{what} exited with {st}")),
        (false, None) => Err(format!(
            "{what} not ready on port {port} after {SERVER_START_TIMEOUT:?}"
        )),
    }
}

/// Run `cmd` to completion with [`COMMAND_TIMEOUT`], capturing stdout and
/// stderr. Panics (after killing it) if it runs longer.
pub fn run(cmd: &mut Command) -> Output {
    run_with_timeout(cmd, COMMAND_TIMEOUT)
}

/// Run `cmd` to completion, capturing stdout and stderr; kill it and panic
/// with what it printed if it runs longer than `timeout`. Stdin is whatever
/// the command builder set (the builders in this module set it to null).
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    Background::start(cmd).finish(timeout)
}

/// A command running in the background while the test does something else
/// (kill a broker under it, read its stdout slowly): stderr, and stdout
/// unless the test streams it, are collected by threads; SIGKILLed and
/// reaped when dropped.
pub struct Background {
    what: String,
    child: Killed,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    captured: mpsc::Receiver<(usize, Vec<u8>)>,
    pipes: usize,
}

impl Background {
    /// Spawn `cmd` capturing stdout and stderr (stdin as the builder set it).
    pub fn start(cmd: &mut Command) -> Background {
        Background::spawn(cmd, true)
    }

    /// Spawn `cmd` capturing stderr; its stdout is piped and left to the
    /// test ([`Background::take_stdout`]).
    pub fn start_streaming(cmd: &mut Command) -> Background {
        Background::spawn(cmd, false)
    }

    fn spawn(cmd: &mut Command, capture_stdout: bool) -> Background {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut pipes: Vec<(usize, Box<dyn Read + Send>)> = vec![(1, Box::new(stderr))];
        let mut streamed = None;
        if capture_stdout {
            pipes.push((0, Box::new(stdout)));
        } else {
            streamed = Some(stdout);
        }
        let count = pipes.len();
        for (idx, mut pipe) in pipes {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut buf = Vec::new();
                // A read error just truncates the captured output.
                let _ = pipe.read_to_end(&mut buf);
                // The receiver is gone only if the Background was dropped.
                let _ = tx.send((idx, buf));
            });
        }
        Background {
            what: format!("{cmd:?}"),
            stdin: child.stdin.take(),
            child: Killed(child),
            stdout: streamed,
            captured: rx,
            pipes: count,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// The child's stdin, if the command builder piped it.
    pub fn take_stdin(&mut self) -> ChildStdin {
        self.stdin
            .take()
            .expect("stdin was piped and not taken yet")
    }

    /// The child's stdout ([`Background::start_streaming`] only).
    pub fn take_stdout(&mut self) -> ChildStdout {
        self.stdout
            .take()
            .expect("stdout is streamed (start_streaming) and not taken yet")
    }

    /// Its exit status if it has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.exited()
    }

    /// SIGKILL it and reap it.
    pub fn kill(&mut self) {
        // An error means it has already exited; it is reaped either way.
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
    }

    /// Wait up to `timeout` for it to exit and return what it printed
    /// (stdout is empty if it was streamed). Panics, after killing it and with
    /// its stderr, if it runs longer.
    pub fn finish(mut self, timeout: Duration) -> Output {
        let mut status = None;
        let finished = wait_until(timeout, || {
            status = self.child.exited();
            status.is_some()
        });
        if !finished {
            self.kill();
        }
        drop(self.stdin.take());
        let mut out = [Vec::new(), Vec::new()];
        let drain_deadline = Instant::now() + PIPE_DRAIN_TIMEOUT;
        for _ in 0..self.pipes {
            let left = drain_deadline.saturating_duration_since(Instant::now());
            match self.captured.recv_timeout(left) {
                Ok((idx, buf)) => out[idx] = buf,
                Err(_) => panic!(
                    "{} exited but a descendant kept its stdout/stderr open for \
                     {PIPE_DRAIN_TIMEOUT:?} (did a ProxyCommand outlive ssh?)",
                    self.what
                ),
            }
        }
        let [stdout, stderr] = out;
        if !finished {
            panic!(
                "{} did not finish within {timeout:?}; killed it.\n--- stdout ({} bytes) ---\n{}\n--- stderr ---\n{}",
                self.what,
                stdout.len(),
                String::from_utf8_lossy(&stdout[..stdout.len().min(4096)]),
                String::from_utf8_lossy(&stderr)
            );
        }
        Output {
            status: status.expect("finished implies an exit status"),
            stdout,
            stderr,
        }
    }
}

/// A command's stderr as text, without the trailing newline: the line(s) a
/// user reads.
pub fn stderr_text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim_end().to_owned()
}

/// The last `lines` lines of a log, for failure messages.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Panic with the command's stderr unless it exited with status 0.
pub fn assert_success(out: &Output, what: &str) {
    assert_exit_code(out, 0, what);
}

/// Panic with the command's output unless it exited with exactly `code`.
pub fn assert_exit_code(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit status {code}, got {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(4096)]),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// mosquitto
// ---------------------------------------------------------------------------

/// Appended to every test broker's configuration. Logging to stderr
/// (redirected to the log file) keeps working after mosquitto drops root
/// privileges to its own user.
const BROKER_LOG_CONF: &str = "log_dest stderr\nlog_type all\nlog_timestamp_format %H:%M:%S\n";

/// A mosquitto broker on a free loopback port, anonymous access allowed.
pub struct Broker {
    dir: TempDir,
    port: u16,
    conf: PathBuf,
    log: PathBuf,
    child: Option<Killed>,
}

impl Broker {
    /// Start a broker; `extra_conf` is appended to mosquitto.conf verbatim
    /// (e.g. `"max_queued_messages 10\nmax_inflight_messages 2"`).
    pub fn start(extra_conf: &str) -> Broker {
        Broker::start_custom(|port| Broker::conf_text(port, extra_conf))
    }

    /// Start a broker on 127.0.0.1:`port` (e.g. one a client was already
    /// pointed at, from [`free_port`]); panics if it cannot listen there.
    pub fn start_on(port: u16, extra_conf: &str) -> Broker {
        let dir = tempfile::Builder::new()
            .prefix("mqtt-proxy-broker.")
            .tempdir()
            .expect("create broker tempdir");
        let log = dir.path().join("mosquitto.log");
        let conf = dir.path().join("mosquitto.conf");
        let text = format!("{}{BROKER_LOG_CONF}", Broker::conf_text(port, extra_conf));
        fs::write(&conf, text).expect("write mosquitto.conf");
        let mut broker = Broker {
            port,
            conf,
            log,
            child: None,
            dir,
        };
        if let Err(e) = broker.spawn() {
            panic!(
                "mosquitto did not start on port {port}: {e}\n--- mosquitto.log ---\n{}",
                broker.log_text()
            );
        }
        broker
    }

    /// An anonymous broker on 127.0.0.1:`port`, plus `extra_conf`.
    fn conf_text(port: u16, extra_conf: &str) -> String {
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra_conf}\n"
        )
    }

    fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new(find_tool("mosquitto"))
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(append_log(&self.log))
            .stderr(append_log(&self.log))
            .spawn()
            .map_err(|e| format!("spawn mosquitto: {e}"))?;
        let mut child = Killed(child);
        let before = read_lossy(&self.log).matches(" running").count();
        let log = self.log.clone();
        let port = self.port;
        // mosquitto logs "mosquitto version X running" once it listens; count
        // occurrences so a restart does not see the previous run's line.
        let mut status = None;
        let ready = wait_until(SERVER_START_TIMEOUT, || {
            status = child.exited();
            status.is_some()
                || (read_lossy(&log).matches(" running").count() > before && port_accepts(port))
        });
        match (ready, status) {
            (true, None) => {
                self.child = Some(child);
                Ok(())
            }
            (_, Some(st)) => Err(format!("mosquitto on port {port} exited with {st}")),
            (false, None) => Err(format!(
                "mosquitto not ready on port {port} after {SERVER_START_TIMEOUT:?}"
            )),
        }
    }

    /// The broker's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything mosquitto has logged so far (all runs of this broker).
    pub fn log_text(&self) -> String {
        read_lossy(&self.log)
    }

    /// Kill the broker with SIGKILL (no clean disconnects, like a crash or a
    /// network cut) and wait until it has exited.
    pub fn stop(&mut self) {
        self.child = None;
    }

    /// Start the broker again with the same configuration on the same port;
    /// retries for a while in case the port is briefly unavailable.
    pub fn restart(&mut self) {
        self.stop();
        let mut errors = Vec::new();
        let ok = wait_until(SERVER_START_TIMEOUT, || match self.spawn() {
            Ok(()) => true,
            Err(e) => {
                errors.push(e);
                false
            }
        });
        assert!(
            ok,
            "mosquitto did not restart on port {}: {errors:?}\n--- mosquitto.log ---\n{}",
            self.port,
            self.log_text()
        );
    }

    /// `mosquitto_pub` against this broker; append e.g. `-t T -m M`.
    pub fn mosquitto_pub(&self) -> Command {
        let mut cmd = Command::new(find_tool("mosquitto_pub"));
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null());
        cmd
    }

    /// `mosquitto_sub` against this broker; append e.g. `-t T -C 1 -W 5`.
    pub fn mosquitto_sub(&self) -> Command {
        let mut cmd = Command::new(find_tool("mosquitto_sub"));
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null());
        cmd
    }
}

// ---------------------------------------------------------------------------
// sshd
// ---------------------------------------------------------------------------

/// sshd's limit on connections that have not authenticated yet. Every
/// session the agent opens is one until ssh logs in, so it is above the
/// agent's default session cap (64): the flood tests then measure the
/// agent's limits, not sshd's (the README tells operators the same).
const SSHD_MAX_STARTUPS: usize = 128;

/// An sshd on a free loopback port that lets the current user log in with a
/// client key generated for it. Remote paths are local paths: it runs on this
/// machine as this user.
pub struct Sshd {
    dir: TempDir,
    port: u16,
    client_key: PathBuf,
    log: PathBuf,
    _child: Killed,
}

impl Sshd {
    /// Generate keys and a config, start `sshd -D -e`, wait until it accepts.
    pub fn start() -> Sshd {
        let dir = tempfile::Builder::new()
            .prefix("mqtt-proxy-sshd.")
            .tempdir()
            .expect("create sshd tempdir");
        let d = dir.path();
        let host_key = d.join("host_ed25519");
        let client_key = d.join("client_ed25519");
        for key in [&host_key, &client_key] {
            let out = Command::new(find_tool("ssh-keygen"))
                .args([
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "mqtt-proxy-test",
                    "-f",
                ])
                .arg(key)
                .stdin(Stdio::null())
                .output()
                .expect("run ssh-keygen");
            assert!(
                out.status.success(),
                "ssh-keygen failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let authorized = d.join("authorized_keys");
        fs::copy(client_key.with_extension("pub"), &authorized).expect("write authorized_keys");
        if is_root() {
            // Privilege separation directory; sshd refuses to start as root without it.
            fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        }
        let log = d.join("sshd.log");
        let conf = d.join("sshd_config");
        let sshd = find_tool("sshd");
        let sftp_server = [
            "/usr/lib/openssh/sftp-server",
            "/usr/libexec/openssh/sftp-server",
        ]
        .into_iter()
        .find(|p| Path::new(p).is_file());
        let mut errors = Vec::new();
        for _ in 0..BIND_ATTEMPTS {
            let port = free_port();
            let text = format!(
                "ListenAddress 127.0.0.1\n\
                 Port {port}\n\
                 HostKey {host}\n\
                 AuthorizedKeysFile {auth}\n\
                 PidFile {pid}\n\
                 UsePAM no\n\
                 StrictModes no\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n\
                 PrintMotd no\n\
                 PrintLastLog no\n\
                 MaxStartups {max_startups}\n\
                 MaxSessions 64\n\
                 Subsystem sftp {sftp}\n\
                 LogLevel VERBOSE\n",
                host = host_key.display(),
                auth = authorized.display(),
                pid = d.join("sshd.pid").display(),
                max_startups = SSHD_MAX_STARTUPS,
                // The standalone server when present: it also works when
                // sshd runs without root and cannot chroot.
                sftp = sftp_server.unwrap_or("internal-sftp"),
            );
            fs::write(&conf, text).expect("write sshd_config");
            let child = Command::new(&sshd)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(append_log(&log))
                .stderr(append_log(&log))
                .spawn()
                .expect("spawn sshd");
            let mut child = Killed(child);
            let listening = format!("Server listening on 127.0.0.1 port {port}");
            match wait_server(&mut child, &log, &listening, port, "sshd") {
                Ok(()) => {
                    return Sshd {
                        port,
                        client_key,
                        log,
                        _child: child,
                        dir,
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        panic!(
            "sshd did not start: {errors:?}\n--- sshd.log ---\n{}",
            read_lossy(&log)
        );
    }

    /// The sshd's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, the agent's `--target`.
    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Private key accepted for the current user.
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// sshd's log (stderr of `sshd -D -e`).
    pub fn log_text(&self) -> String {
        read_lossy(&self.log)
    }

    /// The sshd's own temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

// ---------------------------------------------------------------------------
// agent
// ---------------------------------------------------------------------------

/// A running `mqtt-proxy-agent`, killed when dropped.
pub struct Agent {
    dir: TempDir,
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

    /// [`Agent::start_with`] against a broker (or a [`relay::Relay`]) on
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

    /// [`Agent::spawn`] against a broker (or a [`relay::Relay`], or nothing
    /// yet) on 127.0.0.1:`broker_port`.
    pub fn spawn_at(
        broker_port: u16,
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
            .args(["--host", "127.0.0.1", "--port", &broker_port.to_string()])
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
            dir,
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

    /// Send SIGTERM and wait up to `timeout` for it to exit; returns its
    /// status (None if it had to be killed).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = child.0.id().to_string();
        // If kill(1) fails the process is already gone; try_wait below tells.
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let mut status = None;
        wait_until(timeout, || {
            status = child.exited();
            status.is_some()
        });
        status
    }

    /// The agent's own temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

// ---------------------------------------------------------------------------
// ssh, scp, sftp, rsync
// ---------------------------------------------------------------------------

/// How the client commands reach the test sshd: a ProxyCommand plus the
/// key, user and host name to use.
#[derive(Clone, Debug)]
pub struct Ssh {
    /// The ProxyCommand (ssh runs it as `exec COMMAND` in the user's shell),
    /// with `%` already escaped where needed.
    pub proxy_command: String,
    /// Host name given to ssh (`%n`): the node id when tunnelling.
    pub host: String,
    pub user: String,
    pub key: PathBuf,
}

impl Ssh {
    /// Through `mqtt-proxy` and the broker to the agent serving `node`.
    pub fn via_proxy(broker: &Broker, prefix: &str, node: &str, sshd: &Sshd) -> Ssh {
        Ssh::via_proxy_at(broker.port(), prefix, node, sshd, &[])
    }

    /// Through `mqtt-proxy EXTRA_ARGS` connecting to 127.0.0.1:`broker_port`
    /// (a broker or a [`relay::Relay`] in front of one).
    pub fn via_proxy_at(
        broker_port: u16,
        prefix: &str,
        node: &str,
        sshd: &Sshd,
        extra_args: &[&str],
    ) -> Ssh {
        let port = broker_port.to_string();
        let mut args = vec![
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--topic-prefix",
            prefix,
        ];
        args.extend_from_slice(extra_args);
        Ssh::via_proxy_args(sshd, node, &args)
    }

    /// Through `mqtt-proxy PROXY_ARGS... %n` to `node` (each argument quoted
    /// for the shell ssh runs the ProxyCommand with, `%` escaped).
    pub fn via_proxy_args(sshd: &Sshd, node: &str, proxy_args: &[&str]) -> Ssh {
        let mut proxy_command = shell_quote(proxy_bin()).replace('%', "%%");
        for arg in proxy_args {
            proxy_command.push(' ');
            proxy_command.push_str(&shell_quote(arg).replace('%', "%%"));
        }
        proxy_command.push_str(" %n");
        Ssh {
            proxy_command,
            host: node.to_owned(),
            user: current_user().to_owned(),
            key: sshd.client_key().to_owned(),
        }
    }

    /// Straight to the sshd through `nc` (baseline, harness self-check).
    pub fn direct(sshd: &Sshd) -> Ssh {
        Ssh {
            proxy_command: format!("nc 127.0.0.1 {}", sshd.port()),
            host: "direct".to_owned(),
            user: current_user().to_owned(),
            key: sshd.client_key().to_owned(),
        }
    }

    /// Options shared by ssh, scp and sftp (everything before the destination).
    pub fn options(&self) -> Vec<String> {
        let mut v: Vec<String> = vec!["-F".into(), "/dev/null".into(), "-i".into()];
        v.push(self.key.display().to_string());
        for opt in [
            "IdentitiesOnly=yes",
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "BatchMode=yes",
            "LogLevel=ERROR",
        ] {
            v.push("-o".into());
            v.push(opt.into());
        }
        v.push("-o".into());
        v.push(format!("ProxyCommand={}", self.proxy_command));
        v
    }

    /// `user@host`.
    pub fn destination(&self) -> String {
        format!("{}@{}", self.user, self.host)
    }

    /// `user@host:path` for scp and rsync.
    pub fn remote(&self, path: &Path) -> String {
        format!("{}:{}", self.destination(), path.display())
    }

    fn base(&self, program: &str) -> Command {
        let mut cmd = Command::new(find_tool(program));
        for var in MQTT_ENV {
            cmd.env_remove(var);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// `ssh OPTIONS user@host REMOTE_COMMAND`; stdin is null unless replaced.
    pub fn ssh(&self, remote_command: &str) -> Command {
        let mut cmd = self.base("ssh");
        cmd.args(self.options())
            .arg(self.destination())
            .arg(remote_command);
        cmd
    }

    /// `scp OPTIONS ARGS...` (use [`Ssh::remote`] for remote operands).
    pub fn scp(&self, args: &[&str]) -> Command {
        let mut cmd = self.base("scp");
        cmd.args(self.options()).args(args);
        cmd
    }

    /// `scp LOCAL user@host:REMOTE`.
    pub fn scp_upload(&self, local: &Path, remote: &Path) -> Command {
        let mut cmd = self.base("scp");
        cmd.args(self.options()).arg(local).arg(self.remote(remote));
        cmd
    }

    /// `scp user@host:REMOTE LOCAL`.
    pub fn scp_download(&self, remote: &Path, local: &Path) -> Command {
        let mut cmd = self.base("scp");
        cmd.args(self.options()).arg(self.remote(remote)).arg(local);
        cmd
    }

    /// `sftp -b BATCHFILE OPTIONS user@host`.
    pub fn sftp_batch(&self, batch_file: &Path) -> Command {
        let mut cmd = self.base("sftp");
        cmd.arg("-b")
            .arg(batch_file)
            .args(self.options())
            .arg(self.destination());
        cmd
    }

    /// The `-e` argument for rsync: the ssh command line, quoted the way
    /// rsync splits it (spaces separate words, double quotes group them, a
    /// doubled double quote is a literal one).
    pub fn rsync_rsh(&self) -> String {
        std::iter::once("ssh".to_owned())
            .chain(self.options())
            .map(|w| {
                if w.contains([' ', '"', '\'']) {
                    format!("\"{}\"", w.replace('"', "\"\""))
                } else {
                    w
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `rsync -e SSH ARGS...` (use [`Ssh::remote`] for remote operands).
    pub fn rsync(&self, args: &[&str]) -> Command {
        let mut cmd = self.base("rsync");
        cmd.arg("-e").arg(self.rsync_rsh()).args(args);
        cmd
    }
}

/// `mqtt-proxy --host 127.0.0.1 --port P --topic-prefix PREFIX NODE`, run
/// directly (not as a ProxyCommand), stdin null, `RUST_LOG` removed so its
/// stderr is what a user would see by default.
pub fn proxy_command(broker: &Broker, prefix: &str, node: &str) -> Command {
    proxy_command_at(broker.port(), prefix, node)
}

/// `mqtt-proxy ARGS...` run directly with no MQTT settings inherited, stdin
/// null and `RUST_LOG` removed, so stderr is what a user would read.
pub fn proxy_args(args: &[&str]) -> Command {
    let mut cmd = Command::new(proxy_bin());
    for var in MQTT_ENV {
        cmd.env_remove(var);
    }
    cmd.env_remove("RUST_LOG").args(args).stdin(Stdio::null());
    cmd
}

/// [`proxy_command`] against 127.0.0.1:`broker_port` (a broker or a
/// [`relay::Relay`]).
pub fn proxy_command_at(broker_port: u16, prefix: &str, node: &str) -> Command {
    proxy_on(broker_port, prefix, &[node])
}

/// `mqtt-proxy --host 127.0.0.1 --port PORT --topic-prefix PREFIX ARGS...`
/// as [`proxy_args`] runs it.
pub fn proxy_on(broker_port: u16, prefix: &str, args: &[&str]) -> Command {
    let port = broker_port.to_string();
    let broker = [
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--topic-prefix",
        prefix,
    ];
    proxy_args(&[&broker[..], args].concat())
}

// ---------------------------------------------------------------------------
// Process resources (Linux /proc)
// ---------------------------------------------------------------------------

/// Open file descriptors of process `pid`.
pub fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("list /proc/{pid}/fd: {e}"))
        .count()
}

/// Threads of process `pid`.
pub fn thread_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap_or_else(|e| panic!("list /proc/{pid}/task: {e}"))
        .count()
}

/// Resident set size of process `pid` in KiB (`VmRSS` in /proc/PID/status).
pub fn vm_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// TCP connections (any state but LISTEN) owned by process `pid` whose
/// remote end is port `remote_port`, from /proc/net/tcp{,6} and the socket
/// inodes in /proc/PID/fd.
pub fn tcp_connections_to(pid: u32, remote_port: u16) -> usize {
    let inodes: std::collections::HashSet<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("list /proc/{pid}/fd: {e}"))
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy();
            Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let port_hex = format!("{remote_port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .map(|table| read_lossy(Path::new(table)))
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        })
        .filter(|f| {
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            f.len() > 9
                && f[2].rsplit(':').next() == Some(port_hex.as_str())
                && f[3] != "0A"
                && inodes.contains(&f[9])
        })
        .count()
}

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

/// Write `len` pseudo-random bytes to `path` (splitmix64 seeded per call:
/// incompressible and different for every file, and fast even in debug).
pub fn write_random_file(path: &Path, len: u64) {
    static SEEDS: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut state =
        nanos ^ (u64::from(std::process::id()) << 32) ^ SEEDS.fetch_add(1, Ordering::Relaxed);
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut file = io::BufWriter::new(File::create(path).expect("create random file"));
    let mut buf = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            let word = next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        file.write_all(&buf[..n]).expect("write random file");
        left -= n as u64;
    }
    file.flush().expect("flush random file");
}

/// Panic unless the two files have identical contents; the message names the
/// sizes and the first differing offset.
pub fn assert_files_equal(expected: &Path, actual: &Path) {
    let open = |p: &Path| {
        File::open(p).unwrap_or_else(|e| panic!("open {} for comparison: {e}", p.display()))
    };
    let (la, lb) = (
        open(expected).metadata().expect("stat").len(),
        open(actual).metadata().expect("stat").len(),
    );
    assert_eq!(
        la,
        lb,
        "{} has {la} bytes but {} has {lb}",
        expected.display(),
        actual.display()
    );
    let (mut a, mut b) = (
        io::BufReader::new(open(expected)),
        io::BufReader::new(open(actual)),
    );
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    let mut offset = 0u64;
    loop {
        let n = read_full(&mut a, &mut ba);
        let m = read_full(&mut b, &mut bb);
        assert_eq!(n, m, "files changed while comparing");
        if let Some(i) = (0..n).find(|&i| ba[i] != bb[i]) {
            panic!(
                "{} and {} differ first at byte {}",
                expected.display(),
                actual.display(),
                offset + i as u64
            );
        }
        if n == 0 {
            return;
        }
        offset += n as u64;
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read during comparison: {e}"),
        }
    }
    filled
}

/// `sha256sum` of a file, as lowercase hex.
pub fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success(), "sha256sum {} failed", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum prints a digest")
        .to_owned()
}

/// Panic unless `diff -r` finds the two directory trees identical.
pub fn assert_trees_equal(expected: &Path, actual: &Path) {
    let out = Command::new("diff")
        .arg("-r")
        .arg(expected)
        .arg(actual)
        .output()
        .expect("run diff -r");
    assert_success(&out, "diff -r of the copied tree");
}

/// Megabytes per second for a transfer, for test output.
pub fn rate(bytes: u64, elapsed: Duration) -> String {
    format!(
        "{:.1} MB/s",
        bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
    )
}

// ---------------------------------------------------------------------------
// mosquitto with a configuration of the test's own
// ---------------------------------------------------------------------------

impl Broker {
    /// Start mosquitto with `conf(port)` as its whole configuration (TLS
    /// listeners, password and ACL files...), for a free `port` the text must
    /// listen on; the harness only adds logging to its log file. Files the
    /// configuration names must be readable by the `mosquitto` user: when
    /// started as root, mosquitto reads them after dropping privileges.
    pub fn start_custom(conf: impl Fn(u16) -> String) -> Broker {
        let mut dir = tempfile::Builder::new()
            .prefix("mqtt-proxy-broker.")
            .tempdir()
            .expect("create broker tempdir");
        let log = dir.path().join("mosquitto.log");
        let conf_path = dir.path().join("mosquitto.conf");
        let mut errors = Vec::new();
        for _ in 0..BIND_ATTEMPTS {
            let port = free_port();
            let text = format!("{}\n{BROKER_LOG_CONF}", conf(port));
            fs::write(&conf_path, text).expect("write mosquitto.conf");
            let mut broker = Broker {
                port,
                conf: conf_path.clone(),
                log: log.clone(),
                child: None,
                dir,
            };
            match broker.spawn() {
                Ok(()) => return broker,
                Err(e) => {
                    errors.push(e);
                    dir = broker.dir;
                }
            }
        }
        panic!(
            "mosquitto did not start: {errors:?}\n--- mosquitto.log ---\n{}",
            read_lossy(&log)
        );
    }
}
