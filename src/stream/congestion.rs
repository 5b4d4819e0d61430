//! The congestion window: how many bytes may be in flight (sent and neither
//! acknowledged nor presumed lost), and so how long the queue we build at
//! the path's bottleneck may grow.
//!
//! Delay-based, after LEDBAT (RFC 6817) and its revision LEDBAT++: the
//! smallest round trip seen lately is the path's own ([`DelayFilter`]);
//! what a round trip takes beyond it is queueing. The window grows while
//! the queue is below [`QUEUE_TARGET`] and shrinks in proportion to how
//! far the queue is above it, so a copy fills a slow link while a keystroke
//! behind it waits tens of milliseconds, not the seconds a deep buffer (a
//! cellular uplink, a DSL modem) holds. Loss still halves the window once
//! per window of data (RFC 5681), and a retransmission timeout drops it to
//! [`MIN_WINDOW`].
//!
//! Counted in bytes: a chunk is a quarter of the window or what the
//! delivery rate asks for, the larger ([`Congestion::chunk`],
//! [`super::rate::cut`]). Growth is additive in bytes ([`INCREASE`] per
//! round trip at most) and decrease multiplicative, which makes two copies
//! through one bottleneck converge on equal shares.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::protocol::{FRAME_OVERHEAD, MAX_CHUNK, MAX_INFLIGHT_CHUNKS};

mod delay;
mod drain;
mod stall;
mod together;
pub use delay::{DelayFilter, BASE_PERIOD};
pub use drain::epoch;
use drain::{doubt_slack, Drain, EPOCHS_PER_PERIOD};
pub use drain::{
    DOUBT_SHARE, DOUBT_SLACK, DRAIN_PERIOD, DRAIN_ROUND_TRIPS, EARLY_DRAINS, FIRST_DRAIN_PERIOD,
};
use stall::Stalls;
pub use stall::STALL_MEMORY;
pub use together::DrainsTogether;

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
/// had before it, summed ([`DrainsTogether`]): the same for all of them.
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

/// The smallest chunk a copy is cut into (a message of 4 KiB
/// with our header and tag): 16 ms of a 256 KiB/s link, and 64 bytes of
/// framing in 4,096 (1.6 %). Smaller would cost more in per-message
/// overhead (ours, MQTT's, the broker's) than a keystroke gains.
pub const MIN_CHUNK: usize = 4096 - FRAME_OVERHEAD;

/// The window's floor: two of the smallest chunks, so acknowledgements keep
/// coming while one is in flight. On the slowest links this, not the
/// queue target, bounds the queue (32 ms at 256 KiB/s).
pub const MIN_WINDOW: f64 = 2.0 * MIN_CHUNK as f64;

/// Window at start: four small chunks (16 ms of a 1 MiB/s link, 62 ms of a
/// 256 KiB/s one), so a copy starting beside a keystroke session puts at
/// most that much in front of it before the first round trip is measured.
/// (32 KiB put an echo 247 ms behind a copy's start at 256 KiB/s.)
pub const INITIAL_WINDOW: f64 = 16.0 * 1024.0;

/// The window's ceiling: as many full-size chunks as may be in flight.
pub const MAX_WINDOW: f64 = (MAX_INFLIGHT_CHUNKS as usize * MAX_CHUNK) as f64;

/// Chunks per window, at most: a chunk is at least a quarter of the
/// window ([`Congestion::chunk`]). Fewer, larger messages where the window
/// is large: a broker keeps at most 20 messages in flight to each client
/// (mosquitto), so over a far path small chunks are what limits. On a
/// slow link the window is small and so are its quarters; one chunk at
/// the bottleneck is a quarter of the queue target plus the path's round
/// trip.
pub const CHUNKS_PER_WINDOW: f64 = 4.0;

/// Growth per round trip with no queue at all (bytes); less as the queue
/// nears the target, down to [`LEAST_GAIN`] of it. Additive, independent
/// of the window, so that two copies converge on equal shares; one small
/// chunk per round trip.
pub const INCREASE: f64 = MIN_CHUNK as f64;

/// The least share of [`INCREASE`] the window grows by per round trip
/// below the target, however near it the queue is. Growth that fades to
/// nothing at the target (LEDBAT's) lets two copies settle just under it
/// with whatever shares they had: nothing ever shrinks them, and the
/// additive step that would even them out is gone. Half a step keeps the
/// queue crossing the target now and then, and the decrease there takes
/// more from the larger window (the model's two copies 10 s apart over
/// 50 ms each way, at four phases of the drains: 0.60-0.81 of each other
/// before 3e8ad64, 0.72-0.93 with this and that commit's drains).
pub const LEAST_GAIN: f64 = 0.5;

/// Growth per round trip while the queue stays under a quarter of the
/// target, as a share of the window, where that is more than
/// [`INCREASE`]: the link has room the additive step would take minutes
/// to fill over a far path (one `MIN_CHUNK` per 200 ms round trip: a
/// copy whose window a stalled broker connection had cut from 2 MB to
/// 0.5 MB would take over a minute to regrow it). A quarter of slow
/// start's doubling, as HyStart++'s conservative slow start (RFC 9406);
/// near the target growth is additive again, so shares still converge.
pub const ROOM_GROWTH: f64 = 0.25;

/// Most the window shrinks in one round trip for a queue above the target
/// (a share of the window): a queue at twice the target or more halves it.
pub const MAX_DECREASE: f64 = 0.5;

/// Bytes allowed in flight, and the slow-start and recovery state behind it.
#[derive(Debug, Clone)]
pub struct Congestion {
    /// The window (bytes).
    cwnd: f64,
    /// Slow-start threshold (bytes): below it the window doubles per round
    /// trip while the queue stays under three quarters of the target.
    ssthresh: f64,
    /// While recovering from a loss: the sequence number sent next when the
    /// loss was found. Further losses before it is acknowledged belong to
    /// the same window and do not halve again.
    recovery_until: Option<u64>,
    delay: DelayFilter,
    /// Bytes acknowledged since the last round-trip sample.
    unsampled: usize,
    /// The [`FIRST_DRAIN_PERIOD`] of the wall clock the latest sampled ack
    /// came in.
    epoch: Option<u64>,
    /// Drains begun (since the last reconnect; from [`EARLY_DRAINS`] on,
    /// the next waits for a [`DRAIN_PERIOD`]).
    drains: u8,
    /// The queue held the window back since the last drain.
    held_back: bool,
    drain: Option<Drain>,
    /// The last drain was not trusted and kept the base it had: it
    /// measured a longer round trip than before it, or was doubted
    /// ([`DOUBT_SLACK`]). The next drain is trusted.
    drain_failed: bool,
    /// A regular drain ([`Drain::regular`]) measured the base (since the
    /// last reconnect).
    regular_base: bool,
    /// Stalls of a near path ([`STALL_MEMORY`]).
    stalls: Stalls,
    /// The drains of the other sessions of this broker connection.
    together: Option<Arc<DrainsTogether>>,
    /// The epoch the last drain began in, and the base the session had
    /// after it, for [`DrainsTogether::base`] and for doubting the next
    /// drain ([`DOUBT_SLACK`]).
    drained_at: Option<(u64, Duration)>,
    /// Drains to tell the peer of (`together::Reports`).
    reports: Option<together::Reports>,
    /// The target has its own terms ([`OWN_QUEUE`], [`FAR_OWN_QUEUE`],
    /// [`CHUNK_TIME_SHARE`]); the window's rules are tested without them.
    own_terms: bool,
}

impl Default for Congestion {
    fn default() -> Self {
        Congestion::new()
    }
}

impl Congestion {
    /// [`INITIAL_WINDOW`] bytes, in slow start.
    pub fn new() -> Congestion {
        Congestion {
            cwnd: INITIAL_WINDOW,
            ssthresh: MAX_WINDOW,
            recovery_until: None,
            delay: DelayFilter::default(),
            unsampled: 0,
            epoch: None,
            drains: 0,
            held_back: false,
            drain: None,
            drain_failed: false,
            regular_base: false,
            stalls: Stalls::default(),
            together: None,
            drained_at: None,
            reports: None,
            own_terms: true,
        }
    }

    /// Take the base from the drains of the sessions that share
    /// `together` too ([`DrainsTogether`]).
    pub fn drain_with(&mut self, together: Arc<DrainsTogether>) {
        self.together = Some(together);
    }

    /// May more go while `in_flight` bytes are outstanding? (A chunk may
    /// take the window past its size by less than one chunk, as TCP's may.
    /// Where the round trip grows by itself when one message is alone in
    /// flight, a second chunk past the window is what keeps a path moving:
    /// see [`super::rate`].)
    pub fn allows(&self, in_flight: usize) -> bool {
        (in_flight as f64) < self.cwnd
    }

    /// The window in bytes.
    pub fn window(&self) -> f64 {
        self.cwnd
    }

    /// The slow-start threshold in bytes.
    pub fn ssthresh(&self) -> f64 {
        self.ssthresh
    }

    /// The first slow start has ended (on a queue, a loss or a timeout):
    /// the delivery rate is then the path's, not one that lags a window
    /// doubling each round trip ([`super::rate::LONGEST_CHUNK`]).
    pub fn slow_start_ended(&self) -> bool {
        self.ssthresh < MAX_WINDOW
    }

    /// Recovering from a loss (a further loss will not shrink the window).
    pub fn in_recovery(&self) -> bool {
        self.recovery_until.is_some()
    }

    /// A drain is under way: the window is at its floor until the drain
    /// has measured the path ([`DRAIN_PERIOD`]).
    pub fn draining(&self) -> bool {
        self.drain.is_some()
    }

    /// The delay estimates behind the window.
    pub fn delay(&self) -> &DelayFilter {
        &self.delay
    }

    /// The queue aimed for now: [`QUEUE_TARGET`], or [`BASE_SHARE`] of
    /// the path's own round trip if that is longer; over a path nearer
    /// than [`NEAR_BASE`], less in proportion, at least [`NEAR_TARGET`]
    /// (unless it stalls: [`STALL_MEMORY`]).
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
        let far = if base * BASE_SHARE + own <= near || !self.own_terms {
            base * BASE_SHARE + own
        } else {
            let chunk = self.link_rate().map_or(0.0, |r| MIN_CHUNK as f64 / r);
            (base - chunk.min(base * CHUNK_TIME_SHARE)) * BASE_SHARE + own
        };
        Duration::from_secs_f64(near.max(far)).max(NEAR_TARGET)
    }

    /// The link's rate (bytes/s) as the drains of the session's latest
    /// drain's epoch saw it: the rates of all the sessions that drained
    /// then, summed ([`DrainsTogether`]). The same for every session of
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
    fn off(&self, queue: Option<Duration>) -> f64 {
        let target = self.target().as_secs_f64();
        queue.map_or(1.0, |q| (target - q.as_secs_f64()) / target)
    }

    /// The smallest chunk the window asks for: a quarter of it, at least
    /// [`MIN_CHUNK`] and at most [`MAX_CHUNK`] (see [`CHUNKS_PER_WINDOW`];
    /// the delivery rate may ask for larger ones, and the message size
    /// limits apply on top).
    pub fn chunk(&self) -> usize {
        ((self.cwnd / CHUNKS_PER_WINDOW) as usize).clamp(MIN_CHUNK, MAX_CHUNK)
    }

    /// The cumulative ack moved to `ack`, acknowledging `acked` more bytes
    /// (`acked == 0`: no progress, nothing changes). `sample`: a round trip
    /// the peer answered at once, if this ack gives one; the window moves
    /// only on those, since a delayed acknowledgement would read as a
    /// queue. `limited`: the window was full when the ack came (an
    /// application or a peer window that sends less than the window allows
    /// does not grow it: RFC 7661).
    pub fn on_ack(
        &mut self,
        ack: u64,
        acked: usize,
        sample: Option<Duration>,
        limited: bool,
        now: Instant,
    ) {
        if acked == 0 {
            return;
        }
        if self.recovery_until.is_some_and(|r| ack >= r) {
            self.recovery_until = None;
        }
        // The window moves by all that was acknowledged since the last
        // sample, not only by what the sampled ack covered (most acks
        // carry no sample: with one per round trip, growth would be a
        // fraction of a chunk per round trip).
        self.unsampled += acked;
        let Some(rtt) = sample else {
            return;
        };
        self.delay.on_sample(rtt, now);
        if let (Some(t), Some((epoch, own))) = (&self.together, self.drained_at) {
            self.delay.lower_base(t.base(epoch, own), now);
        }
        let queue = self.delay.queue();
        let near = self.delay.base().is_some_and(|b| b < NEAR_BASE);
        let stall = near && queue.is_some_and(|q| q > QUEUE_TARGET);
        self.stalls.on_sample(stall, now);
        let acked = std::mem::take(&mut self.unsampled) as f64;
        let off = self.off(queue);
        let epoch = epoch(now);
        // A drain may start here: a new DRAIN_PERIOD, or for a session
        // that drained less than EARLY_DRAINS times, a new
        // FIRST_DRAIN_PERIOD.
        let early = self.drains < EARLY_DRAINS;
        let boundary = self.epoch.replace(epoch).is_some_and(|e| {
            e / EPOCHS_PER_PERIOD != epoch / EPOCHS_PER_PERIOD || (early && e != epoch)
        });
        if let Some(d) = &mut self.drain {
            d.least = d.least.min(rtt);
            if now < d.until {
                return;
            }
            // Drained: the base from the drain alone, and the window back
            // to what the session had in flight without its queue: the
            // window before, scaled by the drain's round trip over the one
            // before it (a latecomer that had taken another's queue for
            // the path comes back smaller). No slow start to it: regrowing
            // from the floor cost a lone copy four round trips of a half
            // idle link per drain. (Back to the whole window overshoots
            // the target, and the decrease that follows takes more from
            // the larger window: two copies at 0.58-0.60 of each other
            // in the model.)
            let d = self.drain.take().expect("draining");
            // A drain that measured a longer round trip than the one
            // before it did not empty the queue: a session that was not
            // held back (a latecomer in slow start) filled it meanwhile,
            // and the drain's least round trip holds that queue (the
            // model's two copies over 1 MiB/s, 1 ms each way: a base of
            // 42 ms where the path's is 8, and the latecomer at the floor
            // until the next drain). The base stays then, unless the drain
            // before failed too: the path got longer.
            //
            // A regular drain that measured well above the base a regular
            // drain measured is doubted too (DOUBT_SLACK). Either way a
            // base that a drain measured stays held: no sample below it
            // is taken until the next drain either.
            //
            // Doubted against the base the session's own drain left, not
            // one the others' drains lowered it to (DrainsTogether):
            // against that, sessions that saw a longer path at different
            // periods lowered each other's trusted drains in turns, for
            // as long as both lived.
            let emptied = d.least <= d.before;
            let left = self.drained_at.map(|(_, b)| b).or(self.delay.base());
            let doubted = self.regular_base && left.is_some_and(|b| d.least > b + doubt_slack(b));
            if (emptied && !doubted) || self.drain_failed {
                self.delay.restart_base(d.least, now);
                self.regular_base = d.regular;
                self.drain_failed = false;
            } else {
                self.drain_failed = true;
                self.delay.hold_base(now);
            }
            let before = d.before.as_secs_f64().max(f64::MIN_POSITIVE);
            if let (Some(t), Some(own)) = (&self.together, self.delay.base()) {
                let rate = d.window / before;
                t.offer(d.epoch, own, rate);
                self.drained_at = Some((d.epoch, own));
                if let Some(r) = &mut self.reports {
                    r.drained(d.epoch, own, rate);
                }
                self.delay.lower_base(t.base(d.epoch, own), now);
            }
            // (A round trip of zero before: a lying peer's; the floor.)
            let unqueued = d.window * d.least.as_secs_f64() / before;
            self.cwnd = unqueued.clamp(self.cwnd, d.window);
            self.ssthresh = self.cwnd;
            return;
        }
        if self.held_back && boundary {
            self.held_back = false;
            let regular = self.drains > 0;
            self.drains = self.drains.saturating_add(1);
            self.drain = Some(Drain {
                regular,
                until: now + rtt * DRAIN_ROUND_TRIPS,
                window: self.cwnd,
                before: self.delay.latest().unwrap_or(rtt),
                least: Duration::MAX,
                epoch,
            });
            self.cwnd = MIN_WINDOW;
            return;
        }
        if off < 0.25 && self.cwnd < self.ssthresh {
            // Slow start ends at three quarters of the target, on any
            // sample: one taken while the window was not full still shows
            // that the path takes no more (a download's start at 1 MiB/s
            // over 40 ms doubled past such samples to a queue of 195 ms
            // once the window was full again).
            self.ssthresh = self.cwnd;
        }
        if off < 0.0 {
            // Above the target: shrink in proportion to the excess, at most
            // by MAX_DECREASE of the window per window acknowledged; and
            // no more slow start.
            self.held_back = true;
            self.cwnd = (self.cwnd - acked * (-off).min(MAX_DECREASE)).max(MIN_WINDOW);
            self.ssthresh = self.ssthresh.min(self.cwnd);
        } else if !limited {
            // Something else held the sending back: no evidence the path
            // takes more.
        } else if self.cwnd < self.ssthresh && off >= 0.25 {
            // Slow start, up to the threshold (one ack may cover a whole
            // window: it would double past it). It ends on the smaller of
            // the two latest samples, as the decrease does; but it does not
            // double on a sample that alone shows the queue it ends at:
            // each doubling that waits for the second sample puts another
            // window into the queue (a download's start at 256 KiB/s over
            // 40 ms put 300 ms of queue in front of the keystrokes).
            let this_sample = self.delay.base().map(|b| rtt.saturating_sub(b));
            if self.slow_start_ended() || self.off(this_sample) >= 0.25 {
                self.cwnd = (self.cwnd + acked).min(self.ssthresh);
            }
        } else {
            let additive = INCREASE * off.max(LEAST_GAIN) * acked / self.cwnd;
            self.cwnd += if off >= 0.75 {
                additive.max(ROOM_GROWTH * acked)
            } else {
                additive
            };
        }
        self.cwnd = self.cwnd.clamp(MIN_WINDOW, MAX_WINDOW);
    }

    /// A chunk was found lost (a later one arrived first) while `next_seq`
    /// was the next sequence number to send. Outside recovery, halves the
    /// window (at least [`MIN_WINDOW`]) and starts recovery until
    /// `next_seq` is acknowledged; inside recovery, changes nothing.
    pub fn on_loss(&mut self, next_seq: u64) {
        if self.recovery_until.is_none() {
            self.ssthresh = (self.cwnd / 2.0).max(MIN_WINDOW);
            self.cwnd = self.ssthresh;
            self.recovery_until = Some(next_seq);
        }
    }

    /// The retransmission timeout fired with `in_flight` bytes outstanding:
    /// the threshold becomes half of them (at least [`MIN_WINDOW`]) and
    /// the window [`MIN_WINDOW`]. Recovery, if any, carries on.
    pub fn on_timeout(&mut self, in_flight: usize) {
        self.ssthresh = (in_flight as f64 / 2.0).max(MIN_WINDOW);
        self.cwnd = MIN_WINDOW;
    }

    /// The broker connection came back, perhaps over another network: the
    /// path's round trip is measured afresh.
    pub fn on_reconnect(&mut self) {
        self.delay.reset();
        self.stalls = Stalls::default();
        self.drained_at = None;
        self.drains = 0;
        self.regular_base = false;
    }
}

#[cfg(test)]
mod tests;
