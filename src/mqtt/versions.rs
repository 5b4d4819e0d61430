//! Which MQTT version each broker spoke, remembered across calls in the
//! user's cache directory: against a 3.1.1-only broker that never answers
//! an MQTT 5 CONNECT (amqtt, older brokers), every `mqtt-proxy` call paid
//! the MQTT 5 probe's timeout before falling back; now only the first does.
//!
//! A hint and never a source of errors: a missing, corrupt or unwritable
//! file is the same as no file. A broker that later refuses the remembered
//! version is probed again by the usual fallback (`VersionChoice`), and
//! what then works is remembered instead.

use std::path::{Path, PathBuf};

use crate::config::{Broker, Carrier};

/// The protocol version one event loop speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Version {
    V311,
    V5,
}

/// The file's name in the cache directory: one line per broker,
/// `KEY VERSION` (`5` or `3.1.1`).
const FILE: &str = "broker-versions";
/// Most brokers remembered; the oldest lines go first beyond it.
const MAX_ENTRIES: usize = 256;

/// The remembered versions, in one file.
#[derive(Debug, Clone)]
pub struct Remembered {
    path: PathBuf,
}

impl Remembered {
    /// In the user's cache directory (`$XDG_CACHE_HOME/mqtt-proxy`), if
    /// there is one.
    pub fn in_cache_dir() -> Option<Remembered> {
        directories::ProjectDirs::from("", "", "mqtt-proxy").map(|d| Remembered::at(d.cache_dir()))
    }

    /// In directory `dir`.
    pub fn at(dir: &Path) -> Remembered {
        Remembered {
            path: dir.join(FILE),
        }
    }

    /// The file's well-formed lines; none if it cannot be read.
    fn entries(&self) -> Vec<(String, Version)> {
        std::fs::read_to_string(&self.path)
            .map(|text| parse(&text))
            .unwrap_or_default()
    }

    /// The version remembered for `broker`, if any.
    pub(super) fn get(&self, broker: &Broker) -> Option<Version> {
        find(&self.entries(), &key(broker))
    }

    /// Remember that `broker` spoke `version` (best effort; the file is
    /// only written when that is news).
    pub(super) fn put(&self, broker: &Broker, version: Version) {
        let key = key(broker);
        let entries = self.entries();
        if find(&entries, &key) == Some(version) {
            return;
        }
        let mut entries: Vec<(String, Version)> =
            entries.into_iter().filter(|(k, _)| *k != key).collect();
        entries.push((key, version));
        let skip = entries.len().saturating_sub(MAX_ENTRIES);
        let mut out = String::new();
        for (k, v) in &entries[skip..] {
            out.push_str(&format!("{k} {}\n", name(*v)));
        }
        if let Err(e) = write(&self.path, &out) {
            tracing::debug!(file = %self.path.display(), error = %e,
                "could not remember the broker's MQTT version");
        }
    }
}

/// The latest version among `entries` for `key`.
fn find(entries: &[(String, Version)], key: &str) -> Option<Version> {
    entries
        .iter()
        .rev()
        .find_map(|(k, v)| (k == key).then_some(*v))
}

/// Write `text` to `path` whole: a temporary file renamed over it, so a
/// concurrent reader sees the old or the new file, never half of one.
fn write(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// A broker as its URL says it: how MQTT is carried, where, and through
/// which HTTP proxy (another route may reach another broker).
pub(super) fn key(b: &Broker) -> String {
    let scheme = match (&b.carrier, b.tls.is_some()) {
        (Carrier::Tcp, false) => "mqtt",
        (Carrier::Tcp, true) => "mqtts",
        (Carrier::WebSocket { .. }, false) => "ws",
        (Carrier::WebSocket { .. }, true) => "wss",
    };
    let path = match &b.carrier {
        Carrier::WebSocket { path } => path.as_str(),
        Carrier::Tcp => "",
    };
    let via = b
        .http_proxy
        .as_ref()
        .map(|p| format!(" via {}:{}", p.host, p.port))
        .unwrap_or_default();
    format!("{scheme}://{}{path}{via}", b.addr).replace(' ', "+")
}

fn name(v: Version) -> &'static str {
    match v {
        Version::V5 => "5",
        Version::V311 => "3.1.1",
    }
}

/// The well-formed lines of the file, in order; the rest is ignored.
fn parse(text: &str) -> Vec<(String, Version)> {
    text.lines()
        .filter_map(|line| {
            let (k, v) = line.split_once(' ')?;
            let v = match v.trim() {
                "5" => Version::V5,
                "3.1.1" => Version::V311,
                _ => return None,
            };
            (!k.is_empty()).then(|| (k.to_owned(), v))
        })
        .collect()
}

#[cfg(test)]
mod tests;
