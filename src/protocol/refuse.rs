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
    let mut text = reason;
    while text.len() > MAX_CONTROL_PAYLOAD - 1 {
        // Truncate on a char boundary; reasons are short in practice.
        let mut end = MAX_CONTROL_PAYLOAD - 1;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text = &text[..end];
    }
    b.extend_from_slice(text.as_bytes());
    b.freeze()
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
