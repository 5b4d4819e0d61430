//! What the harness needs from this machine: free loopback ports, names no
//! other test uses, the tools and binaries it runs, and the MQTT settings it
//! keeps out of every command.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// How many fresh ports to try when a server loses the race for its port.
pub(super) const BIND_ATTEMPTS: usize = 5;

/// Environment variables read by both binaries; removed from every command this
/// harness builds so a developer's shell settings cannot leak into a test.
pub const MQTT_ENV: &[&str] = &[
    "MQTT_HOST",
    "MQTT_PORT",
    "MQTT_USER",
    "MQTT_USERNAME",
    "MQTT_PASSWORD",
    "MQTT_TOPIC_PREFIX",
    "MQTT_CLIENT_ID_PREFIX",
    "MQTT_ID",
    "MQTT_TARGET",
    "MQTT_BROKER",
    "MQTT_PASSWORD_FILE",
    "MQTT_RESUME_TIMEOUT",
    "MQTT_MAX_SESSIONS",
    "MQTT_PROXY_CONFIG",
    "MQTT_AGENT_PASSWORD",
    "MQTT_AGENT_PASSWORD_FILE",
    "MQTT_TLS",
    "MQTT_CA_CERTS",
    "MQTT_CERTFILE",
    "MQTT_KEYFILE",
    "MQTT_VERSION",
    "MQTT_MAX_MESSAGE_SIZE",
    "MQTT_HTTP_PROXY",
    "MQTT_MAX_PUBLISH_RATE",
    "MQTT_MAX_BANDWIDTH",
    "MQTT_PROBE_INTERVAL",
    "MQTT_LINK_TIMEOUT",
    "MQTT_AUTHORIZED_KEYS",
    "MQTT_REVOKED_KEYS",
    "MQTT_IDENTITY",
];

/// A loopback port that was free a moment ago (bind port 0, read it, drop).
/// Servers started on it retry with a new port if they lose the race.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0 to find a free port")
        .port()
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// A name unique to this test process and call, usable as an MQTT node id,
/// an MQTT topic level and an ssh host name: `[a-z0-9-]` only.
pub fn unique_id(tag: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tag: String = tag
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(24)
        .collect();
    format!("{}-{}-{}", tag.trim_matches('-'), std::process::id(), n)
}

/// A node id and a topic prefix that no other test (or test process) uses.
pub struct Names {
    pub node: String,
    pub prefix: String,
}

/// Fresh [`Names`] for the test called `test`.
pub fn names(test: &str) -> Names {
    Names {
        node: format!("node-{}", unique_id(test)),
        prefix: format!("test-{}", unique_id(test)),
    }
}

/// Absolute path of `name`, looked up in PATH and then in the sbin
/// directories (which are not in a normal user's PATH on Debian).
pub fn find_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} not found in PATH or /usr/sbin; run scripts/test to install it")
        })
}

/// The name of the user running the tests (sshd logs in as this user).
pub fn current_user() -> &'static str {
    static USER: OnceLock<String> = OnceLock::new();
    USER.get_or_init(|| {
        let out = Command::new("id").arg("-un").output().expect("run id -un");
        assert!(out.status.success(), "id -un failed");
        String::from_utf8(out.stdout)
            .expect("user name is UTF-8")
            .trim()
            .to_owned()
    })
}

/// Whether the tests run as root (sshd then needs /run/sshd).
pub fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("run id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// Path of the `mqtt-proxy` binary built by cargo for this test run.
pub fn proxy_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mqtt-proxy")
}

/// Path of the `mqtt-proxy-agent` binary built by cargo for this test run.
pub fn agent_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mqtt-proxy-agent")
}

/// Quote `s` for a POSIX shell (unchanged if it needs no quoting).
pub fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-=:,+@%".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A path as a command-line argument (test paths are UTF-8).
pub fn path_arg(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// A directory of one test's own, `mqtt-proxy-TAG.XXXXXX` under the
/// temporary directory, removed when dropped.
pub fn scratch_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("mqtt-proxy-{tag}."))
        .tempdir()
        .expect("create test tempdir")
}
