//! Taking a user's key away: their live session ends, told why, while
//! another user's goes on byte for byte; their next attempt is refused;
//! the audit log names both.

use super::*;

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
