//! The agent's clock of bulk sending, shared by the sessions of its one
//! broker connection (`FrameSink::asks_for_pads`).

use std::time::Duration;

use tokio::time::Instant;

#[cfg(doc)]
use super::FrameSink;

/// How recent a bulk chunk keeps the node's link counted as sending one
/// ([`FrameSink::asks_for_pads`]).
pub const BULK_LATELY: Duration = Duration::from_secs(1);

/// When any session of one broker connection last sent a bulk chunk: the
/// agent's sessions share one, so that a download in one session has the
/// others' peers pad their keystrokes (`stream::pad_ask`).
#[derive(Debug, Default)]
pub struct BulkClock(std::sync::Mutex<Option<Instant>>);

impl BulkClock {
    /// A bulk chunk went out at `now`.
    pub fn mark(&self, now: Instant) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
    }

    /// Whether a bulk chunk went out within [`BULK_LATELY`] of `now`.
    pub fn lately(&self, now: Instant) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| now.saturating_duration_since(t) < BULK_LATELY)
    }
}
