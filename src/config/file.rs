//! The config file: TOML keys, which binary may use which, and error
//! messages that name the file, the line and the key.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::caps::ByteCount;
use super::url::MqttVersion;

/// The config file. Every key has a flag and an environment variable of the
/// same name (`topic-prefix` = `--topic-prefix`). Agent-only keys are
/// refused in the proxy's file and vice versa.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub broker: Option<super::brokers::BrokerList>,
    pub mqtt_version: Option<MqttVersion>,
    pub max_message_size: Option<u32>,
    pub http_proxy: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub topic_prefix: Option<String>,
    pub client_id_prefix: Option<String>,
    pub resume_timeout: Option<u64>,
    pub probe_interval: Option<u64>,
    pub link_timeout: Option<u64>,
    pub max_publish_rate: Option<u32>,
    pub max_bandwidth: Option<ByteCount>,
    pub tls: Option<bool>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub agent_password_file: Option<PathBuf>,
    // Agent only.
    pub node_id: Option<String>,
    pub target: Option<String>,
    pub max_sessions: Option<usize>,
    pub authorized_keys: Option<PathBuf>,
    pub revoked_keys: Option<PathBuf>,
    // Proxy only.
    pub identity: Option<PathBuf>,
}

/// Which binary reads the file (for key checks and the default path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Proxy,
    Agent,
}

impl Role {
    /// The default config file path.
    pub fn default_config(self) -> Option<PathBuf> {
        match self {
            Role::Agent => Some(PathBuf::from("/etc/mqtt-proxy/agent.toml")),
            Role::Proxy => directories::ProjectDirs::from("", "", "mqtt-proxy")
                .map(|d| d.config_dir().join("config.toml")),
        }
    }
}

impl FileConfig {
    /// Load `explicit` (must exist) or the role's default file (may be
    /// absent).
    pub fn load(explicit: Option<&Path>, role: Role) -> Result<FileConfig> {
        let (path, required) = match explicit {
            Some(p) => (p.to_path_buf(), true),
            None => match role.default_config() {
                Some(p) => (p, false),
                None => return Ok(FileConfig::default()),
            },
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(FileConfig::default())
            }
            Err(e) => bail!("cannot read config file {}: {e}", path.display()),
        };
        FileConfig::parse(&text, role).with_context(|| format!("config file {}", path.display()))
    }

    /// Parse and check the keys for `role`.
    pub fn parse(text: &str, role: Role) -> Result<FileConfig> {
        let cfg: FileConfig = toml::from_str(text).map_err(|e| toml_error(text, &e, role))?;
        if role == Role::Proxy {
            for (key, set) in [
                ("node-id", cfg.node_id.is_some()),
                ("target", cfg.target.is_some()),
                ("max-sessions", cfg.max_sessions.is_some()),
                ("authorized-keys", cfg.authorized_keys.is_some()),
                ("revoked-keys", cfg.revoked_keys.is_some()),
            ] {
                if set {
                    bail!("key '{key}' is only valid in the agent's config file");
                }
            }
        }
        if role == Role::Agent && cfg.identity.is_some() {
            bail!("key 'identity' is only valid in mqtt-proxy's config file");
        }
        Ok(cfg)
    }
}

/// Config file keys both binaries accept (the fields of [`FileConfig`]).
pub(super) const SHARED_KEYS: &[&str] = &[
    "broker",
    "mqtt-version",
    "max-message-size",
    "http-proxy",
    "host",
    "port",
    "user",
    "password-file",
    "topic-prefix",
    "client-id-prefix",
    "resume-timeout",
    "probe-interval",
    "link-timeout",
    "max-publish-rate",
    "max-bandwidth",
    "tls",
    "ca-file",
    "cert-file",
    "key-file",
    "agent-password-file",
];
/// Config file keys only the agent accepts.
pub(super) const AGENT_KEYS: &[&str] = &[
    "node-id",
    "target",
    "max-sessions",
    "authorized-keys",
    "revoked-keys",
];
/// Config file keys only mqtt-proxy accepts.
pub(super) const PROXY_KEYS: &[&str] = &["identity"];

/// One line naming the line and the key, instead of toml's multi-line
/// snippet: `line 3: unknown key 'hots' (known: …)`,
/// `line 1: key 'port': invalid type: string "x", expected u16`.
fn toml_error(text: &str, e: &toml::de::Error, role: Role) -> anyhow::Error {
    let line_no = e
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    let msg = e.message().trim().replace('\n', " ");
    let what = if let Some(rest) = msg.strip_prefix("unknown field `") {
        let key = rest.split('`').next().unwrap_or_default();
        let mut known = SHARED_KEYS.to_vec();
        match role {
            Role::Agent => known.extend_from_slice(AGENT_KEYS),
            Role::Proxy => known.extend_from_slice(PROXY_KEYS),
        }
        format!("unknown key '{key}' (known: {})", known.join(", "))
    } else {
        let key = line_no
            .and_then(|n| text.lines().nth(n - 1))
            .and_then(|l| l.split_once('='))
            .map(|(k, _)| k.trim().trim_matches('"'))
            .filter(|k| !k.is_empty());
        match key {
            Some(k) => format!("key '{k}': {msg}"),
            None => msg,
        }
    };
    match line_no {
        Some(n) => anyhow::anyhow!("line {n}: {what}"),
        None => anyhow::anyhow!("{what}"),
    }
}

#[cfg(test)]
mod tests;
