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
mod target;
mod together;
pub use delay::{DelayFilter, BASE_PERIOD};
pub use drain::epoch;
use drain::{doubt_slack, Drain, EPOCHS_PER_PERIOD};
pub use drain::{
    DOUBT_SHARE, DOUBT_SLACK, DRAIN_PERIOD, DRAIN_ROUND_TRIPS, EARLY_DRAINS, FIRST_DRAIN_PERIOD,
};
use stall::Stalls;
pub use stall::STALL_MEMORY;
pub use target::{
    BASE_SHARE, CHUNK_TIME_SHARE, FAR_OWN_QUEUE, NEAR_BASE, NEAR_TARGET, OWN_QUEUE, OWN_SHARE,
    QUEUE_TARGET,
};
pub use together::DrainsTogether;

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
