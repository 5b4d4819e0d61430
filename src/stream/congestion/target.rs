//! The queue the window aims for ([`Congestion::target`]): a share of a
//! far path's round trip, less over a near one, with each session's own
//! terms on top.

use std::time::Duration;

use super::{Congestion, MIN_CHUNK};

/// The queueing delay the window aims for: what a keystroke behind a copy
/// waits at the bottleneck. LEDBAT's 100 ms is for background traffic that
/// yields to everything else; here the copy is the user's own and the
/// keystroke must feel immediate (the issue allows 100 ms over idle in all).
/// Low enough that a keystroke waits under a tenth of a second with the
/// round trip's noise on top; high enough that the noise itself (a broker's
/// scheduling, a relay's pacing in 1,500-byte slices) is not taken for a
/// queue, and that the queue never drains between round trips of a path of
/// tens of milliseconds.
pub const QUEUE_TARGET: Duration = Duration::from_millis(25);

/// Over a far path the target is this share of the path's own round trip
/// ([`Congestion::target`]). Three quarters: since every full chunk asks
/// for an ack (`Stream::ack_request_for`), acks come one per chunk and the
/// link stays busy with less queue than a whole round trip. Over a 40 ms
/// paced path (`TUN=1 TCP_CC=cubic NODIRECT=1 scripts/bench-interactive`),
/// keystroke p99 during a copy up / down and the copies' share of the
/// link:
/// - 256 KiB/s: the whole round trip 145-146 / 128-132 ms, 0.88 / 0.87
///   (three runs); three quarters 127-131 / 115-120 ms, 0.87-0.88 / 0.87
///   (three runs); a half 108 / 117 ms, 0.86 / 0.84 (one run);
/// - 1 MiB/s: 93 / 99 ms, 0.89 / 0.89 (one run); 80 / 97-98 ms, 0.90 /
///   0.88 (two runs); 70 / 79 ms, 0.89 / 0.86 (one run).
///
/// With TCP end to end (`scripts/bench-wan`, 2 rounds) three quarters
/// kept 1.00 / 1.42 of direct scp up / down over 40 ms, 0.95 / 1.41 over
/// 200 ms.
pub const BASE_SHARE: f64 = 0.75;

/// The far target ([`Congestion::target`]) is a share of the base less
/// the time one of the smallest chunks takes at the link's rate, and this
/// share of the base at most. The base is the least round trip of a
/// chunk, and a drain's chunks are the smallest ([`MIN_CHUNK`]): on a
/// slow link their own time at the bottleneck is a large part of it (16
/// ms of 4 KiB at 256 KiB/s), and no part of the path the broker's TCP
/// must keep busy. A download at 256 KiB/s over a 40 ms path (traced,
/// `D=10 scripts/bench-interactive 262144`) had a base of 71 ms where a
/// keystroke's idle echo took 54, a far target of 61.5 ms, and the
/// keystrokes' p99 grew by 81.8-108.4 ms (the issue allows 100). At
/// `scripts/bench-wan`'s rates the chunk's time is a fraction of a
/// millisecond.
///
/// The link's rate is what all the sessions that drained at one moment
/// had before it, summed ([`DrainsTogether`](super::DrainsTogether)): the same for all of them.
/// At the session's own rate (the window over the latest round trip) the
/// slower session aimed lower and lost more of the link: in the model,
/// two downloads over 40 ms at 1 MiB/s split under 0.8 from 9 of 32
/// starts, two fast copies from 47 of 64. Half the base at most, whatever
/// a peer's lies make of the rate.
pub const CHUNK_TIME_SHARE: f64 = 0.5;

/// Over a near path (a round trip under this: one host, a LAN) the
/// target shrinks in proportion to the round trip ([`Congestion::target`]),
/// down to [`NEAR_TARGET`]. There is no slow link to keep busy there:
/// what the copy keeps in flight waits in the broker's and the agent's
/// socket buffers, which every session of the node shares, and on a
/// loopback broker ssh's own 2 MiB channel window, not [`QUEUE_TARGET`],
/// bounded it (round trips of 1-10 ms against a path of 0.2-0.4 ms; a
/// keystroke's p99 grew 9.3-9.7 ms under an upload, direct ssh's 1.9-2.4,
/// three runs of `scripts/bench-interactive`; with this and [`NEAR_TARGET`],
/// 4.0-6.1 ms against 1.2-3.2, six runs). From this round trip up, the
/// target is what it was. A relay paced to 1 MiB/s is about there (one
/// 4 KiB chunk alone takes 4 ms of it; its least samples were 3.7 ms, a
/// target of 23 ms, and 15 ms or more after the first drain); its
/// keystrokes and copies measured as before (8eb5ad5: p99 39 / 39 ms,
/// copies 0.97 / 0.96).
pub const NEAR_BASE: Duration = Duration::from_millis(4);

/// The least target, over the nearest paths (a base of 0.24 ms or less),
/// where the scheduling of two busy cores puts 1-10 ms into round trips
/// anyway. A copy through a loopback broker keeps its throughput with it
/// (`scripts/bench-ab` against 064ae36, 7 rounds, 256 MiB: up 0.92 -> 0.88
/// of direct scp by the medians, per round new/old 0.86-1.09, median
/// 1.03; down 0.81 -> 0.86; CPU per GiB 2.94 -> 2.96 and 3.02 -> 2.90).
pub const NEAR_TARGET: Duration = Duration::from_micros(1500);

/// Of the near target ([`QUEUE_TARGET`], or less over the nearest
/// paths), this share is each session's own: the time [`OWN_QUEUE`]
/// bytes take at the session's own rate, at most this share of the
/// target ([`Congestion::target`]). Each session
/// then aims at about the same bytes of its own in the queue, as TCP Vegas
/// and FAST TCP do, and the one with the larger share of the link is the
/// first to see the queue above its target. With one target shared by all,
/// the split hinged on each session's base round trip to within a
/// millisecond: a base a millisecond higher (a drain's samples differ by
/// that much) read the shared queue as under the target while the other
/// session read it as over, and kept the larger window for seconds (two
/// copies over a relay paced to 1 MiB/s: 3 pairs of 54 under 0.8 of each
/// other, two sessions' runs). In the model with noise on every round
/// trip (`congestion/tests/sim.rs`; 1 MiB/s, 1-2 ms each way, 0-2 ms of
/// noise, 40 starts each) the worst split went from 0.58-0.80 to
/// 0.76-0.85, and the queue's p99 from 52-59 ms to 41-46 ms (figures in
/// `docs/benchmarks.md`).
///
/// Not of the far target, the share of the base ([`BASE_SHARE`]) the
/// broker's TCP needs to keep busy, which takes over where it is the
/// larger (from a base of 17-33 ms, by the session's rate): at high rates
/// the own term is nothing, and a far target split the same way took
/// uploads with TCP end to end to 0.91-0.92 of direct scp over 40 and
/// 200 ms (`scripts/bench-wan`, a trial). On
/// loopback the own term is nothing at its rates, and [`NEAR_TARGET`]
/// holds up to a base of twice what it did.
pub const OWN_SHARE: f64 = 0.5;

/// The bytes of its own each session aims to keep queued at the
/// bottleneck (Vegas's α): one of the smallest chunks ([`OWN_SHARE`]).
/// 3.9 ms of a 1 MiB/s link: the own term is under its cap (12.5 ms of
/// a 25 ms target) for a session faster than about 320 KB/s.
pub const OWN_QUEUE: f64 = MIN_CHUNK as f64;

/// Over a far path, the time this many bytes take at the session's own
/// rate comes on top of the far target ([`Congestion::target`]): half of
/// [`OWN_QUEUE`]. The far target is not split as the near one is
/// ([`OWN_SHARE`]), so without this two copies over a far path had only
/// their base round trips to tell them apart, and there a base a
/// millisecond higher counts nearly twice, since the target is a share of
/// it. Two copies over a 40 ms path paced to 1 MiB/s (TUN, cubic) split
/// it under 0.8 of each other in 5 of 10 directions without it, 0 of 6
/// with it (same hour); in the model at 20 ms each way, 5 of 16 starts
/// before, none after.
///
/// Half, because a copy alone on a slow link pays it in full: at 256 KiB/s
/// it queues 7.7 ms more. With the whole [`OWN_QUEUE`] (12.5 ms there) the
/// keystrokes behind a copy up over that 40 ms path reached p99 143.0 ms,
/// against the limit of 143.6 ms; with half, 128.5-139.2 ms in
/// three runs. At `scripts/bench-wan`'s rates it is a fraction of a
/// millisecond.
///
/// It comes on top wherever the far target with it is the larger. Joining
/// the two instead (at most the far target's excess over the near one on
/// top) made the target grow twice as fast as the base where they meet,
/// which is where relay downloads' drains put the base (14-20 ms, traced):
/// relay downloads split under 0.8 in 3 of 6 runs (b1fd334: 2 of 7, this
/// variant 2 of 7, the same hours).
pub const FAR_OWN_QUEUE: f64 = OWN_QUEUE / 2.0;

impl Congestion {
    /// The queue aimed for now: [`QUEUE_TARGET`], or [`BASE_SHARE`] of
    /// the path's own round trip if that is longer; over a path nearer
    /// than [`NEAR_BASE`], less in proportion, at least [`NEAR_TARGET`]
    /// (unless it stalls: [`STALL_MEMORY`](super::STALL_MEMORY)).
    /// Over a far path the broker's TCP connection to the far end is
    /// ack-clocked: its own window grows only while it has data waiting to
    /// go, so the queue a copy needs grows with the round trip (a download
    /// over a 40 ms path with end to end TCP, `scripts/bench-wan`, when
    /// growth still counted only the bytes of sampled acks: 0.30 of direct
    /// scp at 25 ms, 0.43 at the path's round trip).
    ///
    /// Of a near target, [`OWN_SHARE`] is the session's own: the time
    /// [`OWN_QUEUE`] bytes take at its rate (the window over the latest
    /// round trip), at most that share. So the target is never above what
    /// it is for a session of a slow rate, and a fast session aims lower.
    /// A far target is not split (the broker's TCP needs it whole at high
    /// rates): the time [`FAR_OWN_QUEUE`] bytes take comes on top, at most
    /// the same cap. And it is a share of the path's round trip less the
    /// time of the chunk that measured it ([`CHUNK_TIME_SHARE`]).
    pub fn target(&self) -> Duration {
        let Some(base) = self.delay.base() else {
            return QUEUE_TARGET;
        };
        let near = if self.stalls.repeated() {
            1.0
        } else {
            base.as_secs_f64() / NEAR_BASE.as_secs_f64()
        };
        let near = QUEUE_TARGET.as_secs_f64() * near.min(1.0);
        // The latest round trip over the window: seconds per byte at the
        // session's rate (a lying peer's round trip of an hour meets the
        // cap; of zero, none).
        let per_byte = if self.own_terms {
            self.delay.latest().unwrap_or(base).as_secs_f64() / self.cwnd
        } else {
            0.0
        };
        let cap = near * OWN_SHARE;
        let near = near - cap + (OWN_QUEUE * per_byte).min(cap);
        let base = base.as_secs_f64();
        let own = (FAR_OWN_QUEUE * per_byte).min(cap);
        // The base is a chunk's round trip, so it holds the chunk's own
        // time at the bottleneck: the far target keeps the path busy, not
        // the chunk (CHUNK_TIME_SHARE). Only where the far target is the
        // larger (the drains' rate is behind a lock).
        let mut far = base * BASE_SHARE + own;
        if far > near && self.own_terms {
            let chunk = self.link_rate().map_or(0.0, |r| MIN_CHUNK as f64 / r);
            far -= chunk.min(base * CHUNK_TIME_SHARE) * BASE_SHARE;
        }
        Duration::from_secs_f64(near.max(far)).max(NEAR_TARGET)
    }

    /// The link's rate (bytes/s) as the drains of the session's latest
    /// drain's epoch saw it: the rates of all the sessions that drained
    /// then, summed ([`DrainsTogether`](super::DrainsTogether)). The same for every session of
    /// the link, so the far target it shortens ([`CHUNK_TIME_SHARE`]) does
    /// not favour the session with the larger share. None before a drain,
    /// and where drains are not shared.
    fn link_rate(&self) -> Option<f64> {
        let (Some(t), Some((epoch, _))) = (&self.together, self.drained_at) else {
            return None;
        };
        t.rate(epoch)
    }

    /// How far below the target `queue` is, as a share of the target
    /// (negative above it; 1 with no queue known).
    pub(super) fn off(&self, queue: Option<Duration>) -> f64 {
        let target = self.target().as_secs_f64();
        queue.map_or(1.0, |q| (target - q.as_secs_f64()) / target)
    }
}
