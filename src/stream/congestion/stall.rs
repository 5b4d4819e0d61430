//! Stalls of a near path: round trips far above its base, more than a
//! near path's queue should ever be (see [`STALL_MEMORY`]).

use std::time::Duration;

use tokio::time::Instant;

/// A near path ([`super::NEAR_BASE`]) that stalls again within this time
/// of its last stall aims at the target of a path that is not near
/// ([`super::Congestion::target`]), until it has not stalled for this
/// long. A stall: the two latest round trips both more than
/// [`super::QUEUE_TARGET`] above the base. Between two bridged
/// mosquittos on one host (`tests/bridge.rs`) the bridge's connection
/// holds a message's last segment while little is in flight (Nagle's
/// algorithm against the other broker's delayed ack): round trips of
/// 0.5-2 ms jump to 41-48 ms, in runs of one to five samples, every few
/// dozen samples. With the near target (1.5 ms there) the window stayed at
/// 85-345 KB, small enough to stall again and again. A 64 MiB scp up /
/// down, five rounds in turns, medians: 21.2 / 27.1 MB/s with the near
/// target whatever the stalls, 63.7 / 66.6 with this, 89.6 / 89.6 before
/// any window (e8134b8). A loopback broker's round trips under
/// a copy stay under 5 ms (traced, 8 copies of 256 MiB), but a busy
/// machine stalls now and then: under `scripts/bench-interactive`'s
/// loopback copies, one stall of 34 ms in 32,155 samples. Only a stall
/// that comes again counts, so such a moment leaves the near target
/// alone.
pub const STALL_MEMORY: Duration = Duration::from_secs(10);

/// Stalls seen, from round-trip samples.
#[derive(Debug, Clone, Default)]
pub(super) struct Stalls {
    /// The latest sample was a stall's.
    stalled: bool,
    /// The latest stalled sample.
    last: Option<Instant>,
    /// A stall began within [`STALL_MEMORY`] of the one before it, and the
    /// path has not gone that long without one since.
    repeated: bool,
}

impl Stalls {
    /// A sample at `now`; `stall`: the path stalled ([`STALL_MEMORY`]).
    pub(super) fn on_sample(&mut self, stall: bool, now: Instant) {
        let recent = self
            .last
            .is_some_and(|at| now.saturating_duration_since(at) <= STALL_MEMORY);
        if stall {
            self.repeated |= recent && !self.stalled;
            self.last = Some(now);
        } else if !recent {
            self.repeated = false;
        }
        self.stalled = stall;
    }

    /// The path stalls again and again ([`STALL_MEMORY`]).
    pub(super) fn repeated(&self) -> bool {
        self.repeated
    }
}

#[cfg(test)]
mod tests;
