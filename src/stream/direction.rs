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
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    #[test]
    fn the_receiver_of_a_bulk_transfer_is_receiving() {
        let t = Instant::now();
        let mut d = Direction::new(t);
        assert!(!d.receiving(t, 0, 0), "nothing either way");
        assert!(!d.receiving(t, 0, 3), "a few bytes are not a transfer");
        assert!(d.receiving(t, 0, 4));
        assert!(d.receiving(t, MB, 4 * MB));
        assert!(!d.receiving(t, MB, 4 * MB - 1));
    }

    #[test]
    fn a_download_after_an_upload_counts_within_two_epochs() {
        let t = Instant::now();
        let mut d = Direction::new(t);
        // A gigabyte up, asked about all along.
        let mut sent = 0;
        let mut received = 0;
        let mut now = t;
        for _ in 0..10 {
            now += EPOCH / 2;
            sent += 100 * MB;
            received += MB;
            assert!(!d.receiving(now, sent, received));
        }
        // Then a download at the same speed: receiving once the upload
        // has left the window, counted from the download's start, not
        // once it outweighs the whole upload four times over.
        let start = now;
        while !d.receiving(now, sent, received) {
            now += EPOCH / 10;
            sent += MB / 10;
            received += 10 * MB;
            assert!(now - start <= 2 * EPOCH + EPOCH / 10, "still the sender");
        }
        // And back: sending again within two epochs.
        let start = now;
        while d.receiving(now, sent, received) {
            now += EPOCH / 10;
            sent += 10 * MB;
            received += MB / 10;
            assert!(now - start <= 2 * EPOCH + EPOCH / 10, "still the receiver");
        }
    }

    #[test]
    fn asked_rarely_it_looks_back_further() {
        let t = Instant::now();
        let mut d = Direction::new(t);
        assert!(d.receiving(t + EPOCH, 0, 4 * MB));
        // Ten epochs later the older snapshot is the one from above, so
        // what came since counts: a megabyte each way is not receiving.
        assert!(!d.receiving(t + 10 * EPOCH, MB, 5 * MB));
    }
}
