//! REFUSE's payload: why an agent refused a session, in a code and a text
//! for humans.

use bytes::{BufMut, Bytes, BytesMut};

use super::limits::MAX_CONTROL_PAYLOAD;

/// Why an agent refused a session (first byte of a REFUSE payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RefuseCode {
    /// The agent could not connect to its target.
    Target = 1,
    /// The client failed the agent-password challenge.
    Auth = 2,
    /// Too many sessions, or too many open requests.
    Busy = 3,
    /// Incompatible or malformed request.
    Protocol = 4,
    /// The client's ssh keys do not open sessions on this node (issue 24):
    /// the reason is [`access::Denial`](crate::access::Denial)'s text.
    Access = 5,
}

/// Encode a REFUSE payload.
pub fn refuse_payload(code: RefuseCode, reason: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(1 + reason.len());
    b.put_u8(code as u8);
    b.extend_from_slice(clip(reason, MAX_CONTROL_PAYLOAD - 1).as_bytes());
    b.freeze()
}

/// `text`, cut on a char boundary to at most `max` bytes (reasons are
/// short in practice; this only bounds them).
pub fn clip(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A REFUSE payload's code byte (`None`: empty payload).
pub fn refuse_code(payload: &[u8]) -> Option<u8> {
    payload.first().copied()
}

/// Decode a REFUSE payload into its reason text (lossy: it is for humans).
pub fn refuse_reason(payload: &[u8]) -> String {
    match payload.split_first() {
        Some((_, text)) => String::from_utf8_lossy(text).into_owned(),
        None => "no reason given".to_owned(),
    }
}

#[cfg(test)]
mod tests;
