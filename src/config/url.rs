//! Broker URLs (`mqtt://`, `mqtts://`, `ws://`, `wss://`), HTTP proxy URLs,
//! the protocol version, and `HOST[:PORT]`.

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::secret::Secret;

/// The MQTT protocol version to speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MqttVersion {
    /// MQTT 5, or 3.1.1 when the broker refuses 5.
    #[default]
    Auto,
    /// MQTT 5 only.
    V5,
    /// MQTT 3.1.1 only.
    V311,
}

impl MqttVersion {
    /// `5` or `3.1.1` (what `--mqtt-version` and `mqtt-version` take).
    pub fn parse(s: &str) -> Result<MqttVersion> {
        match s.trim() {
            "5" | "5.0" => Ok(MqttVersion::V5),
            "3.1.1" => Ok(MqttVersion::V311),
            other => bail!("invalid MQTT version {other:?}: use 5 or 3.1.1"),
        }
    }
}

impl<'de> Deserialize<'de> for MqttVersion {
    /// A string (`"5"`, `"3.1.1"`) or the integer 5.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<MqttVersion, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = MqttVersion;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("5 or \"3.1.1\"")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<MqttVersion, E> {
                MqttVersion::parse(s).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<MqttVersion, E> {
                MqttVersion::parse(&n.to_string()).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// How MQTT is carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carrier {
    /// MQTT straight on TCP (or TLS).
    Tcp,
    /// MQTT over WebSocket at this HTTP path (`wss` when TLS is on).
    WebSocket { path: String },
}

/// Default WebSocket ports and path.
pub const PORT_WS: u16 = 80;
pub const PORT_WSS: u16 = 443;
pub const DEFAULT_WS_PATH: &str = "/mqtt";

/// A parsed broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: Option<u16>,
    pub tls: bool,
    pub carrier: Carrier,
}

impl BrokerUrl {
    pub fn parse(url: &str) -> Result<BrokerUrl> {
        let schemes = [
            ("mqtts://", true, false),
            ("mqtt://", false, false),
            ("wss://", true, true),
            ("ws://", false, true),
        ];
        let Some((tls, ws, rest)) = schemes
            .iter()
            .find_map(|(s, tls, ws)| url.strip_prefix(s).map(|r| (*tls, *ws, r)))
        else {
            bail!(
                "invalid broker URL {url:?}: expected mqtt://HOST[:PORT], mqtts://HOST[:PORT], \
                 ws://HOST[:PORT][/PATH] or wss://HOST[:PORT][/PATH]"
            );
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let carrier = if ws {
            if path.contains(['?', '#', ' ']) {
                bail!("invalid broker URL {url:?}: the WebSocket path may not hold '?', '#' or spaces");
            }
            let path = if path.is_empty() {
                DEFAULT_WS_PATH
            } else {
                path
            };
            Carrier::WebSocket {
                path: path.to_owned(),
            }
        } else {
            if !matches!(path, "" | "/") {
                bail!("invalid broker URL {url:?}: only ws:// and wss:// URLs have a path");
            }
            Carrier::Tcp
        };
        let (host, port) =
            split_host_port(authority).with_context(|| format!("invalid broker URL {url:?}"))?;
        Ok(BrokerUrl {
            host,
            port,
            tls,
            carrier,
        })
    }
}

/// An HTTP proxy for HTTP CONNECT, with its optional Basic credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpProxy {
    pub host: String,
    pub port: u16,
    pub credentials: Option<(String, Secret)>,
}

impl HttpProxy {
    /// `http://[USER:PASSWORD@]HOST:PORT[/]`; user and password may be
    /// percent-encoded.
    pub fn parse(url: &str) -> Result<HttpProxy> {
        let bad = || {
            format!(
                "invalid HTTP proxy URL {}: expected http://HOST:PORT",
                mask_userinfo(url)
            )
        };
        let rest = url.strip_prefix("http://").with_context(bad)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (host, port) = split_host_port(hostport).with_context(bad)?;
        let port = port.with_context(bad)?;
        let credentials = match userinfo {
            Some(u) => {
                let (user, password) = u.split_once(':').unwrap_or((u, ""));
                let user = percent_decode(user).with_context(bad)?;
                let password = percent_decode(password).with_context(bad)?;
                Some((user, Secret::new(password)))
            }
            None => None,
        };
        Ok(HttpProxy {
            host,
            port,
            credentials,
        })
    }
}

impl std::fmt::Display for HttpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Debug for HttpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .field("password", &self.credentials.as_ref().map(|(_, p)| p))
            .finish()
    }
}

/// `url` with any `user:password@` replaced by `***@`, for messages.
fn mask_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

/// Decode `%XX` escapes (RFC 3986 userinfo).
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
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
