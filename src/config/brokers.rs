//! Broker lists (issue 25): `--broker A,B`, the flag repeated,
//! `MQTT_BROKER` with commas and the config key `broker` as a string or an
//! array. Each entry is a broker URL with its own scheme, port, TLS and
//! path rules ([`BrokerUrl`]); the list is the order in which brokers are
//! tried.

use anyhow::{bail, Result};
use serde::Deserialize;

use super::url::{BrokerUrl, Carrier};
use super::BrokerAddr;
use crate::tls::TlsFiles;

/// The config key `broker`: one URL (commas allowed, as on the command
/// line) or an array of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerList(pub Vec<String>);

impl<'de> Deserialize<'de> for BrokerList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<BrokerList, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = BrokerList;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a broker URL or an array of them")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<BrokerList, E> {
                Ok(BrokerList(vec![s.to_owned()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<BrokerList, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(BrokerList(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parse the broker URLs of `values` (each may hold several, separated by
/// commas), in order. `what` names where they come from, for messages.
pub(super) fn parse_list(values: &[String], what: &str) -> Result<Vec<BrokerUrl>> {
    let mut urls = Vec::new();
    for value in values {
        for entry in value.split(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                bail!("{what}: empty entry in the broker list {value:?}");
            }
            urls.push(BrokerUrl::parse(entry)?);
        }
    }
    Ok(urls)
}

/// One broker of a list, resolved: where it is, TLS, and how MQTT is
/// carried.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: BrokerAddr,
    pub tls: Option<TlsFiles>,
    pub carrier: Carrier,
}

impl Endpoint {
    /// The broker as a URL, for messages and the listing's broker column:
    /// `mqtt://HOST:PORT`, `mqtts://…`, `ws://HOST:PORT/PATH`, `wss://…`.
    pub fn url(&self) -> String {
        let host = if self.addr.host.contains(':') {
            format!("[{}]", self.addr.host)
        } else {
            self.addr.host.clone()
        };
        let port = self.addr.port;
        match (&self.carrier, self.tls.is_some()) {
            (Carrier::Tcp, false) => format!("mqtt://{host}:{port}"),
            (Carrier::Tcp, true) => format!("mqtts://{host}:{port}"),
            (Carrier::WebSocket { path }, false) => format!("ws://{host}:{port}{path}"),
            (Carrier::WebSocket { path }, true) => format!("wss://{host}:{port}{path}"),
        }
    }
}

/// The first broker listed twice in `list` (after defaults are applied:
/// `mqtt://h` and `mqtt://h:1883` are one broker), as a URL.
pub(super) fn duplicate(list: &[Endpoint]) -> Option<String> {
    let urls: Vec<String> = list.iter().map(|e| e.url().to_lowercase()).collect();
    urls.iter()
        .enumerate()
        .find(|(i, u)| urls[..*i].contains(u))
        .map(|(i, _)| list[i].url())
}

#[cfg(test)]
mod tests;
