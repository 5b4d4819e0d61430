//! Who may open a session (issue 24), end to end with real OpenSSH tools:
//! `ssh-keygen` makes the users' keys, a user CA and its certificates; a
//! real `ssh-agent` holds keys; real mosquitto, sshd, ssh. An agent with
//! `--authorized-keys` admits the keys and certificates it lists, refuses
//! the rest with the reason, closes live sessions whose key is taken away,
//! and logs who opened what. The tests check order and reasons, never
//! times (`scripts/bench --access` measures those).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use crate::common::*;

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

/// `ssh-keygen -s CA -I ID -n PRINCIPALS -V VALIDITY KEY.pub`: KEY-cert.pub.
fn certify(ca: &Path, key: &Path, id: &str, principals: &str, validity: &str) {
    tool(
        "ssh-keygen",
        &[
            "-q",
            "-s",
            path_arg(ca),
            "-I",
            id,
            "-n",
            principals,
            "-V",
            validity,
            &format!("{}.pub", key.display()),
        ],
    );
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

/// An ssh session running `cat` whose output is collected by a thread:
/// what was written can be checked byte for byte.
struct Cat {
    ssh: Background,
    stdin: std::process::ChildStdin,
    echoed: std::sync::mpsc::Receiver<Vec<u8>>,
}

impl Cat {
    fn start(mut cmd: Command) -> Cat {
        cmd.stdin(Stdio::piped());
        let mut ssh = Background::start_streaming(&mut cmd);
        let stdin = ssh.take_stdin();
        let mut stdout = ssh.take_stdout();
        let (tx, echoed) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        Cat { ssh, stdin, echoed }
    }

    /// Write `data` and read back exactly as many bytes: they must be it.
    fn round_trip(&mut self, data: &[u8], what: &str) {
        self.stdin.write_all(data).expect("write to ssh");
        self.stdin.flush().expect("flush");
        let mut got = Vec::new();
        while got.len() < data.len() {
            match self.echoed.recv_timeout(Duration::from_secs(30)) {
                Ok(chunk) => got.extend_from_slice(&chunk),
                Err(_) => panic!("{what}: {} of {} bytes echoed", got.len(), data.len()),
            }
        }
        assert!(got == data, "{what}: the echo differs from what was sent");
    }
}

/// Whether a log line has the field `name` with `value` (quoted or not).
fn has_field(line: &str, name: &str, value: &str) -> bool {
    [' ', '{'].iter().any(|before| {
        line.contains(&format!("{before}{name}={value}"))
            || line.contains(&format!("{before}{name}=\"{value}\""))
    })
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Two users, A (a key file) and B (a key in ssh-agent), each with a live
/// session. B is removed from `authorized_keys` with `sed -i` (a rename):
/// B's session ends with the revocation line while A's goes on intact,
/// byte for byte; B's next attempt is refused; the audit lines name both.
#[test]
fn removing_a_user_ends_their_session_only_and_refuses_their_next() {
    let dir = scratch_dir("access-revoke");
    let alice = keygen(dir.path(), "alice", "ed25519");
    let bob = keygen(dir.path(), "bob", "ecdsa");
    let node = Node::start(
        "access_revoke",
        dir.path(),
        &format!("# the team\n{}\n{}", public(&alice), public(&bob)),
        "",
    );
    let bobs_agent = SshAgent::start(dir.path());
    bobs_agent.add(&bob);
    let bob_sock = path_arg(&bobs_agent.sock);

    let mut a = Cat::start(node.ssh(&["--identity", path_arg(&alice)], "", "cat"));
    let mut b = Cat::start(node.ssh(&[], bob_sock, "cat"));
    let (first, second) = (random_bytes(300_000, 1), random_bytes(300_000, 2));
    a.round_trip(&first, "A before");
    b.round_trip(&random_bytes(1000, 3), "B before");

    let out = run(Command::new(find_tool("sed"))
        .args(["-i", "/ bob$/d", path_arg(&node.authorized)])
        .stdin(Stdio::null()));
    assert_success(&out, "sed -i");
    assert!(!fs::read_to_string(&node.authorized)
        .unwrap()
        .contains("bob"));

    // B's session ends, told why (its stdin stays open: ssh must not end
    // on its own).
    let Cat {
        ssh: b_ssh,
        stdin: _b_stdin,
        ..
    } = b;
    let b_out = b_ssh.finish(Duration::from_secs(30));
    assert_exit_code(&b_out, 255, "B after revocation");
    let line = format!("mqtt-proxy: {}: access revoked", node.node);
    assert!(
        stderr_text(&b_out).lines().any(|l| l == line),
        "B's stderr: {}",
        stderr_text(&b_out)
    );
    // A's goes on, intact.
    a.round_trip(&second, "A after B was revoked");
    drop(a.stdin);
    let a_out = a.ssh.finish(Duration::from_secs(30));
    assert_success(&a_out, "A's session");

    // B's next attempt is refused, saying what was offered.
    node.refused(
        &[],
        bob_sock,
        &format!(
            "mqtt-proxy: {} refused the session: no authorized key (tried 1 from ssh-agent)",
            node.node
        ),
    );

    // Audit: opened and closed for both, with their fingerprints; B's
    // closed line says why and the refusal is logged with its reason.
    let (fa, fb) = (fingerprint(&alice), fingerprint(&bob));
    for fp in [&fa, &fb] {
        let opened = node.log_lines("session opened", &[("fingerprint", fp)]);
        assert_eq!(opened.len(), 1, "{fp}");
        assert!(has_field(&opened[0], "node", &node.node), "{}", opened[0]);
        assert!(opened[0].contains("client="), "{}", opened[0]);
        assert!(opened[0].contains("sid="), "{}", opened[0]);
    }
    let closed_b = node.log_lines(
        "session closed",
        &[("fingerprint", &fb), ("reason", "access revoked")],
    );
    assert_eq!(closed_b.len(), 1, "{closed_b:?}");
    for field in ["bytes_from_client=", "bytes_to_client=", "duration_ms="] {
        assert!(closed_b[0].contains(field), "{}", closed_b[0]);
    }
    let closed_a = node.log_lines(
        "session closed",
        &[("fingerprint", &fa), ("reason", "closed")],
    );
    assert_eq!(closed_a.len(), 1, "{closed_a:?}");
    let refused = node.log_lines(
        "session refused",
        &[("keys", &fb), ("reason", "no authorized key (tried 1)")],
    );
    assert_eq!(refused.len(), 1, "{refused:?}");
}

/// Certificates from a listed CA: an allowed principal opens; expired,
/// the wrong principal, a revoked key are refused with that reason (also
/// when ssh-agent holds the key beside its expired certificate: the most
/// telling reason wins). A key not listed is refused. Keys of every kind
/// ssh-keygen makes open, from a file and from ssh-agent (RSA signs with
/// SHA-2). A file with an unknown option stops the agent at start.
#[test]
fn certificates_and_every_key_kind() {
    let dir = scratch_dir("access-certs");
    let d = dir.path();
    let ca = keygen(d, "ca", "ed25519");
    let dave = keygen(d, "dave", "ed25519");
    certify(&ca, &dave, "dave@laptop", "ops", "-5m:+1h");
    let erin = keygen(d, "erin", "ed25519");
    certify(&ca, &erin, "erin@laptop", "ops", "20200101:20200102");
    let frank = keygen(d, "frank", "ed25519");
    certify(&ca, &frank, "frank@laptop", "dba", "-5m:+1h");
    let grace = keygen(d, "grace", "ed25519");
    certify(&ca, &grace, "grace@laptop", "ops", "-5m:+1h");
    let mallory = keygen(d, "mallory", "ed25519");
    let kinds: Vec<PathBuf> = ["ed25519", "ecdsa", "rsa"]
        .iter()
        .map(|k| keygen(d, &format!("user-{k}"), k))
        .collect();
    let mut authorized = format!("cert-authority,principals=\"ops\" {}", public(&ca));
    for k in &kinds {
        authorized.push_str(&public(k));
    }
    let node = Node::start("access_certs", d, &authorized, &public(&grace));
    let refused = |why: &str| format!("mqtt-proxy: {} refused the session: {why}", node.node);

    node.echoes(
        &["--identity", path_arg(&dave)],
        "",
        "a certificate with an allowed principal",
    );
    let opened = node.log_lines(
        "session opened",
        &[
            ("fingerprint", &fingerprint(&dave)),
            ("key_id", "dave@laptop"),
            ("principal", "ops"),
        ],
    );
    assert_eq!(opened.len(), 1, "{opened:?}");

    node.refused(
        &["--identity", path_arg(&erin)],
        "",
        &refused("certificate expired"),
    );
    node.refused(
        &["--identity", path_arg(&frank)],
        "",
        &refused("certificate has no allowed principal"),
    );
    node.refused(
        &["--identity", path_arg(&grace)],
        "",
        &refused("access revoked"),
    );
    node.refused(
        &["--identity", path_arg(&mallory)],
        "",
        &refused(&format!(
            "no authorized key (tried 1 from {})",
            path_arg(&mallory)
        )),
    );
    let agent = SshAgent::start(d);
    agent.add(&erin);
    node.refused(&[], path_arg(&agent.sock), &refused("certificate expired"));
    node.refused(
        &[],
        "",
        &refused("it asks for an ssh key and none was found: no --identity (MQTT_IDENTITY) and no ssh-agent (SSH_AUTH_SOCK is not set)"),
    );

    for k in &kinds {
        node.echoes(
            &["--identity", path_arg(k)],
            "",
            &format!("{} from its file", k.display()),
        );
    }
    // The smallest messages we allow still carry an ed25519 key's proof.
    node.echoes(
        &[
            "--identity",
            path_arg(&kinds[0]),
            "--max-message-size",
            "768",
        ],
        "",
        "ed25519 in messages of 768 bytes",
    );
    let rsa_agent = SshAgent::start(&d.join("rsa-agent").tap_mkdir());
    rsa_agent.add(&kinds[2]);
    node.echoes(&[], path_arg(&rsa_agent.sock), "rsa from ssh-agent");
    for k in &kinds {
        let fp = fingerprint(k);
        assert!(
            !node
                .log_lines("session opened", &[("fingerprint", &fp)])
                .is_empty(),
            "no session opened by {fp}"
        );
    }

    // An unknown option is refused with its line number, at start.
    fs::write(
        d.join("bad_keys"),
        format!("# ok\nrestrict,pty {}", public(&dave)),
    )
    .unwrap();
    let (broker, sshd) = (&node.broker, &node.sshd);
    let bad = path_arg(&d.join("bad_keys")).to_owned();
    let mut agent = Agent::spawn(
        broker,
        &sshd.target(),
        "access-bad-file",
        &node.prefix,
        &["--authorized-keys", &bad],
        &[],
    );
    let status = agent
        .wait_exit(Duration::from_secs(10))
        .expect("the agent exits");
    assert!(!status.success());
    let log = agent.log_text();
    assert!(log.contains("line 2"), "{log}");
}

trait MkDir {
    fn tap_mkdir(self) -> Self;
}

impl MkDir for PathBuf {
    fn tap_mkdir(self) -> PathBuf {
        fs::create_dir_all(&self).expect("mkdir");
        self
    }
}

/// A captured AUTH is useless for any other session: replayed after its
/// OPEN on the same client id (the agent challenges afresh) and on
/// another client id, it is refused.
#[test]
fn an_answer_replayed_into_another_session_is_refused() {
    let dir = scratch_dir("access-replay");
    let alice = keygen(dir.path(), "alice", "ed25519");
    let node = Node::start("access_replay", dir.path(), &public(&alice), "");
    let port = node.broker.port();
    let spy = Raw::connect(port, &format!("spy-{}", node.node), None);
    spy.subscribe(&[&format!("{}/{}/s/+/up", node.prefix, node.node)]);
    node.echoes(&["--identity", path_arg(&alice)], "", "alice");
    let recorded = spy.collect(Duration::from_millis(500));
    let kind = |f: &[u8]| f.get(1).copied().unwrap_or(0);
    const OPEN: u8 = 1;
    const REFUSE: u8 = 3;
    const CHALLENGE: u8 = 4;
    const AUTH: u8 = 5;
    let (topic, auth) = recorded
        .iter()
        .find(|(_, f)| kind(f) == AUTH)
        .cloned()
        .expect("an AUTH was recorded");
    let (_, open) = recorded
        .iter()
        .find(|(t, f)| *t == topic && kind(f) == OPEN)
        .cloned()
        .expect("its OPEN was recorded");
    let header = mqtt_proxy::protocol::HEADER_LEN;
    let up_of = |cid: &str| format!("{}/{}/s/{cid}/up", node.prefix, node.node);
    let victim = topic
        .strip_suffix("/up")
        .and_then(|t| t.rsplit('/').next())
        .expect("client id")
        .to_owned();
    for (cid, what) in [
        (victim.as_str(), "same client id"),
        ("replayer-1", "another client id"),
    ] {
        let attacker = Raw::connect(port, &format!("attacker-{cid}"), None);
        attacker.subscribe(&[&format!("{}/{}/s/{cid}/down", node.prefix, node.node)]);
        attacker.publish(&up_of(cid), open.clone());
        let challenged = attacker.collect(Duration::from_secs(2));
        assert_eq!(
            challenged.iter().map(|(_, f)| kind(f)).collect::<Vec<_>>(),
            [CHALLENGE],
            "{what}: a fresh challenge"
        );
        attacker.publish(&up_of(cid), auth.clone());
        let answers = attacker.collect(Duration::from_secs(2));
        let kinds: Vec<u8> = answers.iter().map(|(_, f)| kind(f)).collect();
        assert_eq!(kinds, [REFUSE], "{what}: refused, never accepted");
        let f = &answers[0].1;
        assert_eq!(f[header], 5, "{what}: the access refusal code");
        assert_eq!(&f[header + 1..], b"no authorized key", "{what}");
    }
}

/// A passphrase-protected `--identity` asks for its passphrase on the
/// terminal (`/dev/tty`, here a pseudo-terminal from `script`), never on
/// stdin or stdout, which carry ssh's bytes; with it, the key opens.
#[test]
fn a_passphrase_is_asked_on_the_terminal_only() {
    let dir = scratch_dir("access-tty");
    let d = dir.path();
    let key = d.join("locked");
    tool(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "correct horse",
            "-C",
            "locked",
            "-f",
            path_arg(&key),
        ],
    );
    let node = Node::start("access_tty", d, &public(&key), "");
    let mut args = node.proxy_args(&["--identity", path_arg(&key)]);
    args.push(node.node.clone());
    let (out, err) = (d.join("stdout"), d.join("stderr"));
    let mut line = shell_quote(proxy_bin());
    for a in &args {
        line.push(' ');
        line.push_str(&shell_quote(a));
    }
    line.push_str(&format!(
        " </dev/null >{} 2>{}",
        shell_quote(path_arg(&out)),
        shell_quote(path_arg(&err))
    ));
    let mut cmd = Command::new(find_tool("script"));
    cmd.args(["-qec", &line, "/dev/null"])
        .env("SSH_AUTH_SOCK", "")
        .stdin(Stdio::piped());
    for var in MQTT_ENV {
        cmd.env_remove(var);
    }
    let mut term = Background::start_streaming(&mut cmd);
    let mut keyboard = term.take_stdin();
    let mut screen = term.take_stdout();
    // Type the passphrase once the prompt is on the terminal.
    let mut shown = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&shown).contains("Enter passphrase for key") {
        let n = screen.read(&mut buf).expect("read the terminal");
        assert!(n > 0, "the terminal closed without a prompt: {shown:?}");
        shown.extend_from_slice(&buf[..n]);
    }
    keyboard
        .write_all(b"correct horse\n")
        .expect("type the passphrase");
    let status = term.finish(Duration::from_secs(30));
    assert_success(&status, "mqtt-proxy with a passphrase from the terminal");
    let (out, err) = (fs::read(&out).unwrap(), fs::read_to_string(&err).unwrap());
    assert!(
        out.windows(10).all(|w| w != b"passphrase"),
        "the prompt reached stdout"
    );
    assert!(
        !err.contains("passphrase"),
        "the prompt reached stderr: {err}"
    );
    let opened = node.log_lines("session opened", &[("fingerprint", &fingerprint(&key))]);
    assert_eq!(opened.len(), 1, "{opened:?}");
}
