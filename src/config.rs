//! Settings shared by both binaries: flags, environment variables, the
//! config file, and the validated forms the rest of the code uses.
//!
//! Precedence, for every setting: flag, then environment variable, then
//! config file, then default. A broker URL (`--broker`, `MQTT_BROKER`, `broker = "…"`) stands
//! for host, port and TLS at its own level; a more specific setting at the
//! same level wins over it. A list of several brokers (`--broker A,B`)
//! names each one's host, port and TLS in its URL.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

mod brokers;
mod caps;
mod file;
mod liveness;
mod secret;
mod url;

pub use brokers::{BrokerList, Endpoint};
pub use caps::{parse_bandwidth, ByteCount, MIN_BANDWIDTH};
pub use file::{FileConfig, Role};
#[cfg(test)]
use file::{AGENT_KEYS, PROXY_KEYS, SHARED_KEYS};
pub use liveness::Liveness;
pub use secret::Secret;
pub use url::{
    split_host_port, BrokerUrl, Carrier, HttpProxy, MqttVersion, DEFAULT_WS_PATH, PORT_WS, PORT_WSS,
};

use crate::protocol::{valid_id, valid_prefix, MIN_PACKET};
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

    // The brackets below are the help text's notation, not doc links.
    #[allow(rustdoc::broken_intra_doc_links)]
    /// Broker as a URL: mqtt://HOST[:PORT], mqtts://HOST[:PORT] (TLS),
    /// ws://HOST[:PORT][/PATH] or wss://… (MQTT over WebSocket; ports 80
    /// and 443, path /mqtt by default). Several, separated by commas or
    /// with the flag repeated, are tried in order: the agent stays on the
    /// first that answers until it fails, mqtt-proxy uses the one where the
    /// node is online.
    #[arg(long, env = "MQTT_BROKER", value_name = "URL[,URL…]", action = clap::ArgAction::Append)]
    pub broker: Vec<String>,

    /// MQTT protocol version: 5 or 3.1.1 [default: 5, falling back to
    /// 3.1.1 when the broker refuses 5].
    #[arg(long, env = "MQTT_VERSION", value_name = "5|3.1.1", value_parser = MqttVersion::parse)]
    pub mqtt_version: Option<MqttVersion>,

    /// Largest MQTT packet to publish, in bytes, topic and headers included
    /// (so either a broker's packet limit or its payload limit will do);
    /// frames never exceed 65,600 bytes plus the topic [default: 40,000,
    /// which suits mosquitto's memory use best, or less: the broker's
    /// announced Maximum Packet Size with MQTT 5, or what is discovered when
    /// large messages are lost].
    #[arg(long, env = "MQTT_MAX_MESSAGE_SIZE", value_name = "BYTES")]
    pub max_message_size: Option<u32>,

    /// Reach the broker through this HTTP proxy (HTTP CONNECT):
    /// http://HOST:PORT. Proxy credentials (http://USER:PASSWORD@HOST:PORT)
    /// are only read from MQTT_HTTP_PROXY or the config file, never a flag.
    #[arg(long, value_name = "URL")]
    pub http_proxy: Option<String>,

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
    /// outage, a sleeping laptop, a crashed client) before it is closed;
    /// time this program was stopped does not count [default: 600].
    #[arg(long, env = "MQTT_RESUME_TIMEOUT", value_name = "SECONDS")]
    pub resume_timeout: Option<u64>,

    /// Seconds the broker connection may be silent before it is probed; a
    /// link that died silently (a NAT that forgot it) is noticed within this
    /// plus --link-timeout. Longer saves idle bytes on metered links, see
    /// the README [default: 20].
    #[arg(long, env = "MQTT_PROBE_INTERVAL", value_name = "SECONDS")]
    pub probe_interval: Option<u64>,

    /// Seconds what we sent to the broker (data, a ping, a probe) may stay
    /// unacknowledged before the connection counts as dead and is replaced
    /// [default: 5].
    #[arg(long, env = "MQTT_LINK_TIMEOUT", value_name = "SECONDS")]
    pub link_timeout: Option<u64>,

    /// Most MQTT publishes per second on this program's broker connection,
    /// for hosted brokers that disconnect a client above theirs (AWS IoT
    /// Core: 100, EMQX Serverless: 10, Azure Event Grid: 1000). Publishes
    /// are paced to stay below it [default: no limit].
    #[arg(long, env = "MQTT_MAX_PUBLISH_RATE", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_publish_rate: Option<u32>,

    /// Most bytes per second on this program's broker connection: BYTES, or
    /// with K (KiB, ×1024) or M (MiB, ×1048576), e.g. 512K for AWS IoT
    /// Core, 1M for Azure Event Grid; at least 64K. Sending is paced to stay
    /// below it [default: no limit].
    #[arg(long, env = "MQTT_MAX_BANDWIDTH", value_name = "BYTES[K|M]",
          value_parser = parse_bandwidth)]
    pub max_bandwidth: Option<u64>,

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

/// Validated broker settings: the broker to try first (`addr`, `tls`,
/// `carrier`) and the others of its list (`failover`).
#[derive(Debug, Clone)]
pub struct Broker {
    pub addr: BrokerAddr,
    /// The brokers tried after this one, in order (a list of one: empty).
    pub failover: Vec<Endpoint>,
    /// TLS settings when TLS is on.
    pub tls: Option<TlsFiles>,
    /// TCP or WebSocket.
    pub carrier: Carrier,
    /// The HTTP proxy to tunnel through, if any.
    pub http_proxy: Option<HttpProxy>,
    pub mqtt_version: MqttVersion,
    /// `--max-message-size`: the largest MQTT packet we publish.
    pub max_message_size: Option<u32>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub topic_prefix: String,
    pub client_id_prefix: String,
    pub resume_timeout: std::time::Duration,
    /// Probe the broker connection after this long without traffic.
    pub probe_interval: std::time::Duration,
    /// Replace the broker connection when what we sent stays unacknowledged
    /// this long.
    pub link_timeout: std::time::Duration,
    /// Most publishes per second on the connection (`--max-publish-rate`).
    pub max_publish_rate: Option<u32>,
    /// Most bytes per second on the connection (`--max-bandwidth`).
    pub max_bandwidth: Option<u64>,
}

impl Broker {
    /// The first broker of the list.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            addr: self.addr.clone(),
            tls: self.tls.clone(),
            carrier: self.carrier.clone(),
        }
    }

    /// Every broker of the list, in order.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        std::iter::once(self.endpoint())
            .chain(self.failover.iter().cloned())
            .collect()
    }

    /// These settings on broker `e` alone (no failover).
    pub fn on(&self, e: &Endpoint) -> Broker {
        Broker {
            addr: e.addr.clone(),
            tls: e.tls.clone(),
            carrier: e.carrier.clone(),
            failover: Vec::new(),
            ..self.clone()
        }
    }

    /// Every broker of the list alone, in order.
    pub fn each(&self) -> Vec<Broker> {
        self.endpoints().iter().map(|e| self.on(e)).collect()
    }

    /// The list started at its `first`-th broker, the others following in
    /// the list's order, wrapping around.
    pub fn starting_at(&self, first: usize) -> Broker {
        let all = self.endpoints();
        let n = all.len();
        let mut b = self.on(&all[first % n]);
        b.failover = (1..n).map(|k| all[(first + k) % n].clone()).collect();
        b
    }

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
        let cli_urls = brokers::parse_list(&self.broker, "--broker")?;
        let file_urls = match &file.broker {
            Some(l) => brokers::parse_list(&l.0, "key 'broker'")?,
            None => Vec::new(),
        };
        if url_override.is_some() && cli_urls.len() > 1 {
            bail!(
                "NODE@HOST names one broker; it cannot be combined with a list of brokers \
                 (--broker, MQTT_BROKER)"
            );
        }
        // The list at the highest level that has one; NODE@HOST picks its
        // first broker's scheme and replaces its host.
        let mut pairs: Vec<(Option<&BrokerUrl>, Option<&BrokerUrl>)> = if !cli_urls.is_empty() {
            cli_urls.iter().map(|u| (Some(u), None)).collect()
        } else if !file_urls.is_empty() {
            file_urls.iter().map(|u| (None, Some(u))).collect()
        } else {
            vec![(None, None)]
        };
        if url_override.is_some() {
            pairs.truncate(1);
        }
        if pairs.len() > 1 {
            let one_broker = if cli_urls.is_empty() {
                file.host.is_some()
                    || file.port.is_some()
                    || self.host.is_some()
                    || self.port.is_some()
            } else {
                self.host.is_some() || self.port.is_some()
            };
            if one_broker {
                bail!(
                    "--host and --port (MQTT_HOST, MQTT_PORT, keys 'host' and 'port') name one \
                     broker: with a list of brokers, give each its host and port in its URL"
                );
            }
        }
        let user = self
            .user
            .clone()
            .or_else(|| env("MQTT_USERNAME"))
            .or_else(|| file.user.clone())
            .filter(|u| !u.is_empty());
        let in_list = pairs.len() > 1;
        let mut endpoints = Vec::with_capacity(pairs.len());
        for (cli_url, file_url) in pairs {
            let (host, port, tls, carrier) =
                self.endpoint(file, cli_url, file_url, url_override.clone(), in_list)?;
            endpoints.push(Endpoint {
                addr: BrokerAddr {
                    host,
                    port,
                    tls_trust: tls.as_ref().map(TlsFiles::trust),
                    login: user.is_some(),
                },
                tls,
                carrier,
            });
        }
        if let Some(url) = brokers::duplicate(&endpoints) {
            bail!("broker {url} is listed twice");
        }
        if in_list && endpoints.iter().all(|e| e.tls.is_none()) && self.tls_files(file).is_some() {
            bail!(
                "--ca-file, --cert-file and --key-file need TLS, but no broker of the list \
                 uses it: add --tls or use mqtts:// or wss:// broker URLs"
            );
        }
        let first = endpoints.remove(0);
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
        let env_password = env("MQTT_PASSWORD").filter(|p| !p.is_empty());
        let password = match (&self.password_file, env_password, &file.password_file) {
            (Some(path), _, _) => Some(read_password_file(path)?),
            (None, Some(p), _) => Some(Secret::new(p)),
            (None, None, Some(path)) => Some(read_password_file(path)?),
            (None, None, None) => None,
        };
        let http_proxy = match (&self.http_proxy, env("MQTT_HTTP_PROXY"), &file.http_proxy) {
            (Some(flag), _, _) => {
                let p = HttpProxy::parse(flag).context("--http-proxy")?;
                if p.credentials.is_some() {
                    bail!(
                        "--http-proxy: proxy credentials are not accepted on the command line \
                         (others can read it); put the URL in MQTT_HTTP_PROXY or the config \
                         file's http-proxy"
                    );
                }
                Some(p)
            }
            (None, Some(e), _) if !e.is_empty() => {
                Some(HttpProxy::parse(&e).context("MQTT_HTTP_PROXY")?)
            }
            (None, _, Some(f)) => Some(HttpProxy::parse(f).context("key 'http-proxy'")?),
            _ => None,
        };
        let mqtt_version = self.mqtt_version.or(file.mqtt_version).unwrap_or_default();
        let max_message_size = self.max_message_size.or(file.max_message_size);
        if let Some(n) = max_message_size.filter(|&n| (n as usize) < MIN_PACKET) {
            bail!("max message size {n} is too small: the least that works is {MIN_PACKET} bytes");
        }
        let liveness = Liveness::resolve(
            [self.probe_interval, self.link_timeout, self.resume_timeout],
            [file.probe_interval, file.link_timeout, file.resume_timeout],
        )?;
        let max_publish_rate = match self.max_publish_rate {
            Some(n) => Some(n),
            None => file
                .max_publish_rate
                .map(caps::file_publish_rate)
                .transpose()?,
        };
        let max_bandwidth = match self.max_bandwidth {
            Some(b) => Some(b),
            None => file
                .max_bandwidth
                .as_ref()
                .map(caps::file_bandwidth)
                .transpose()?,
        };
        Ok(Broker {
            addr: first.addr,
            failover: endpoints,
            tls: first.tls,
            carrier: first.carrier,
            http_proxy,
            mqtt_version,
            max_message_size,
            user,
            password,
            topic_prefix,
            client_id_prefix,
            resume_timeout: liveness.resume_timeout,
            probe_interval: liveness.probe_interval,
            link_timeout: liveness.link_timeout,
            max_publish_rate,
            max_bandwidth,
        })
    }

    /// The TLS files set (flags, then the file), if any.
    fn tls_files(&self, file: &FileConfig) -> Option<TlsFiles> {
        let files = TlsFiles {
            ca_file: self.ca_file.clone().or_else(|| file.ca_file.clone()),
            cert_file: self.cert_file.clone().or_else(|| file.cert_file.clone()),
            key_file: self.key_file.clone().or_else(|| file.key_file.clone()),
        };
        (files != TlsFiles::default()).then_some(files)
    }

    /// Host, port, TLS and carrier of one broker: the flags' URL
    /// `cli_url`, the file's `file_url`, the specific settings of each
    /// level and the per-call `url_override`. `in_list`: one broker of a
    /// list, where TLS files are for the brokers that use TLS and need not
    /// suit every one (checked for the whole list instead).
    fn endpoint(
        &self,
        file: &FileConfig,
        cli_url: Option<&BrokerUrl>,
        file_url: Option<&BrokerUrl>,
        url_override: Option<(String, Option<u16>)>,
        in_list: bool,
    ) -> Result<(String, u16, Option<TlsFiles>, Carrier)> {
        // Each level: its specific key, then its URL.
        let mut host = self
            .host
            .clone()
            .or_else(|| cli_url.map(|u| u.host.clone()))
            .or_else(|| file.host.clone())
            .or_else(|| file_url.map(|u| u.host.clone()))
            .unwrap_or_else(|| DEFAULT_HOST.to_owned());
        let tls_setting = self.tls.or(file.tls);
        let tls = self
            .tls
            .or(cli_url.map(|u| u.tls))
            .or(file.tls)
            .or(file_url.map(|u| u.tls))
            .unwrap_or(false);
        let tls_files = self.tls_files(file).unwrap_or_default();
        // In a list, TLS files alone say nothing about a plain broker.
        let files_ask_tls = !in_list && tls_files != TlsFiles::default();
        // The URL that names the broker decides how MQTT is carried.
        let url = cli_url.or(file_url);
        let carrier = url.map_or(Carrier::Tcp, |u| u.carrier.clone());
        if let Some(u) = url.filter(|u| u.carrier != Carrier::Tcp) {
            // A WebSocket URL says whether TLS is on; a TLS setting that
            // disagrees is a mistake, not something to resolve by precedence.
            let tls_asked = tls_setting == Some(true) || files_ask_tls;
            if !u.tls && tls_asked {
                bail!(
                    "a ws:// broker URL has no TLS, but TLS options are set (--tls, --ca-file, \
                     --cert-file, --key-file): use wss:// or drop them"
                );
            }
            if u.tls && tls_setting == Some(false) {
                bail!("a wss:// broker URL needs TLS, but TLS is turned off (--tls=false)");
            }
        }
        let tls = match &carrier {
            Carrier::WebSocket { .. } => url.is_some_and(|u| u.tls),
            Carrier::Tcp => tls,
        };
        if !tls && files_ask_tls {
            bail!("--ca-file, --cert-file and --key-file need TLS: add --tls or use an mqtts:// broker URL");
        }
        let default_port = match (&carrier, tls) {
            (Carrier::Tcp, false) => PORT_PLAIN,
            (Carrier::Tcp, true) => PORT_TLS,
            (Carrier::WebSocket { .. }, false) => PORT_WS,
            (Carrier::WebSocket { .. }, true) => PORT_WSS,
        };
        let mut port = self
            .port
            .or(cli_url.and_then(|u| u.port))
            .or(file.port)
            .or(file_url.and_then(|u| u.port))
            .unwrap_or(default_port);
        if let Some((h, p)) = url_override {
            host = h;
            if let Some(p) = p {
                port = p;
            }
        }
        if port == 0 {
            bail!("invalid port 0");
        }
        Ok((host, port, tls.then_some(tls_files), carrier))
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
