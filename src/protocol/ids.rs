//! Ids: node ids, client ids and topic prefixes, which go into topics, and
//! random ids.

/// A random 64-bit value from the OS: session ids, and the random part of
/// client ids and agent instance ids.
pub fn random_u64() -> u64 {
    getrandom::u64().expect("the OS random number generator is available")
}

/// Longest node id or client id we accept: fits any broker's topic and
/// client-id limits.
pub const MAX_ID_LEN: usize = 64;

/// Node ids and client ids: letters, digits, `.`, `_`, `-`; never empty.
/// This keeps MQTT wildcards and separators (`+ # /`) out of topics.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// A topic prefix: non-empty segments with no wildcards, no leading or
/// trailing `/`.
pub fn valid_prefix(s: &str) -> bool {
    !s.is_empty()
        && s.split('/')
            .all(|seg| !seg.is_empty() && !seg.contains(['+', '#', '\0']))
}

#[cfg(test)]
mod tests;
