//! The window against a model bottleneck, without I/O: a link of fixed
//! rate with an unbounded first-in first-out buffer in front of it (the
//! deep buffer of a cellular uplink), a fixed delay each way, and senders
//! whose every chunk the receiver acknowledges at once. Time moves in
//! steps of one millisecond.

use std::collections::VecDeque;

use super::*;
use crate::stream::rate::{DeliveryRate, SendSnapshot};

const STEP: Duration = Duration::from_millis(1);

/// One sender.
struct Flow {
    cc: Congestion,
    /// Cuts the chunks, as the tunnel's sessions do.
    rate: DeliveryRate,
    /// Chunks sent and not yet acknowledged: (seq, bytes, sent at).
    in_flight: VecDeque<(u64, usize, Instant, SendSnapshot)>,
    pipe: usize,
    next: u64,
    /// Starts sending at this time.
    start: Instant,
    /// Bytes delivered across the link.
    delivered: u64,
    /// Reports every round trip as zero (a peer that acknowledges before
    /// it receives).
    liar: bool,
}

/// The path: the link, the chunks queued in front of it and in transit.
pub(super) struct Path {
    rate: f64,
    one_way: Duration,
    flows: Vec<Flow>,
    /// Chunks on their way to the link, or queued at it: (arrives, flow,
    /// seq, bytes left).
    queue: VecDeque<(Instant, usize, u64, f64)>,
    /// Acknowledgements on their way back: (arrives, flow, seq).
    acks: VecDeque<(Instant, usize, u64)>,
    now: Instant,
    t0: Instant,
    /// Queueing delay (seconds) at every step since the last `run`.
    pub(super) queue_delays: Vec<f64>,
    /// Noise: each acknowledgement comes this much later on average
    /// (seconds, exponentially distributed), as the scheduling of busy
    /// processes and a relay's pacing delay them.
    noise: f64,
    /// The noise's generator (xorshift64).
    seed: u64,
    /// The flows share their drains, as an agent's sessions do
    /// ([`Path::together`]).
    together: Option<std::sync::Arc<DrainsTogether>>,
}

impl Path {
    /// A link of `rate` bytes/s with `one_way` of delay each way.
    pub(super) fn new(rate: f64, one_way: Duration) -> Path {
        // Start on a drain boundary of the wall clock (`epoch`), so that
        // every run sees the drains at the same steps: the outcome
        // otherwise depends on when the test runs.
        let t0 = super::drain_boundary();
        Path {
            rate,
            one_way,
            flows: Vec::new(),
            queue: VecDeque::new(),
            acks: VecDeque::new(),
            now: t0,
            t0,
            queue_delays: Vec::new(),
            noise: 0.0,
            seed: 1,
            together: None,
        }
    }

    /// A sender that starts `after` the beginning; its index.
    pub(super) fn flow(&mut self, after: Duration, liar: bool) -> usize {
        let mut cc = Congestion::new();
        if let Some(t) = &self.together {
            cc.drain_with(t.clone());
        }
        self.flows.push(Flow {
            cc,
            rate: DeliveryRate::default(),
            in_flight: VecDeque::new(),
            pipe: 0,
            next: 0,
            start: self.t0 + after,
            delivered: 0,
            liar,
        });
        self.flows.len() - 1
    }

    /// Flows added from now on share their drains ([`DrainsTogether`]):
    /// the sessions of one agent, sending through its one connection.
    pub(super) fn together(&mut self) {
        self.together = Some(Default::default());
    }

    pub(super) fn cc(&mut self, flow: usize) -> &mut Congestion {
        &mut self.flows[flow].cc
    }

    /// Bytes `flow` delivered so far.
    pub(super) fn delivered(&self, flow: usize) -> u64 {
        self.flows[flow].delivered
    }

    /// Bytes queued at the link (arrived, not yet sent on).
    fn backlog(&self) -> f64 {
        self.queue
            .iter()
            .filter(|q| q.0 <= self.now)
            .map(|q| q.3)
            .sum()
    }

    /// Run for `d`, recording the queueing delay at every step.
    pub(super) fn run(&mut self, d: Duration) {
        self.queue_delays.clear();
        let end = self.now + d;
        while self.now < end {
            self.step();
            self.queue_delays.push(self.backlog() / self.rate);
        }
    }

    /// Noise of `mean` on every acknowledgement, from generator `seed`.
    pub(super) fn noise(&mut self, mean: Duration, seed: u64) {
        self.noise = mean.as_secs_f64();
        self.seed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        (self.seed >> 11) as f64 / (1u64 << 53) as f64
    }

    fn step(&mut self) {
        let now = self.now;
        // (Noise can reorder acknowledgements.)
        while let Some(pos) = self.acks.iter().position(|a| a.0 <= now) {
            let (_, i, seq) = self.acks.remove(pos).expect("found");
            let f = &mut self.flows[i];
            let limited = f.pipe + chunk(f) > f.cc.window() as usize;
            let pos = f.in_flight.iter().position(|c| c.0 == seq).expect("sent");
            let (_, bytes, sent, snap) = f.in_flight.remove(pos).expect("found");
            f.rate.on_delivered(bytes, snap, sent, now);
            f.pipe -= bytes;
            f.delivered += bytes as u64;
            let rtt = if f.liar { Duration::ZERO } else { now - sent };
            f.cc.on_ack(seq + 1, bytes, Some(rtt), limited, now);
        }
        for (i, f) in self.flows.iter_mut().enumerate() {
            while now >= f.start && f.cc.allows(f.pipe) {
                let bytes = chunk(f);
                let snap = f.rate.on_send(f.pipe == 0, now);
                f.in_flight.push_back((f.next, bytes, now, snap));
                self.queue
                    .push_back((now + self.one_way, i, f.next, bytes as f64));
                f.pipe += bytes;
                f.next += 1;
            }
        }
        let mut budget = self.rate * STEP.as_secs_f64();
        while budget > 0.0 {
            let Some(front) = self.queue.front_mut().filter(|q| q.0 <= now) else {
                break;
            };
            let sent = front.3.min(budget);
            front.3 -= sent;
            budget -= sent;
            if front.3 <= 0.0 {
                let (_, i, seq, _) = self.queue.pop_front().expect("front exists");
                let noise = -self.noise * (1.0 - self.uniform()).ln();
                let at = now + STEP + self.one_way + Duration::from_secs_f64(noise);
                self.acks.push_back((at, i, seq));
            }
        }
        self.now += STEP;
    }
}

/// The chunk `f` cuts next, as `SendHalf::max_chunk` cuts it (with
/// messages of up to a full chunk).
fn chunk(f: &Flow) -> usize {
    crate::stream::rate::cut(&f.cc, &f.rate).min(MAX_CHUNK)
}

/// The `p`-quantile of `v` (0..=1).
pub(super) fn quantile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

const KIB: f64 = 1024.0;

/// The queue target on such a path (seconds): [`Congestion::target`] once
/// it has measured the path's own round trip (a small chunk's included).
fn target(rate: f64, one_way: u64) -> f64 {
    let base = 2.0 * one_way as f64 / 1e3 + MIN_CHUNK as f64 / rate;
    let mut c = Congestion::new();
    c.on_ack(
        1,
        MIN_CHUNK,
        Some(Duration::from_secs_f64(base)),
        true,
        Instant::now(),
    );
    c.target().as_secs_f64()
}

/// A copy through a slow link with a deep buffer keeps the link busy and
/// the queue near the target, at the rates and paths of the issue: a
/// keystroke behind it waits tens of milliseconds, not the seconds the
/// buffer holds.
#[test]
fn one_copy_fills_the_link_and_keeps_the_queue_short() {
    // (rate, one-way delay ms)
    for (rate, one_way) in [
        (256.0 * KIB, 1),
        (KIB * KIB, 1),
        (256.0 * KIB, 20),
        (KIB * KIB, 20),
    ] {
        let mut p = Path::new(rate, ms(one_way));
        let f = p.flow(Duration::ZERO, false);
        p.run(Duration::from_secs(5));
        let start_worst = quantile(&p.queue_delays, 1.0);
        let before = p.delivered(f);
        p.run(Duration::from_secs(20));
        let share = (p.delivered(f) - before) as f64 / (rate * 20.0);
        let (p99, worst) = (
            quantile(&p.queue_delays, 0.99),
            quantile(&p.queue_delays, 1.0),
        );
        let case = format!("{rate} B/s, {one_way} ms each way: share {share:.3}, queue p99 {p99:.3} s, worst {worst:.3} s, at the start {start_worst:.3} s");
        // The drains (every DRAIN_PERIOD) cost a few per cent on far paths.
        assert!(share >= 0.9, "{case}");
        let target = target(rate, one_way);
        // At 256 KiB/s the floor (two 4 KiB messages, 31 ms) adds to it.
        assert!(p99 <= target + 0.050 && worst <= target + 0.070, "{case}");
        assert!(start_worst <= 0.250, "{case}");
    }
}

/// Two copies through one bottleneck, started together or one 10 s after
/// the other, end up with shares within 20 % of each other (the issue's
/// goal), the link full and the queue near the target: at the issue's
/// rates, over a near and a 40 ms path, and at four moments of the drain
/// period for the first copy's start (the outcome depends on it).
#[test]
fn two_copies_share_the_link() {
    for rate in [KIB * KIB, 256.0 * KIB] {
        for one_way in [1, 20] {
            for later in [0, 10] {
                for phase in [0, 700, 1300, 2100] {
                    let mut p = Path::new(rate, ms(one_way));
                    let a = p.flow(ms(phase), false);
                    let b = p.flow(ms(phase) + Duration::from_secs(later), false);
                    p.run(Duration::from_secs(later + 30));
                    let (a0, b0) = (p.delivered(a), p.delivered(b));
                    p.run(Duration::from_secs(30));
                    let (da, db) = ((p.delivered(a) - a0) as f64, (p.delivered(b) - b0) as f64);
                    let queue = quantile(&p.queue_delays, 0.99);
                    let case = format!("{rate} B/s, {one_way} ms each way, second {later} s later, first at {phase} ms: {da} and {db} bytes, share {:.3}, queue p99 {queue:.3}", (da + db) / (rate * 30.0));
                    assert!(da.min(db) / da.max(db) >= 0.8, "{case}");
                    assert!((da + db) / (rate * 30.0) >= 0.9, "{case}");
                    // At 256 KiB/s two floors, each with the chunk it
                    // may send past its window, are 94 ms of queue alone.
                    let floors = 2.0 * (MIN_WINDOW + MIN_CHUNK as f64) / rate;
                    assert!(queue <= target(rate, one_way) + floors + 0.040, "{case}");
                }
            }
        }
    }
}

/// After a loss halves the window, the link is full again within seconds,
/// and the queue stays short throughout.
#[test]
fn a_loss_is_recovered_from() {
    let rate = KIB * KIB;
    let mut p = Path::new(rate, ms(20));
    let f = p.flow(Duration::ZERO, false);
    p.run(Duration::from_secs(10));
    let before = p.cc(f).window();
    let next = p.flows[f].next;
    p.cc(f).on_loss(next);
    assert_eq!(p.cc(f).window(), before / 2.0);
    p.run(Duration::from_secs(2));
    let d0 = p.delivered(f);
    p.run(Duration::from_secs(10));
    let share = (p.delivered(f) - d0) as f64 / (rate * 10.0);
    assert!(share >= 0.9, "share {share:.3} after the loss");
    assert!(quantile(&p.queue_delays, 1.0) <= 0.075);
}

/// Bad input: a peer that acknowledges at once whatever it is sent (every
/// round trip zero) takes the window to its ceiling and the queue with
/// it, but an honest session beside it still moves: its window never falls
/// below the floor, and its chunks keep being delivered.
#[test]
fn a_lying_peer_does_not_stop_an_honest_session() {
    let rate = KIB * KIB;
    let mut p = Path::new(rate, ms(20));
    let honest = p.flow(Duration::ZERO, false);
    let _liar = p.flow(Duration::ZERO, true);
    p.run(Duration::from_secs(30));
    let d0 = p.delivered(honest);
    p.run(Duration::from_secs(30));
    let moved = (p.delivered(honest) - d0) as f64;
    assert!(p.cc(honest).window() >= MIN_WINDOW);
    assert!(
        moved > 0.0,
        "the honest session moved {moved} bytes in 30 s"
    );
}

/// Two copies through `p`, the second 300 ms after the first, which
/// starts at the `start`th of `moments` moments of the drain period, with
/// `noise` on every acknowledgement on average: the bytes each delivered
/// until 40 s after the second started.
fn noisy_pair(mut p: Path, start: u64, moments: u64, noise: Duration) -> (f64, f64) {
    let phase = ms(start * 6000 / moments + 37);
    p.noise(noise, start + 1);
    let a = p.flow(phase, false);
    let b = p.flow(phase + ms(300), false);
    p.run(phase + ms(300) + Duration::from_secs(40));
    (p.delivered(a) as f64, p.delivered(b) as f64)
}

/// Two copies started 300 ms apart over a path paced to 1 MiB/s, near (a
/// relay's) and 40 ms, with a millisecond of noise on every round trip on
/// average: counted from the start, as `scripts/bench-interactive` counts,
/// the slower gets at least 0.8 of what the faster got, at 16 moments of
/// the drain period. Without the noise two sessions measure the same
/// base; with it, their bases differ by about a millisecond. Before
/// `OWN_SHARE` that alone split the near link (2 of these 16 under 0.8,
/// the worst 0.75); before `FAR_OWN_QUEUE`, the far one (5 of 16, the
/// worst 0.56). Now none is under 0.8 on either.
#[test]
fn two_copies_share_a_link_through_noise() {
    let rate = KIB * KIB;
    for one_way in [1, 20] {
        for start in 0..16u64 {
            let (da, db) = noisy_pair(Path::new(rate, ms(one_way)), start, 16, ms(1));
            let case = format!(
                "{one_way} ms each way, start {start}: {da} and {db} bytes, {:.2}",
                da.min(db) / da.max(db)
            );
            assert!(da.min(db) / da.max(db) >= 0.8, "{case}");
        }
    }
}

/// Two downloads of one agent over a link paced to 256 KiB/s, 1 ms each
/// way, with 3 ms of noise on every acknowledgement on average (a busy
/// relay's scheduling): counted from the start, the slower gets at least
/// 0.8 of what the faster got, at 16 moments of the drain period. The
/// two sessions' floors are 62 ms of queue there, more than the target,
/// so each session's drain measures its own chunk behind whichever of the
/// other's were queued. With each session's own drains alone, 6 of these
/// 16 split under 0.8 (0.65-0.78); with the drains shared
/// ([`DrainsTogether`]), none (0.90-0.99).
#[test]
fn two_downloads_share_a_slow_link_through_noise() {
    let rate = 256.0 * KIB;
    for start in 0..16u64 {
        let mut p = Path::new(rate, ms(1));
        p.together();
        let (da, db) = noisy_pair(p, start, 16, ms(3));
        let case = format!(
            "start {start}: {da} and {db} bytes, {:.2}",
            da.min(db) / da.max(db)
        );
        assert!(da.min(db) / da.max(db) >= 0.8, "{case}");
    }
}

/// Two copies started 300 ms apart over a path paced to 4 MiB/s, with a
/// millisecond of noise on every round trip on average, at 64 moments of
/// the drain period: over a near path the slower gets at least 0.8 of
/// what the faster got in every start, over 20 ms each way in all but a
/// few. Both sessions drain at once, so each drain's samples hold the
/// other's floor; cut by the rate (`rate::cut`), those floors held 3 ms
/// and more of the link, and the bases came out 1-3 ms apart: 6 and 57
/// of these 64 starts split. Over the far path a few still do (11 of 64,
/// at 0.71-0.79; 14, at 0.66-0.80, since the second drain comes early
/// too, `EARLY_DRAINS`): the first copy's head start takes many drains
/// to even out at windows this large.
#[test]
fn two_fast_copies_share_a_link_through_noise() {
    let rate = 4096.0 * KIB;
    for (one_way, most) in [(1, 0), (20, 16)] {
        let mut split = Vec::new();
        for start in 0..64u64 {
            let (da, db) = noisy_pair(Path::new(rate, ms(one_way)), start, 64, ms(1));
            let share = da.min(db) / da.max(db);
            if share < 0.8 {
                split.push(format!("start {start}: {share:.2}"));
            }
        }
        assert!(
            split.len() <= most,
            "{one_way} ms each way: {} of 64 under 0.8: {split:?}",
            split.len()
        );
    }
}

/// Two downloads of one agent over a path paced to 1 MiB/s, 20 ms each
/// way (the 40 ms path), with 3 ms of noise on every
/// acknowledgement on average, at 32 moments of the drain period: the
/// slower gets at least 0.8 of what the faster got in all but one start.
/// Each session's floor takes 12 ms of the link there, both under the
/// target, and until the drains were shared at every rate
/// ([`DrainsTogether`]) 5 of these 32 split (0.59 to just under 0.80):
/// each drain's least round trip is its own few samples, noisy by more
/// than the own share of the target evens out. Shared, one (0.62); with
/// the second drain early too (`EARLY_DRAINS`), none.
#[test]
fn two_downloads_share_a_far_link_through_noise() {
    let rate = KIB * KIB;
    let mut split = Vec::new();
    for start in 0..32u64 {
        let mut p = Path::new(rate, ms(20));
        p.together();
        let (da, db) = noisy_pair(p, start, 32, ms(3));
        let share = da.min(db) / da.max(db);
        if share < 0.8 {
            split.push(format!("start {start}: {share:.2}"));
        }
    }
    assert!(
        split.len() <= 1,
        "{} of 32 under 0.8: {split:?}",
        split.len()
    );
}
