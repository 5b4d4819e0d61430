//! The per-connection rate caps of hosted brokers (`--max-publish-rate`,
//! `--max-bandwidth`): parsing and validation. `mqtt::pacer` keeps to them.

use anyhow::{bail, Result};
use serde::Deserialize;

/// Smallest byte cap accepted: one largest frame (64 KiB) must go within a
/// second, or the session's timers (keepalive, acknowledgements) would wait
/// behind it for longer than the peer allows.
pub const MIN_BANDWIDTH: u64 = 64 * 1024;

/// A byte count as the config file may give it: `524288` or `"512K"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ByteCount {
    Number(u64),
    Text(String),
}

/// `BYTES[K|M]` per second: a whole number of bytes, or of KiB (K, ×1024)
/// or MiB (M, ×1,048,576); at least [`MIN_BANDWIDTH`].
pub fn parse_bandwidth(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, unit) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1024u64),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        _ => (t, 1),
    };
    let bad =
        || format!("invalid bandwidth {s:?}: use BYTES, or with K (KiB) or M (MiB), e.g. 512K");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let too_large = || format!("bandwidth {s:?} is too large");
    // All digits: parsing fails only on overflow.
    let n: u64 = digits.parse().map_err(|_| too_large())?;
    let bytes = n.checked_mul(unit).ok_or_else(too_large)?;
    check_bandwidth(bytes).map_err(|e| e.to_string())
}

fn check_bandwidth(bytes: u64) -> Result<u64> {
    if bytes < MIN_BANDWIDTH {
        bail!(
            "bandwidth {bytes} B/s is below the minimum of {MIN_BANDWIDTH} (64K): one largest \
             frame must go within a second"
        );
    }
    Ok(bytes)
}

/// The config file's `max-bandwidth`, validated.
pub fn file_bandwidth(v: &ByteCount) -> Result<u64> {
    let r = match v {
        ByteCount::Number(n) => check_bandwidth(*n).map_err(|e| e.to_string()),
        ByteCount::Text(s) => parse_bandwidth(s),
    };
    r.map_err(|e| anyhow::anyhow!("key 'max-bandwidth': {e}"))
}

/// The config file's `max-publish-rate`, validated.
pub fn file_publish_rate(n: u32) -> Result<u32> {
    if n == 0 {
        bail!("key 'max-publish-rate': must be at least 1");
    }
    Ok(n)
}
