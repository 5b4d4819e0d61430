//! A throwaway tinyproxy (an HTTP CONNECT proxy) on a free loopback port.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use tempfile::TempDir;

use super::host::{find_tool, free_port, is_root, BIND_ATTEMPTS};
use super::process::{append_log, read_lossy, wait_server, Killed};

/// tinyproxy on 127.0.0.1 that logs every CONNECT it handles.
pub struct Tinyproxy {
    _dir: TempDir,
    port: u16,
    log: PathBuf,
    _child: Killed,
}

impl Tinyproxy {
    /// Start tinyproxy; `extra_conf` is appended to its configuration
    /// (e.g. `"ConnectPort 443"` to allow CONNECT to that port only).
    pub fn start(extra_conf: &str) -> Tinyproxy {
        let dir = tempfile::Builder::new()
            .prefix("mqtt-proxy-tinyproxy.")
            .tempdir()
            .expect("create tinyproxy tempdir");
        // Run as root, tinyproxy drops to nobody, who must reach its files.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .expect("chmod tinyproxy tempdir");
        let log = dir.path().join("tinyproxy.log");
        let conf = dir.path().join("tinyproxy.conf");
        let user = if is_root() {
            "User nobody\nGroup nogroup\n"
        } else {
            ""
        };
        let mut errors = Vec::new();
        for _ in 0..BIND_ATTEMPTS {
            let port = free_port();
            let text = format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\nLogLevel Connect\n{user}{extra_conf}\n"
            );
            fs::write(&conf, text).expect("write tinyproxy.conf");
            let child = Command::new(find_tool("tinyproxy"))
                .arg("-d")
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(append_log(&log))
                .stderr(append_log(&log))
                .spawn()
                .expect("spawn tinyproxy");
            let mut child = Killed(child);
            // Ready when the port accepts (no log line to wait for).
            match wait_server(&mut child, &log, "", port, "tinyproxy") {
                Ok(()) => {
                    return Tinyproxy {
                        _dir: dir,
                        port,
                        log,
                        _child: child,
                    }
                }
                Err(e) => errors.push(format!("port {port}: {e}")),
            }
        }
        panic!(
            "tinyproxy did not start: {errors:?}\n--- log ---\n{}",
            read_lossy(&log)
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        read_lossy(&self.log)
    }

    /// How many CONNECT requests to port `port` (of any host) it logged.
    pub fn connects_to(&self, port: u16) -> usize {
        let tail = format!(":{port} HTTP/1.1");
        self.log_text()
            .lines()
            .filter(|l| l.contains("): CONNECT ") && l.ends_with(&tail))
            .count()
    }
}
