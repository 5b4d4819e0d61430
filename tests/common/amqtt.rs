//! A throwaway amqtt (a real MQTT 3.1.1-only broker, Python) on a free
//! loopback port, from the virtualenv `scripts/install-deps` makes.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use tempfile::TempDir;

use super::host::{free_port, BIND_ATTEMPTS};
use super::process::{append_log, read_lossy, wait_server, Killed};

/// Where `scripts/install-deps` puts amqtt (keep the two in step).
pub fn amqtt_bin() -> PathBuf {
    let venv = std::env::var_os("MQTT_PROXY_AMQTT_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache")
                });
            cache.join("mqtt-proxy/amqtt-venv")
        });
    let bin = venv.join("bin/amqtt");
    assert!(
        bin.is_file(),
        "{} not found; run scripts/install-deps (or scripts/test) to install amqtt",
        bin.display()
    );
    bin
}

/// An amqtt broker on 127.0.0.1, anonymous access allowed.
pub struct Amqtt {
    _dir: TempDir,
    port: u16,
    log: PathBuf,
    _child: Killed,
}

impl Amqtt {
    pub fn start() -> Amqtt {
        let dir = tempfile::Builder::new()
            .prefix("mqtt-proxy-amqtt.")
            .tempdir()
            .expect("create amqtt tempdir");
        let log = dir.path().join("amqtt.log");
        let conf = dir.path().join("amqtt.yaml");
        let mut errors = Vec::new();
        for _ in 0..BIND_ATTEMPTS {
            let port = free_port();
            // No $SYS plugin: its periodic messages are noise here.
            let text = format!(
                "listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:{port}\n\
                 plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n"
            );
            fs::write(&conf, text).expect("write amqtt.yaml");
            let child = Command::new(amqtt_bin())
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(append_log(&log))
                .stderr(append_log(&log))
                .spawn()
                .expect("spawn amqtt");
            let mut child = Killed(child);
            // Ready when the port accepts (no log line to wait for).
            match wait_server(&mut child, &log, "", port, "amqtt") {
                Ok(()) => {
                    return Amqtt {
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
            "amqtt did not start: {errors:?}\n--- amqtt.log ---\n{}",
            read_lossy(&log)
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log_text(&self) -> String {
        read_lossy(&self.log)
    }
}
