use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::access::{self, Access, Denial};

const NODE: &str = "prod-db";
const T: [u8; 32] = [3; 32];

/// Whether OpenSSH's tools are here (they are in CI: openssh-client).
fn have_openssh() -> bool {
    Command::new("ssh-keygen")
        .arg("-?")
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("the tool runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ssh-keygen -t KIND -N PASS -f DIR/NAME`: the key file's path.
fn keygen(dir: &Path, name: &str, kind: &str, pass: &str) -> PathBuf {
    let path = dir.join(name);
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", pass, "-C", name, "-f"])
        .arg(&path));
    path
}

/// `ssh-keygen -s CA -I ID -n PRINCIPALS -V VALIDITY KEY.pub`: makes
/// `KEY-cert.pub`.
fn certify(ca: &Path, key: &Path, id: &str, principals: &str, validity: &str) {
    let mut public = key.as_os_str().to_os_string();
    public.push(".pub");
    run(Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(ca)
        .args(["-I", id, "-n", principals, "-V", validity])
        .arg(public));
}

fn public_line(key: &Path) -> String {
    let mut public = key.as_os_str().to_os_string();
    public.push(".pub");
    std::fs::read_to_string(public).expect("the .pub file")
}

fn no_passphrase(_: &str) -> std::io::Result<Secret> {
    panic!("no passphrase should be asked for")
}

#[test]
fn an_empty_ssh_auth_sock_means_no_agent() {
    assert_eq!(agent_socket(None), None);
    assert_eq!(agent_socket(Some(OsStr::new(""))), None);
    assert_eq!(
        agent_socket(Some(OsStr::new("/run/user/1000/agent.sock"))),
        Some(PathBuf::from("/run/user/1000/agent.sock"))
    );
    assert_eq!(
        cert_path(Path::new("/home/a/.ssh/id_ed25519")),
        PathBuf::from("/home/a/.ssh/id_ed25519-cert.pub")
    );
}

#[test]
fn key_files_with_a_certificate_beside_and_a_passphrase() {
    if !have_openssh() {
        eprintln!("skipped: no ssh-keygen");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = keygen(dir.path(), "ca", "ed25519", "");
    let key = keygen(dir.path(), "id_ecdsa", "ecdsa", "");
    certify(&ca, &key, "alice@laptop", "ops", "+1h");
    let candidates = from_file(&key, no_passphrase).expect("reads");
    assert_eq!(candidates.len(), 2);
    // The certificate first, as ssh offers it.
    assert_eq!(
        candidates[0].certificate().map(|c| c.key_id()),
        Some("alice@laptop")
    );
    assert!(candidates[1].certificate().is_none());
    // The private key never shows in Debug.
    let debug = format!("{candidates:?}");
    assert!(debug.contains("private key not shown"), "{debug}");
    assert!(!debug.contains("private:"), "{debug}");

    let authorized = format!("cert-authority,principals=\"ops\" {}", public_line(&ca));
    let access = Access::parse(&authorized, "").expect("parses");
    let (proofs, failures) = proofs_of(&candidates);
    assert!(failures.is_empty(), "{failures:?}");
    let id = access
        .check(&proofs, NODE, &T, SystemTime::now())
        .expect("the certificate opens");
    assert_eq!(id.certificate.expect("a certificate").principal, "ops");

    // An encrypted RSA key: asked on the terminal (here: a closure),
    // a wrong passphrase asked again, three wrong ones an error.
    let rsa = keygen(dir.path(), "id_rsa", "rsa", "correct horse");
    let mut asked = Vec::new();
    let mut answers = vec!["wrong", "correct horse"].into_iter();
    let candidates = from_file(&rsa, |prompt| {
        asked.push(prompt.to_string());
        Ok(Secret::new(
            answers.next().expect("asked twice").to_string(),
        ))
    })
    .expect("decrypts");
    assert_eq!(asked.len(), 2);
    assert_eq!(
        asked[0],
        format!("Enter passphrase for key '{}': ", rsa.display())
    );
    let access = Access::parse(&public_line(&rsa), "").expect("parses");
    let (proofs, _) = proofs_of(&candidates);
    let proof = &proofs[0];
    assert_eq!(
        proof.sshsig().signature().algorithm(),
        ssh_key::Algorithm::Rsa {
            hash: Some(ssh_key::HashAlg::Sha512)
        }
    );
    assert!(access.check(&proofs, NODE, &T, SystemTime::now()).is_ok());
    let e = from_file(&rsa, |_| Ok(Secret::new("nope".into()))).expect_err("wrong");
    assert_eq!(
        e.to_string(),
        format!("wrong passphrase for {}", rsa.display())
    );
    let e = from_file(&rsa, |_| Ok(Secret::new(String::new()))).expect_err("skipped");
    assert!(matches!(e, IdentityError::NoPassphrase { .. }), "{e}");

    // OpenSSH's own SSHSIG (`ssh-keygen -Y sign`) over a transcript is a
    // proof we accept: the same signed bytes.
    let msg = dir.path().join("transcript");
    std::fs::write(&msg, T).expect("write");
    run(Command::new("ssh-keygen")
        .args([
            "-q",
            "-Y",
            "sign",
            "-n",
            crate::access::proof::NAMESPACE,
            "-f",
        ])
        .arg(&key)
        .arg(&msg));
    let pem = std::fs::read_to_string(dir.path().join("transcript.sig")).expect("signature");
    let sig = ssh_key::SshSig::from_pem(pem).expect("SSHSIG");
    let theirs = crate::access::Proof::from_sshsig(None, sig).expect("proof");
    assert!(theirs.verifies(&T));
    assert!(!theirs.verifies(&[5; 32]));
}

/// A real `ssh-agent` in the foreground on a socket of our own; killed
/// by its pid when dropped.
struct Agent {
    child: Child,
    sock: PathBuf,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        let sock = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-a")
            .arg(&sock)
            .arg("-D")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent starts");
        let agent = Agent { child, sock };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !agent.sock.exists() {
            assert!(Instant::now() < deadline, "ssh-agent made no socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }

    fn add(&self, key: &Path) {
        run(Command::new("ssh-add")
            .env("SSH_AUTH_SOCK", &self.sock)
            .arg("-q")
            .arg(key));
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // The agent we started, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_ssh_agent_signs_with_each_kind_of_key_and_a_certificate() {
    if !have_openssh() {
        eprintln!("skipped: no ssh-keygen");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = Agent::start(dir.path());
    let ed = keygen(dir.path(), "id_ed25519", "ed25519", "");
    let ec = keygen(dir.path(), "id_ecdsa", "ecdsa", "");
    let rsa = keygen(dir.path(), "id_rsa", "rsa", "");
    // An RSA CA: its certificates carry rsa-sha2-512 signatures.
    let ca = keygen(dir.path(), "user_ca", "rsa", "");
    let carol = keygen(dir.path(), "id_carol", "ed25519", "");
    certify(&ca, &carol, "carol@laptop", "dba,ops", "+1h");
    for key in [&ed, &ec, &rsa, &carol] {
        // ssh-add adds KEY-cert.pub too when it is there.
        agent.add(key);
    }

    let candidates = from_agent(&agent.sock).expect("lists");
    // Three keys, carol's key and carol's certificate.
    assert_eq!(candidates.len(), 5, "{candidates:?}");
    assert!(candidates.iter().all(|c| c.origin == "ssh-agent"));

    // Each key on its own, listed plainly.
    let authorized = [&ed, &ec, &rsa].map(|k| public_line(k)).join("");
    let access = Access::parse(
        &format!(
            "{authorized}cert-authority,principals=\"ops\" {}",
            public_line(&ca)
        ),
        "",
    )
    .expect("parses");
    let carol_key = ssh_key::PublicKey::from_openssh(&public_line(&carol))
        .expect("parses")
        .key_data()
        .clone();
    let mut opened = 0;
    for c in &candidates {
        let proof = c.sign(&T).expect("the agent signs");
        // Through the wire, as AUTH carries it.
        let wire = access::decode(&access::encode(&[proof]).expect("encodes")).expect("decodes");
        let got = access.check(&wire, NODE, &T, SystemTime::now());
        if c.key() == &carol_key && c.certificate().is_none() {
            // carol's plain key is not listed: only her certificate opens.
            assert_eq!(got, Err(Denial::NoAuthorizedKey { tried: 1 }));
            continue;
        }
        let id = got.unwrap_or_else(|d| panic!("{}: {d}", c.describe()));
        assert_eq!(id.fingerprint, access::fingerprint(c.key()));
        if let Some(cert) = &id.certificate {
            assert_eq!(cert.key_id, "carol@laptop");
            assert_eq!(cert.principal, "ops");
        }
        // Replayed into another session: refused.
        assert_eq!(
            access.check(&wire, NODE, &[4; 32], SystemTime::now()),
            Err(Denial::NoAuthorizedKey { tried: 1 })
        );
        opened += 1;
    }
    assert_eq!(opened, 4);

    // All at once, as `mqtt-proxy` would send them; with carol's key
    // revoked, her certificate's reason is the most telling.
    let (proofs, failures) = proofs_of(&candidates);
    assert!(failures.is_empty(), "{failures:?}");
    let only_ca = format!("cert-authority,principals=\"ops\" {}", public_line(&ca));
    let revoked = Access::parse(&only_ca, &public_line(&carol)).expect("parses");
    assert_eq!(
        revoked.check(&proofs, NODE, &T, SystemTime::now()),
        Err(Denial::Revoked)
    );
    let wrong_principal = Access::parse(
        &format!("cert-authority,principals=\"web\" {}", public_line(&ca)),
        "",
    )
    .expect("parses");
    assert_eq!(
        wrong_principal.check(&proofs, NODE, &T, SystemTime::now()),
        Err(Denial::NoPrincipal)
    );

    // OpenSSH itself accepts our signatures: `ssh-keygen -Y
    // check-novalidate` over the transcript.
    let sig_file = dir.path().join("proof.sig");
    let pem = proofs[0]
        .sshsig()
        .to_pem(ssh_key::LineEnding::LF)
        .expect("PEM");
    std::fs::write(&sig_file, pem).expect("write");
    let mut check = Command::new("ssh-keygen")
        .args([
            "-Y",
            "check-novalidate",
            "-n",
            access::proof::NAMESPACE,
            "-s",
        ])
        .arg(&sig_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh-keygen runs");
    std::io::Write::write_all(&mut check.stdin.take().expect("stdin"), &T).expect("write");
    let out = check.wait_with_output().expect("ssh-keygen ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_expired_certificate_from_the_agent_says_so() {
    if !have_openssh() {
        eprintln!("skipped: no ssh-keygen");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = Agent::start(dir.path());
    let ca = keygen(dir.path(), "user_ca", "ecdsa", "");
    let key = keygen(dir.path(), "id_ed25519", "ed25519", "");
    // Valid from two hours ago to one hour ago.
    certify(&ca, &key, "old", NODE, "-2h:-1h");
    agent.add(&key);
    let candidates = gather(
        from_file(&key, no_passphrase).expect("reads"),
        from_agent(&agent.sock).expect("lists"),
    );
    // The file's key and certificate, the agent's same two not again.
    assert_eq!(candidates.len(), 2, "{candidates:?}");
    let access =
        Access::parse(&format!("cert-authority {}", public_line(&ca)), "").expect("parses");
    let (proofs, _) = proofs_of(&candidates);
    assert_eq!(
        access.check(&proofs, NODE, &T, SystemTime::now()),
        Err(Denial::Expired)
    );
    assert_eq!(Denial::Expired.to_string(), "certificate expired");
}

#[test]
fn identities_and_proofs_move_into_spawn_blocking() {
    fn send<T: Send + 'static>() {}
    send::<Vec<Candidate>>();
    send::<Vec<crate::access::Proof>>();
    send::<IdentityError>();
}

/// The proofs `prove` makes for [`T`], without a size budget.
fn proofs_of(candidates: &[Candidate]) -> (Vec<Proof>, Vec<IdentityError>) {
    let (signed, failures) = prove(candidates, &T, usize::MAX);
    (signed.into_iter().map(|(_, p)| p).collect(), failures)
}
