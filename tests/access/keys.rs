//! Which keys open a session: certificates from a listed CA (principals,
//! expiry, revoked keys), keys of every kind from a file and from
//! ssh-agent, a bad authorized_keys file, and a passphrase-protected key
//! whose passphrase is asked on the terminal only.

use super::*;

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
