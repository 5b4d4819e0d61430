//! Settings shared by both binaries: flags, environment variables, the
//! config file, and the validated forms the rest of the code uses.
//!
//! Precedence, for every setting: flag, then environment variable, then
//! config file, then default. A broker URL (`--broker`, `MQTT_BROKER`, `broker = "…"`) stands
//! for host, port and TLS at its own level; a more specific setting at the
//! same level wins over it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::protocol::{valid_id, valid_prefix};
use crate::tls::TlsFiles;

/// Default MQTT ports.
pub const PORT_PLAIN: u16 = 1883;
pub const PORT_TLS: u16 = 8883;
pub const DEFAULT_HOST: &str = "localhost";
pub const DEFAULT_PREFIX: &str = "mqtt-proxy";
pub const DEFAULT_CLIENT_ID_PREFIX: &str = "mqtt-proxy-";

/// Broker options common to `mqtt-proxy` and `mqtt-proxy-agent`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BrokerArgs {
    /// Config file (TOML) [default: ~/.config/mqtt-proxy/config.toml for
    /// mqtt-proxy, /etc/mqtt-proxy/agent.toml for the agent].
    #[arg(long, env = "MQTT_PROXY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Broker as a URL: mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (TLS).
    #[arg(long, env = "MQTT_BROKER", value_name = "URL")]
    pub broker: Option<String>,

    /// MQTT broker host name or address [default: localhost].
    #[arg(long, env = "MQTT_HOST")]
    pub host: Option<String>,

    /// MQTT broker port [default: 1883, or 8883 with TLS].
    #[arg(long, env = "MQTT_PORT")]
    pub port: Option<u16>,

    /// User name for the broker (MQTT_USERNAME is accepted too).
    #[arg(long, env = "MQTT_USER")]
    pub user: Option<String>,

    /// File whose first line is the broker password. The password itself is
    /// only read from the MQTT_PASSWORD environment variable, never a flag.
    #[arg(long, env = "MQTT_PASSWORD_FILE", value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// Topic prefix shared by agents and clients [default: mqtt-proxy].
    #[arg(long, env = "MQTT_TOPIC_PREFIX")]
    pub topic_prefix: Option<String>,

    /// Prefix of the MQTT client ids this program uses [default: mqtt-proxy-].
    #[arg(long, env = "MQTT_CLIENT_ID_PREFIX")]
    pub client_id_prefix: Option<String>,

    /// Seconds a session survives without hearing from its peer (broker
    /// outage, peer killed) before it is closed [default: 60].
    #[arg(long, env = "MQTT_RESUME_TIMEOUT", value_name = "SECONDS")]
    pub resume_timeout: Option<u64>,

    /// Connect with TLS (default port 8883), verifying the broker's
    /// certificate and host name. MQTT_TLS=1 or --tls.
    #[arg(long, env = "MQTT_TLS", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new(), value_name = "BOOL")]
    pub tls: Option<bool>,

    /// PEM file of CA certificates to trust instead of the system's.
    #[arg(long, env = "MQTT_CA_CERTS", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// PEM client certificate for mutual TLS (with --key-file).
    #[arg(long, env = "MQTT_CERTFILE", value_name = "FILE")]
    pub cert_file: Option<PathBuf>,

    /// PEM private key of the client certificate (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "MQTT_KEYFILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,

    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Less log output (errors only); RUST_LOG overrides.
    #[arg(short, long)]
    pub quiet: bool,
}

/// The config file. Every key has a flag and an environment variable of the
/// same name (`topic-prefix` = `--topic-prefix`). Agent-only keys are
/// refused in the proxy's file and vice versa.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub broker: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub topic_prefix: Option<String>,
    pub client_id_prefix: Option<String>,
    pub resume_timeout: Option<u64>,
    pub tls: Option<bool>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub agent_password_file: Option<PathBuf>,
    // Agent only.
    pub node_id: Option<String>,
    pub target: Option<String>,
    pub max_sessions: Option<usize>,
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
            ] {
                if set {
                    bail!("key '{key}' is only valid in the agent's config file");
                }
            }
        }
        Ok(cfg)
    }
}

/// Config file keys both binaries accept (the fields of [`FileConfig`]).
const SHARED_KEYS: &[&str] = &[
    "broker",
    "host",
    "port",
    "user",
    "password-file",
    "topic-prefix",
    "client-id-prefix",
    "resume-timeout",
    "tls",
    "ca-file",
    "cert-file",
    "key-file",
    "agent-password-file",
];
/// Config file keys only the agent accepts.
const AGENT_KEYS: &[&str] = &["node-id", "target", "max-sessions"];

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
        if role == Role::Agent {
            known.extend_from_slice(AGENT_KEYS);
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

/// A parsed broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: Option<u16>,
    pub tls: bool,
}

impl BrokerUrl {
    pub fn parse(url: &str) -> Result<BrokerUrl> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else {
            bail!("invalid broker URL {url:?}: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]");
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) =
            split_host_port(rest).with_context(|| format!("invalid broker URL {url:?}"))?;
        Ok(BrokerUrl { host, port, tls })
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
pub fn split_host_port(s: &str) -> Result<(String, Option<u16>)> {
    let (host, port) = if let Some(r) = s.strip_prefix('[') {
        let (h, after) = r.split_once(']').context("missing ']'")?;
        (h, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (s, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', '?', '#']) {
        bail!("invalid host {host:?}");
    }
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .with_context(|| format!("invalid port {p:?}"))?,
        ),
        None => None,
    };
    Ok((host.to_owned(), port))
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

/// Where the broker is, for messages.
#[derive(Debug, Clone)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
    /// With TLS: what we trust, for error messages.
    pub tls_trust: Option<String>,
    /// Whether we log in with a user name (turns "not authorized" into a
    /// message about credentials).
    pub login: bool,
}

impl std::fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Validated broker settings.
#[derive(Debug, Clone)]
pub struct Broker {
    pub addr: BrokerAddr,
    /// TLS settings when TLS is on.
    pub tls: Option<TlsFiles>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub topic_prefix: String,
    pub client_id_prefix: String,
    pub resume_timeout: std::time::Duration,
}

impl Broker {
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.user
            .as_deref()
            .map(|u| (u, self.password.as_ref().map_or("", |p| p.expose())))
    }
}

impl BrokerArgs {
    /// Merge flags/environment with the config file and defaults, and
    /// validate. `url_override` is a per-call broker (`node@host:port`).
    pub fn resolve(
        &self,
        file: &FileConfig,
        url_override: Option<(String, Option<u16>)>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Broker> {
        let cli_url = self.broker.as_deref().map(BrokerUrl::parse).transpose()?;
        let file_url = file.broker.as_deref().map(BrokerUrl::parse).transpose()?;
        // Each level: its specific key, then its URL.
        let mut host = self
            .host
            .clone()
            .or_else(|| cli_url.as_ref().map(|u| u.host.clone()))
            .or_else(|| file.host.clone())
            .or_else(|| file_url.as_ref().map(|u| u.host.clone()))
            .unwrap_or_else(|| DEFAULT_HOST.to_owned());
        let tls = self
            .tls
            .or(cli_url.as_ref().map(|u| u.tls))
            .or(file.tls)
            .or(file_url.as_ref().map(|u| u.tls))
            .unwrap_or(false);
        let tls_files = TlsFiles {
            ca_file: self.ca_file.clone().or_else(|| file.ca_file.clone()),
            cert_file: self.cert_file.clone().or_else(|| file.cert_file.clone()),
            key_file: self.key_file.clone().or_else(|| file.key_file.clone()),
        };
        if !tls && tls_files != TlsFiles::default() {
            bail!("--ca-file, --cert-file and --key-file need TLS: add --tls or use an mqtts:// broker URL");
        }
        let mut port = self
            .port
            .or(cli_url.as_ref().and_then(|u| u.port))
            .or(file.port)
            .or(file_url.as_ref().and_then(|u| u.port))
            .unwrap_or(if tls { PORT_TLS } else { PORT_PLAIN });
        if let Some((h, p)) = url_override {
            host = h;
            if let Some(p) = p {
                port = p;
            }
        }
        if port == 0 {
            bail!("invalid port 0");
        }
        let topic_prefix = self
            .topic_prefix
            .clone()
            .or_else(|| file.topic_prefix.clone())
            .unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
        if !valid_prefix(&topic_prefix) {
            bail!(
                "invalid topic prefix {topic_prefix:?}: use non-empty '/'-separated segments without '+' or '#'"
            );
        }
        let client_id_prefix = self
            .client_id_prefix
            .clone()
            .or_else(|| file.client_id_prefix.clone())
            .unwrap_or_else(|| DEFAULT_CLIENT_ID_PREFIX.to_owned());
        if !client_id_prefix.is_empty() && !valid_id(&client_id_prefix) {
            bail!(
                "invalid client id prefix {client_id_prefix:?}: use letters, digits, '.', '_' and '-'"
            );
        }
        let user = self
            .user
            .clone()
            .or_else(|| env("MQTT_USERNAME"))
            .or_else(|| file.user.clone())
            .filter(|u| !u.is_empty());
        let env_password = env("MQTT_PASSWORD").filter(|p| !p.is_empty());
        let password = match (&self.password_file, env_password, &file.password_file) {
            (Some(path), _, _) => Some(read_password_file(path)?),
            (None, Some(p), _) => Some(Secret::new(p)),
            (None, None, Some(path)) => Some(read_password_file(path)?),
            (None, None, None) => None,
        };
        let resume = self.resume_timeout.or(file.resume_timeout).unwrap_or(60);
        if resume == 0 {
            bail!("resume timeout must be at least 1 second");
        }
        Ok(Broker {
            addr: BrokerAddr {
                host,
                port,
                tls_trust: tls.then(|| tls_files.trust()),
                login: user.is_some(),
            },
            tls: tls.then_some(tls_files),
            user,
            password,
            topic_prefix,
            client_id_prefix,
            resume_timeout: std::time::Duration::from_secs(resume),
        })
    }

    /// The log filter when RUST_LOG is unset.
    pub fn log_filter(&self, default: &'static str) -> &'static str {
        match (self.quiet, self.verbose) {
            (true, _) => "error",
            (false, 0) => default,
            (false, 1) => "debug",
            (false, _) => "trace",
        }
    }
}

/// The agent password: `--agent-password-file`, then MQTT_AGENT_PASSWORD,
/// then the config file's `agent-password-file`.
pub fn agent_password(
    flag_file: Option<&Path>,
    file: &FileConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Secret>> {
    if let Some(p) = flag_file {
        return read_password_file(p).map(Some);
    }
    if let Some(p) = env("MQTT_AGENT_PASSWORD").filter(|p| !p.is_empty()) {
        return Ok(Some(Secret::new(p)));
    }
    file.agent_password_file
        .as_deref()
        .map(read_password_file)
        .transpose()
}

/// The process environment, for [`BrokerArgs::resolve`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
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

#[cfg(test)]
mod tests;
