//! End-to-end security: TLS to the broker with a private CA (and what the
//! user reads when a check fails), client certificates, broker passwords and
//! the shipped least-privilege ACL (`examples/mosquitto/`), agent passwords
//! (challenge-response, replay), and a flood of garbage and open requests at
//! an agent. Real mosquitto, sshd, ssh and scp; certificates are made with
//! openssl at run time in each test's own directory.
//!
//! One file per concern: `tls` (TLS and mutual TLS to the broker), `shipped`
//! (broker passwords, the shipped ACL and mosquitto.conf) and `agent` (agent
//! passwords, the flood, oversized publishes). This file holds what they
//! share: the lock that runs the flood test apart, command helpers,
//! hand-built frames and a seeded random generator.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::*;

mod agent;
mod shipped;
mod tls;

/// The flood test measures memory and every other test here has a 10 s
/// bound: it runs apart from them (write lock), the others together (read
/// lock). Tests of the other files (one binary, tests/e2e.rs) may run
/// beside it.
static EXCLUSIVE: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    EXCLUSIVE.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    EXCLUSIVE.write().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

/// Remove inherited MQTT settings from a harness-built ssh/scp command.
fn clean(mut cmd: Command) -> Command {
    for var in MQTT_ENV {
        cmd.env_remove(var);
    }
    cmd
}

/// Run the proxy and check that it fails with exit status 255 and exactly
/// `line` on stderr within [`FAILURE_REPORT_BOUND`].
fn assert_fails_with(mut cmd: Command, line: &str, what: &str) {
    let started = Instant::now();
    let out = run_with_timeout(&mut cmd, FAILURE_REPORT_BOUND * 3);
    let took = started.elapsed();
    assert_exit_code(&out, PROXY_FAILURE_STATUS, what);
    assert_eq!(stderr_text(&out), line, "{what}: stderr");
    assert!(
        took <= FAILURE_REPORT_BOUND,
        "{what}: took {took:?}, more than {FAILURE_REPORT_BOUND:?}"
    );
    eprintln!("{what}: {line:?} after {took:.1?}");
}

fn check_ssh_echo(ssh: &Ssh, env: &[(&str, &str)], what: &str) {
    let mut cmd = clean(ssh.ssh("echo through-the-tunnel"));
    cmd.envs(env.iter().copied());
    let out = run(&mut cmd);
    assert_success(&out, what);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through-the-tunnel\n");
}

/// A file only its owner can read (the binaries refuse others), holding `text`.
fn private_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).expect("write private file");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod 600");
    path
}

// ---------------------------------------------------------------------------
// Frames (docs/protocol.md, "Frames"), built by hand to check the documented layout
// ---------------------------------------------------------------------------

use mqtt_proxy::protocol::{HEADER_LEN, MAX_FRAME, MAX_PACKET, VERSION};
/// A key share for hand-built OPENs (any 32 bytes but a few low-order
/// points make one; nobody answers these sessions' handshake).
const SHARE: [u8; 32] = [9; 32];
const OPEN: u8 = 1;
const ACCEPT: u8 = 2;
const REFUSE: u8 = 3;
const CHALLENGE: u8 = 4;
const AUTH: u8 = 5;

fn frame(kind: u8, sid: u64, window: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; HEADER_LEN];
    f[0] = VERSION;
    f[1] = kind;
    f[4..12].copy_from_slice(&sid.to_be_bytes());
    f[36..40].copy_from_slice(&window.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn frame_kind(f: &[u8]) -> u8 {
    if f.len() >= HEADER_LEN {
        f[1]
    } else {
        0
    }
}

fn frame_sid(f: &[u8]) -> u64 {
    u64::from_be_bytes(f[4..12].try_into().expect("8 bytes"))
}

/// The text of a REFUSE payload (reason code byte, then UTF-8).
fn refuse_text(f: &[u8]) -> String {
    String::from_utf8_lossy(f.get(HEADER_LEN + 1..).unwrap_or_default()).into_owned()
}

/// splitmix64: reproducible from its printed seed, no extra dependency.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        eprintln!("random seed {seed}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(len);
        v
    }
}
