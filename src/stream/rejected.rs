//! Why the stream refused a frame.

use crate::protocol::Kind;

/// A frame the stream refused, for the caller's debug log and counter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("frame for another session")]
    WrongSession,
    #[error("acknowledges chunk {ack} that was never sent (next is {next})")]
    AckBeyondSent { ack: u64, next: u64 },
    #[error("chunk {seq} outside the receive window")]
    OutsideWindow { seq: u64 },
    #[error("chunk {seq} after the peer's FIN")]
    AfterFin { seq: u64 },
    #[error("chunk {seq} would exceed the receive buffer")]
    BufferFull { seq: u64 },
    #[error("fragment of chunk {seq} says it is {total} bytes long, earlier ones {earlier}")]
    FragmentMismatch {
        seq: u64,
        total: usize,
        earlier: usize,
    },
    #[error("malformed fragment of chunk {seq}")]
    BadFragment { seq: u64 },
    #[error("chunk {seq} arrives in too many pieces")]
    TooFragmented { seq: u64 },
    #[error("{0:?} frame is not part of the stream")]
    NotStream(Kind),
}
