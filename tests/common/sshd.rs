//! A throwaway sshd on a free loopback port that lets the current user in
//! with a key generated for it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

use super::host::{find_tool, free_port, is_root, BIND_ATTEMPTS};
use super::process::{append_log, read_lossy, wait_server, Killed};

/// sshd's limit on connections that have not authenticated yet. Every
/// session the agent opens is one until ssh logs in, so it is above the
/// agent's default session cap (64): the flood tests then measure the
/// agent's limits, not sshd's (docs/security.md tells operators the same).
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
