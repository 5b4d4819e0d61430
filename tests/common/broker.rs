//! A throwaway mosquitto on a free loopback port, and its command-line
//! clients.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use tempfile::TempDir;

use super::host::{find_tool, free_port, port_accepts, BIND_ATTEMPTS};
use super::process::{append_log, read_lossy, wait_until, Killed, SERVER_START_TIMEOUT};

/// Appended to every test broker's configuration. Logging to stderr
/// (redirected to the log file) keeps working after mosquitto drops root
/// privileges to its own user.
const BROKER_LOG_CONF: &str = "log_dest stderr\nlog_type all\nlog_timestamp_format %H:%M:%S\n";

/// A mosquitto broker on a free loopback port, anonymous access allowed.
pub struct Broker {
    dir: TempDir,
    port: u16,
    conf: PathBuf,
    log: PathBuf,
    child: Option<Killed>,
}

impl Broker {
    /// Start a broker; `extra_conf` is appended to mosquitto.conf verbatim
    /// (e.g. `"max_queued_messages 10\nmax_inflight_messages 2"`).
    pub fn start(extra_conf: &str) -> Broker {
        Broker::start_custom(|port| Broker::conf_text(port, extra_conf))
    }

    /// Start mosquitto with `conf(port)` as its whole configuration (TLS
    /// listeners, password and ACL files...), for a free `port` the text must
    /// listen on; the harness only adds logging to its log file. Files the
    /// configuration names must be readable by the `mosquitto` user: when
    /// started as root, mosquitto reads them after dropping privileges.
    pub fn start_custom(conf: impl Fn(u16) -> String) -> Broker {
        let mut dir = tempfile::Builder::new()
            .prefix("mqtt-proxy-broker.")
            .tempdir()
            .expect("create broker tempdir");
        let log = dir.path().join("mosquitto.log");
        let conf_path = dir.path().join("mosquitto.conf");
        let mut errors = Vec::new();
        for _ in 0..BIND_ATTEMPTS {
            let port = free_port();
            let text = format!("{}\n{BROKER_LOG_CONF}", conf(port));
            fs::write(&conf_path, text).expect("write mosquitto.conf");
            let mut broker = Broker {
                port,
                conf: conf_path.clone(),
                log: log.clone(),
                child: None,
                dir,
            };
            match broker.spawn() {
                Ok(()) => return broker,
                Err(e) => {
                    errors.push(e);
                    dir = broker.dir;
                }
            }
        }
        panic!(
            "mosquitto did not start: {errors:?}\n--- mosquitto.log ---\n{}",
            read_lossy(&log)
        );
    }

    /// Start a broker with a plain MQTT listener (which Debian 12's mosquitto
    /// needs before it starts a WebSocket one) and a WebSocket listener on a
    /// second free port, whose options `ws_conf` adds (e.g. TLS files);
    /// returns the broker and the WebSocket port.
    pub fn start_ws(ws_conf: &str) -> (Broker, u16) {
        let ws_port = std::cell::Cell::new(0);
        let broker = Broker::start_custom(|port| {
            ws_port.set(free_port());
            format!(
                "listener {port} 127.0.0.1\nlistener {} 127.0.0.1\nprotocol websockets\n{ws_conf}\n\
                 allow_anonymous true\npersistence false\n",
                ws_port.get()
            )
        });
        let port = ws_port.get();
        assert!(
            wait_until(SERVER_START_TIMEOUT, || port_accepts(port)),
            "mosquitto's WebSocket listener on port {port} does not accept\n{}",
            broker.log_text()
        );
        (broker, port)
    }

    /// Start a broker on 127.0.0.1:`port` (e.g. one a client was already
    /// pointed at, from [`free_port`]); panics if it cannot listen there.
    pub fn start_on(port: u16, extra_conf: &str) -> Broker {
        let dir = tempfile::Builder::new()
            .prefix("mqtt-proxy-broker.")
            .tempdir()
            .expect("create broker tempdir");
        let log = dir.path().join("mosquitto.log");
        let conf = dir.path().join("mosquitto.conf");
        let text = format!("{}{BROKER_LOG_CONF}", Broker::conf_text(port, extra_conf));
        fs::write(&conf, text).expect("write mosquitto.conf");
        let mut broker = Broker {
            port,
            conf,
            log,
            child: None,
            dir,
        };
        if let Err(e) = broker.spawn() {
            panic!(
                "mosquitto did not start on port {port}: {e}\n--- mosquitto.log ---\n{}",
                broker.log_text()
            );
        }
        broker
    }

    /// An anonymous broker on 127.0.0.1:`port`, plus `extra_conf`.
    fn conf_text(port: u16, extra_conf: &str) -> String {
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra_conf}\n"
        )
    }

    fn spawn(&mut self) -> Result<(), String> {
        // mosquitto logs "mosquitto version X running" once it listens; count
        // occurrences so a restart does not see the previous run's line.
        // Counted before the spawn: a mosquitto that starts quickly may log
        // its line before this thread runs again, and a count taken after
        // it would then wait for a line that never comes.
        let before = read_lossy(&self.log).matches(" running").count();
        let child = Command::new(find_tool("mosquitto"))
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(append_log(&self.log))
            .stderr(append_log(&self.log))
            .spawn()
            .map_err(|e| format!("spawn mosquitto: {e}"))?;
        let mut child = Killed(child);
        let log = self.log.clone();
        let port = self.port;
        let mut status = None;
        let ready = wait_until(SERVER_START_TIMEOUT, || {
            status = child.exited();
            status.is_some()
                || (read_lossy(&log).matches(" running").count() > before && port_accepts(port))
        });
        match (ready, status) {
            (true, None) => {
                self.child = Some(child);
                Ok(())
            }
            (_, Some(st)) => Err(format!("mosquitto on port {port} exited with {st}")),
            (false, None) => Err(format!(
                "mosquitto not ready on port {port} after {SERVER_START_TIMEOUT:?}"
            )),
        }
    }

    /// The broker's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything mosquitto has logged so far (all runs of this broker).
    pub fn log_text(&self) -> String {
        read_lossy(&self.log)
    }

    /// Kill the broker with SIGKILL (no clean disconnects, like a crash or a
    /// network cut) and wait until it has exited.
    pub fn stop(&mut self) {
        self.child = None;
    }

    /// Start the broker again with the same configuration on the same port;
    /// retries for a while in case the port is briefly unavailable.
    pub fn restart(&mut self) {
        self.stop();
        let mut errors = Vec::new();
        let ok = wait_until(SERVER_START_TIMEOUT, || match self.spawn() {
            Ok(()) => true,
            Err(e) => {
                errors.push(e);
                false
            }
        });
        assert!(
            ok,
            "mosquitto did not restart on port {}: {errors:?}\n--- mosquitto.log ---\n{}",
            self.port,
            self.log_text()
        );
    }

    /// `mosquitto_pub` against this broker; append e.g. `-t T -m M`.
    pub fn mosquitto_pub(&self) -> Command {
        let mut cmd = Command::new(find_tool("mosquitto_pub"));
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null());
        cmd
    }

    /// `mosquitto_sub` against this broker; append e.g. `-t T -C 1 -W 5`.
    pub fn mosquitto_sub(&self) -> Command {
        let mut cmd = Command::new(find_tool("mosquitto_sub"));
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null());
        cmd
    }
}
