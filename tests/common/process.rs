//! Child processes: polling with a deadline, commands run to completion or
//! in the background with their output captured, and assertions on how they
//! exited. Every process started here is killed by pid when its owner drops.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::host::port_accepts;

/// How long a freshly started mosquitto or sshd may take to accept connections.
pub const SERVER_START_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound for a single client command in [`run`]; generous, because it
/// only exists to turn a hung tunnel into a failure instead of a hung suite.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the pipes of a finished command may stay open because a
/// descendant (e.g. a ProxyCommand that did not exit) still holds them.
const PIPE_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Polling interval of every wait loop in this module.
const POLL: Duration = Duration::from_millis(20);

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

pub(super) fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

pub(super) fn append_log(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open log file {}: {e}", path.display()))
}

/// A started process that is SIGKILLed and reaped when dropped.
pub(super) struct Killed(pub(super) Child);

impl Killed {
    pub(super) fn exited(&mut self) -> Option<ExitStatus> {
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
pub(super) fn wait_server(
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
