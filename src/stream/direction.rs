//! Which way a session's bytes have been going lately: whether this end is
//! the receiver of a bulk transfer now, not over the whole session. One
//! ssh connection can carry an upload and then a download (a ControlMaster
//! connection carries every later session to the host): counted from the
//! start, the end that uploaded a gigabyte first would count as the sender
//! through the first four gigabytes of the download.

use std::time::Duration;

use tokio::time::Instant;

/// How many times more than it sent an end must have received lately to be
/// the bulk receiver: its small frames are then replies (sftp's status
/// replies and read requests, ssh's window adjustments) the sender waits for.
pub const RECEIVER_RATIO: u64 = 4;

/// "Lately": from the snapshot taken at least this long ago (one to two of
/// these). Five round trips of a 200 ms path, so one direction change shows
/// within two seconds.
pub const EPOCH: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Snapshot {
    at: Instant,
    sent: u64,
    received: u64,
}

/// Snapshots of the session's byte counters, taken when asked.
#[derive(Debug, Clone, Copy)]
pub struct Direction {
    older: Snapshot,
    newer: Snapshot,
}

impl Direction {
    pub fn new(now: Instant) -> Direction {
        let zero = Snapshot {
            at: now,
            sent: 0,
            received: 0,
        };
        Direction {
            older: zero,
            newer: zero,
        }
    }

    /// Whether `received` grew by at least [`RECEIVER_RATIO`] times what
    /// `sent` grew by (at least one byte) since the older snapshot, given
    /// the session's counters now.
    pub fn receiving(&mut self, now: Instant, sent: u64, received: u64) -> bool {
        if now.saturating_duration_since(self.newer.at) >= EPOCH {
            self.older = self.newer;
            self.newer = Snapshot {
                at: now,
                sent,
                received,
            };
        }
        let sent = sent - self.older.sent;
        let received = received - self.older.received;
        received >= RECEIVER_RATIO * sent.max(1)
    }
}

#[cfg(test)]
mod tests;
