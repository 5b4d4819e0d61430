//! Why a stream ended without a clean close.

use std::time::Duration;

/// Why a stream ended without a clean close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("the peer reset the session")]
    Reset,
    /// A reset that says why (the agent's `access revoked`).
    #[error("the peer closed the session: {0}")]
    Closed(String),
    #[error("no word from the peer for {0:?}")]
    PeerTimeout(Duration),
}

impl StreamError {
    /// The peer's RESET, with the reason its payload gives, if any.
    pub fn reset(payload: &[u8]) -> StreamError {
        if payload.is_empty() {
            StreamError::Reset
        } else {
            StreamError::Closed(String::from_utf8_lossy(payload).into_owned())
        }
    }
}
