//! Command-line and environment settings shared by both binaries, and the
//! validated forms the rest of the code uses.
//!
//! Precedence: flag > environment variable > default.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::mqtt::BrokerAddr;
use crate::protocol::{valid_id, valid_prefix};

/// Broker options common to `mqtt-proxy` and `mqtt-proxy-agent`.
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerArgs {
    /// MQTT broker host name or address.
    #[arg(long, env = "MQTT_HOST", default_value = "localhost")]
    pub host: String,

    /// MQTT broker port.
    #[arg(long, env = "MQTT_PORT", default_value_t = 1883)]
    pub port: u16,

    /// User name for the broker (MQTT_USERNAME is accepted too).
    #[arg(long, env = "MQTT_USER")]
    pub user: Option<String>,

    /// File whose first line is the broker password. The password itself is
    /// only read from the MQTT_PASSWORD environment variable, never a flag.
    #[arg(long, env = "MQTT_PASSWORD_FILE", value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// Topic prefix shared by agents and clients.
    #[arg(long, env = "MQTT_TOPIC_PREFIX", default_value = "mqtt-proxy")]
    pub topic_prefix: String,

    /// Prefix of the MQTT client ids this program uses (brokers may tie ACLs
    /// to client ids).
    #[arg(long, env = "MQTT_CLIENT_ID_PREFIX", default_value = "mqtt-proxy-")]
    pub client_id_prefix: String,
}

/// A secret string whose `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Validated broker settings.
#[derive(Debug, Clone)]
pub struct Broker {
    pub addr: BrokerAddr,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub topic_prefix: String,
    pub client_id_prefix: String,
}

impl Broker {
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.user
            .as_deref()
            .map(|u| (u, self.password.as_ref().map_or("", |p| p.expose())))
    }
}

impl BrokerArgs {
    /// Validate and complete (environment fallbacks, password file).
    pub fn resolve(&self) -> Result<Broker> {
        if !valid_prefix(&self.topic_prefix) {
            bail!(
                "invalid --topic-prefix {:?}: use non-empty '/'-separated segments without '+' or '#'",
                self.topic_prefix
            );
        }
        if !self.client_id_prefix.is_empty() && !valid_id(&self.client_id_prefix) {
            bail!(
                "invalid --client-id-prefix {:?}: use letters, digits, '.', '_' and '-'",
                self.client_id_prefix
            );
        }
        let user = self
            .user
            .clone()
            .or_else(|| std::env::var("MQTT_USERNAME").ok())
            .filter(|u| !u.is_empty());
        let password = match &self.password_file {
            Some(path) => Some(read_password_file(path)?),
            None => std::env::var("MQTT_PASSWORD")
                .ok()
                .filter(|p| !p.is_empty())
                .map(Secret::new),
        };
        Ok(Broker {
            addr: BrokerAddr {
                host: self.host.clone(),
                port: self.port,
            },
            user,
            password,
            topic_prefix: self.topic_prefix.clone(),
            client_id_prefix: self.client_id_prefix.clone(),
        })
    }
}

/// Read a secret from the first line of a file that others cannot read.
pub fn read_password_file(path: &Path) -> Result<Secret> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read password file {}", path.display()))?;
    if meta.permissions().mode() & 0o004 != 0 {
        bail!(
            "password file {} is readable by others; run: chmod o-rwx {}",
            path.display(),
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read password file {}", path.display()))?;
    let line = text.lines().next().unwrap_or("").to_owned();
    if line.is_empty() {
        bail!("password file {} is empty", path.display());
    }
    Ok(Secret::new(line))
}

/// A random 64-bit value from the OS.
pub fn random_u64() -> u64 {
    getrandom::u64().expect("the OS random number generator is available")
}

/// Set up logging to stderr; `default` is the filter when RUST_LOG is unset.
pub fn init_logging(default: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn secret_debug_is_masked() {
        let b = Broker {
            addr: BrokerAddr {
                host: "h".into(),
                port: 1,
            },
            user: Some("u".into()),
            password: Some(Secret::new("hunter2".into())),
            topic_prefix: "p".into(),
            client_id_prefix: "c".into(),
        };
        let dbg = format!("{b:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("***"));
    }

    #[test]
    fn password_file_rules() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret\nignored\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_password_file(&p).unwrap().expose(), "s3cret");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_password_file(&p).unwrap_err().to_string();
        assert!(err.contains("readable by others"), "{err}");
        let missing = dir.path().join("nope");
        let err = format!("{:#}", read_password_file(&missing).unwrap_err());
        assert!(err.starts_with("cannot read password file"), "{err}");
    }
}
