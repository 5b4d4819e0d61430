//! Which broker of a list the connection uses (issue 25), without I/O.
//!
//! The connection starts on the first broker and stays on the one it is on
//! for as long as that broker keeps it: a broker earlier in the list that
//! comes back is not a reason to move (no flapping back, which would cost
//! every session a stall for nothing). When the connection is lost, or an
//! attempt to connect fails, the next broker in the list is tried, wrapping
//! around, with the usual backoff between attempts; so an outage of every
//! broker tries them in turn. A failure that only changes the MQTT version
//! to try on the same broker (the MQTT 5 probe falling back to 3.1.1) is
//! not a broker failure.

/// What happened to the connection on the current broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Connected (CONNACK).
    Up,
    /// A connection that was up is lost (closed, or its link timed out).
    Lost,
    /// An attempt failed before a CONNACK.
    Failed,
    /// An attempt failed, and the same broker is tried again at once with
    /// another MQTT version.
    VersionFallback,
}

/// The broker in use, as an index into the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Failover {
    len: usize,
    current: usize,
}

impl Failover {
    /// A list of `len` brokers (at least one), starting with the first.
    pub(super) fn new(len: usize) -> Failover {
        Failover {
            len: len.max(1),
            current: 0,
        }
    }

    /// The broker in use (or being tried).
    pub(super) fn current(&self) -> usize {
        self.current
    }

    /// Note `outcome`; `Some(broker)` when the connection moves to another
    /// broker of the list.
    pub(super) fn on(&mut self, outcome: Outcome) -> Option<usize> {
        match outcome {
            Outcome::Up | Outcome::VersionFallback => None,
            Outcome::Lost | Outcome::Failed if self.len == 1 => None,
            Outcome::Lost | Outcome::Failed => {
                self.current = (self.current + 1) % self.len;
                Some(self.current)
            }
        }
    }
}

#[cfg(test)]
mod tests;
