//! Who may open a session (issue 24), end to end with real OpenSSH tools:
//! `ssh-keygen` makes the users' keys, a user CA and its certificates; a
//! real `ssh-agent` holds keys; real mosquitto, sshd, ssh. An agent with
//! `--authorized-keys` admits the keys and certificates it lists, refuses
//! the rest with the reason, closes live sessions whose key is taken away,
//! and logs who opened what. The tests check order and reasons, never
//! times (`scripts/bench --access` measures those).
//!
//! One file per concern: `revocation` (a user removed mid-session), `keys`
//! (certificates, every key kind, a passphrase asked on the terminal) and
//! `replay` (a captured answer replayed). This file holds the OpenSSH tools,
//! the ssh-agent and the node they share.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use crate::common::*;

mod keys;
mod replay;
mod revocation;

fn tool(name: &str, args: &[&str]) {
    let out = run(Command::new(find_tool(name))
        .args(args)
        .stdin(Stdio::null()));
    assert_success(&out, &format!("{name} {args:?}"));
}

/// `ssh-keygen -t KIND` without a passphrase, commented `NAME`: the key's
/// path (`.pub` beside it).
fn keygen(dir: &Path, name: &str, kind: &str) -> PathBuf {
    let path = dir.join(name);
    tool(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            kind,
            "-N",
            "",
            "-C",
            name,
            "-f",
            path_arg(&path),
        ],
    );
    path
}

/// The key's public line, as `authorized_keys` and `RevokedKeys` take it.
fn public(key: &Path) -> String {
    fs::read_to_string(format!("{}.pub", key.display())).expect("read .pub")
}

/// `SHA256:…` as `ssh-keygen -l` prints it.
fn fingerprint(key: &Path) -> String {
    let out = run(Command::new(find_tool("ssh-keygen")).args([
        "-l",
        "-E",
        "sha256",
        "-f",
        &format!("{}.pub", key.display()),
    ]));
    assert_success(&out, "ssh-keygen -l");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("fingerprint field")
        .to_owned()
}

/// A real `ssh-agent` on its own socket, killed when dropped.
struct SshAgent {
    sock: PathBuf,
    _process: Background,
}

impl SshAgent {
    fn start(dir: &Path) -> SshAgent {
        let sock = dir.join("agent.sock");
        let process = Background::start(
            Command::new(find_tool("ssh-agent"))
                .args(["-D", "-a", path_arg(&sock)])
                .stdin(Stdio::null()),
        );
        assert!(
            wait_until(Duration::from_secs(10), || sock.exists()),
            "ssh-agent did not create {}",
            sock.display()
        );
        SshAgent {
            sock,
            _process: process,
        }
    }

    /// `ssh-add KEY` (its certificate too, when `KEY-cert.pub` is beside).
    fn add(&self, key: &Path) {
        let out = run(Command::new(find_tool("ssh-add"))
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.sock)
            .stdin(Stdio::null()));
        assert_success(&out, "ssh-add");
    }
}

/// A node served by an agent that checks `authorized_keys` (and the
/// revoked keys) in `dir`, with a broker and an sshd of its own (stopped
/// with it; a test's processes must not outlive it).
struct Node {
    agent: Agent,
    broker: Broker,
    sshd: Sshd,
    authorized: PathBuf,
    prefix: String,
    node: String,
}

impl Node {
    fn start(tag: &str, dir: &Path, authorized: &str, revoked: &str) -> Node {
        let (broker, sshd) = (Broker::start(""), Sshd::start());
        let n = names(tag);
        let (auth_path, revoked_path) = (dir.join("authorized_keys"), dir.join("revoked_keys"));
        fs::write(&auth_path, authorized).expect("write authorized_keys");
        fs::write(&revoked_path, revoked).expect("write revoked_keys");
        let agent = Agent::start_with(
            &broker,
            &sshd.target(),
            &n.node,
            &n.prefix,
            &[
                "--authorized-keys",
                path_arg(&auth_path),
                "--revoked-keys",
                path_arg(&revoked_path),
            ],
            &[],
        );
        Node {
            agent,
            broker,
            sshd,
            authorized: auth_path,
            prefix: n.prefix,
            node: n.node,
        }
    }

    /// mqtt-proxy's arguments for this node, with `extra` before the node.
    fn proxy_args(&self, extra: &[&str]) -> Vec<String> {
        let port = self.broker.port().to_string();
        let mut args: Vec<String> = ["--host", "127.0.0.1", "--port", &port, "--topic-prefix"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(self.prefix.clone());
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// ssh through mqtt-proxy `extra`, with `agent` as SSH_AUTH_SOCK
    /// (empty: none).
    fn ssh(&self, extra: &[&str], agent: &str, remote: &str) -> Command {
        let args = self.proxy_args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = Ssh::via_proxy_args(&self.sshd, &self.node, &args).ssh(remote);
        cmd.env("SSH_AUTH_SOCK", agent);
        cmd
    }

    /// `mqtt-proxy extra NODE` on its own: exit 255 and exactly `line`.
    fn refused(&self, extra: &[&str], agent: &str, line: &str) {
        let mut args = self.proxy_args(extra);
        args.push(self.node.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = proxy_args(&args);
        cmd.env("SSH_AUTH_SOCK", agent);
        let out = run_with_timeout(&mut cmd, FAILURE_REPORT_BOUND * 3);
        assert_exit_code(&out, PROXY_FAILURE_STATUS, line);
        assert_eq!(stderr_text(&out), line);
    }

    /// `ssh NODE echo` works.
    fn echoes(&self, extra: &[&str], agent: &str, what: &str) {
        let out = run(&mut self.ssh(extra, agent, "echo through-the-tunnel"));
        assert_success(&out, what);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "through-the-tunnel\n",
            "{what}"
        );
    }

    /// The agent's log lines with `message` and every field of `fields`
    /// (`name=value`; a string value may be quoted in the log).
    fn log_lines(&self, message: &str, fields: &[(&str, &str)]) -> Vec<String> {
        let log = self.agent.log_text();
        let lines: Vec<String> = log
            .lines()
            .filter(|l| l.contains(message) && fields.iter().all(|(k, v)| has_field(l, k, v)))
            .map(str::to_owned)
            .collect();
        if lines.is_empty() {
            eprintln!("no {message:?} line with {fields:?} in the agent's log:\n{log}");
        }
        lines
    }
}

/// Whether a log line has the field `name` with `value` (quoted or not).
fn has_field(line: &str, name: &str, value: &str) -> bool {
    [' ', '{'].iter().any(|before| {
        line.contains(&format!("{before}{name}={value}"))
            || line.contains(&format!("{before}{name}=\"{value}\""))
    })
}
