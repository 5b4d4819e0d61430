use super::*;

mod sim;
mod target;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[derive(Debug, Clone, Copy)]
enum Event {
    /// Cumulative ack to `.0` of `.1` more bytes, with a round trip
    /// (ms) the peer answered at once, and whether the window was full.
    Ack(u64, usize, Option<u64>, bool),
    /// A loss found while `.0` was the next sequence number.
    Loss(u64),
    /// Retransmission timeout with `.0` bytes in flight.
    Timeout(usize),
}
use Event::*;

const W0: f64 = INITIAL_WINDOW;
const K: usize = 1024;

/// Events from a fresh window, each with the (cwnd, ssthresh, in
/// recovery) it must leave. Round trips of 40 ms are the path's own, and
/// the target's own terms are off, so the target is 30 ms (`BASE_SHARE` of
/// it) whatever the window.
struct Case<'a> {
    name: &'a str,
    steps: &'a [(Event, f64, f64, bool)],
}

#[test]
fn window_follows_delay_losses_and_timeouts() {
    let cases = [
        Case {
            name: "slow start adds what is acknowledged while the queue is short",
            steps: &[
                (Ack(1, 8 * K, Some(40), true), W0 + 8192.0, MAX_WINDOW, false),
                (Ack(2, 8 * K, Some(42), true), W0 + 16384.0, MAX_WINDOW, false),
            ],
        },
        Case {
            name: "acks without a round trip, or of nothing, change nothing",
            steps: &[
                (Ack(1, 8 * K, None, true), W0, MAX_WINDOW, false),
                (Ack(1, 0, Some(40), true), W0, MAX_WINDOW, false),
            ],
        },
        Case {
            name: "a window the sender did not fill does not grow",
            steps: &[(Ack(1, 8 * K, Some(40), false), W0, MAX_WINDOW, false)],
        },
        Case {
            name: "slow start ends at three quarters of the target; growth slows to one chunk per window",
            steps: &[
                (Ack(1, 8 * K, Some(40), true), W0 + 8192.0, MAX_WINDOW, false),
                // One late sample is not a queue: the smaller of the two
                // latest counts, and slow start goes on; but the first slow
                // start does not double on a sample that alone shows the
                // queue it ends at.
                (Ack(2, 8 * K, Some(64), true), W0 + 8192.0, MAX_WINDOW, false),
                // 24 ms of queue: 0.8 of the target, off-target 0.2: growth
                // at LEAST_GAIN.
                (
                    Ack(3, 8 * K, Some(64), true),
                    W0 + 8192.0 + INCREASE * LEAST_GAIN * 8192.0 / (W0 + 8192.0),
                    W0 + 8192.0,
                    false,
                ),
            ],
        },
        Case {
            name: "out of slow start, a queue under a quarter of the target grows the window by a quarter of what is acknowledged",
            steps: &[
                (Ack(1, 64 * K, Some(40), true), W0 + 65536.0, MAX_WINDOW, false),
                (Ack(2, 8 * K, Some(64), true), W0 + 65536.0, MAX_WINDOW, false),
                // 24 ms of queue: slow start ends, growth is additive (at
                // LEAST_GAIN this near the target).
                (
                    Ack(3, 8 * K, Some(64), true),
                    W0 + 65536.0 + INCREASE * LEAST_GAIN * 8192.0 / (W0 + 65536.0),
                    W0 + 65536.0,
                    false,
                ),
                // The queue gone (6 ms, off-target 0.8): a quarter.
                (
                    Ack(4, 64 * K, Some(46), true),
                    W0 + 65536.0 + INCREASE * LEAST_GAIN * 8192.0 / (W0 + 65536.0) + 16384.0,
                    W0 + 65536.0,
                    false,
                ),
            ],
        },
        Case {
            name: "a queue at three quarters of the target ends slow start with the window not full",
            steps: &[
                (Ack(1, 8 * K, Some(40), true), W0 + 8192.0, MAX_WINDOW, false),
                (Ack(2, 8 * K, Some(64), true), W0 + 8192.0, MAX_WINDOW, false),
                // 24 ms of queue, the window not full: no growth, and no
                // more slow start.
                (Ack(3, 8 * K, Some(64), false), W0 + 8192.0, W0 + 8192.0, false),
            ],
        },
        Case {
            name: "a queue above the target shrinks the window in proportion",
            steps: &[
                (Ack(1, 8 * K, Some(40), true), W0 + 8192.0, MAX_WINDOW, false),
                (Ack(2, 8 * K, Some(82), true), W0 + 8192.0, MAX_WINDOW, false),
                // 42 ms of queue, 0.4 over the target: shrinks by 0.4 of
                // what was acknowledged, full window or not.
                (Ack(3, 10 * K, Some(82), false), W0 + 4096.0, W0 + 4096.0, false),
                (Ack(4, 20 * K, Some(530), true), W0 - 4096.0, W0 - 4096.0, false),
                // Far above the target: at most half of what was
                // acknowledged, and never below the floor.
                (Ack(5, 8 * K, Some(530), true), W0 - 8192.0, W0 - 8192.0, false),
                (Ack(6, 40 * K, Some(530), true), MIN_WINDOW, MIN_WINDOW, false),
            ],
        },
        Case {
            name: "one halving per window of data",
            steps: &[
                (Ack(1, 16 * K, Some(40), true), 2.0 * W0, MAX_WINDOW, false),
                (Loss(24), W0, W0, true),
                (Loss(25), W0, W0, true),
                // Acks during recovery still grow the window (avoidance;
                // with no queue, by a quarter of what they acknowledge).
                (Ack(23, K, Some(40), true), W0 + ROOM_GROWTH * K as f64, W0, true),
                (Ack(24, K, None, true), W0 + ROOM_GROWTH * K as f64, W0, false),
                (
                    Loss(30),
                    (W0 + ROOM_GROWTH * K as f64) / 2.0,
                    (W0 + ROOM_GROWTH * K as f64) / 2.0,
                    true,
                ),
            ],
        },
        Case {
            name: "a timeout drops to the floor, threshold half the flight",
            steps: &[
                (Timeout(40 * K), MIN_WINDOW, 20.0 * K as f64, false),
                (Ack(1, 4 * K, Some(40), true), MIN_WINDOW + 4096.0, 20.0 * K as f64, false),
                (Timeout(K), MIN_WINDOW, MIN_WINDOW, false),
            ],
        },
    ];
    for c in cases {
        let t0 = Instant::now();
        let mut w = Congestion::new();
        w.own_terms = false;
        assert_eq!(
            (w.window(), w.ssthresh(), w.in_recovery()),
            (W0, MAX_WINDOW, false)
        );
        for (i, &(event, cwnd, ssthresh, recovery)) in c.steps.iter().enumerate() {
            match event {
                Ack(ack, n, rtt, limited) => w.on_ack(ack, n, rtt.map(ms), limited, t0),
                Loss(next) => w.on_loss(next),
                Timeout(in_flight) => w.on_timeout(in_flight),
            }
            let got = (w.window(), w.ssthresh(), w.in_recovery());
            assert!(
                (got.0 - cwnd).abs() < 1e-6 && (got.1 - ssthresh).abs() < 1e-6 && got.2 == recovery,
                "{}: step {i} ({event:?}): got {got:?}, wanted {:?}",
                c.name,
                (cwnd, ssthresh, recovery)
            );
        }
    }
}

/// The first millisecond of a [`DRAIN_PERIOD`] of the wall clock, after
/// now: a drain may start there.
pub(super) fn drain_boundary() -> Instant {
    let period = |t| epoch(t) / EPOCHS_PER_PERIOD;
    let mut t = Instant::now();
    let first = period(t);
    while period(t) == first {
        t += ms(1);
    }
    t
}

#[test]
fn a_drain_empties_the_queue_and_resumes_without_it() {
    let t0 = drain_boundary();
    let before = t0 - ms(50);
    // Slow start to 80 KiB over a 10 ms path, then a queue of 40 ms (above
    // the 25 ms target) holds the window back: 76 KiB. A new period starts
    // a drain.
    let held = 76.0 * K as f64;
    let draining = || {
        let mut w = Congestion::new();
        w.on_ack(1, 64 * K, Some(ms(10)), true, before);
        w.on_ack(2, 8 * K, Some(ms(50)), true, before);
        w.on_ack(3, 8 * K, Some(ms(50)), true, before);
        assert_eq!(w.window(), held);
        w.on_ack(4, 8 * K, Some(ms(50)), true, t0);
        w
    };
    // To the floor for two round trips.
    let mut w = draining();
    assert_eq!(w.window(), MIN_WINDOW);
    w.on_ack(5, 4 * K, Some(ms(20)), true, t0 + ms(50));
    assert_eq!(w.window(), MIN_WINDOW, "still draining");
    // Over: the drain's least round trip (20 ms) is the base, and the
    // window is what was in flight less the queue (76 KiB at 50 ms, so
    // 20 / 50 of it at 20 ms), with no slow start on top.
    w.on_ack(6, 4 * K, Some(ms(25)), true, t0 + ms(120));
    assert_eq!(w.delay().base(), Some(ms(20)));
    assert!((w.window() - held * 0.4).abs() < 1e-6, "{}", w.window());
    assert_eq!(w.ssthresh(), w.window());
    // A drain whose round trips were all longer than before resumes at
    // the window it had, no more, and keeps the base: another session
    // filled the queue meanwhile (a latecomer in slow start).
    let mut w = draining();
    w.on_ack(5, 4 * K, Some(ms(900)), true, t0 + ms(120));
    assert_eq!(w.window(), held);
    assert_eq!(w.delay().base(), Some(ms(10)));
    // Unless the drain before failed too: the path got longer.
    w.on_ack(6, 4 * K, Some(ms(900)), true, t0 + ms(130));
    w.on_ack(7, 4 * K, Some(ms(900)), true, t0 + DRAIN_PERIOD + ms(1));
    assert_eq!(w.window(), MIN_WINDOW, "draining again");
    w.on_ack(8, 4 * K, Some(ms(950)), true, t0 + DRAIN_PERIOD + ms(1900));
    assert_eq!(w.delay().base(), Some(ms(950)));
}

/// A drain cuts the smallest chunks, whatever the delivery rate asks for
/// (`rate::cut`): every session drains at once, and each sample of a drain
/// holds the others' floors ahead of it. Before and after the drain, the
/// rate's chunk.
#[test]
fn a_drain_cuts_the_smallest_chunks() {
    use crate::stream::rate::{cut, tests::byte_limited};
    let t0 = drain_boundary();
    let before = t0 - ms(50);
    // A 4 MiB/s link kept full with eight small chunks in flight: the rate
    // asks for 4 ms of it.
    let rate = byte_limited(4.0 * 1024.0 * 1024.0, MIN_CHUNK, 8, 200);
    assert!(rate.chunk() > 3 * MIN_CHUNK, "{}", rate.chunk());
    let mut w = Congestion::new();
    w.on_ack(1, 64 * K, Some(ms(10)), true, before);
    held(&mut w, 2, before);
    assert!(!w.draining());
    assert_eq!(cut(&w, &rate), w.chunk().max(rate.chunk()));
    w.on_ack(4, 8 * K, Some(ms(50)), true, t0);
    assert!(w.draining());
    assert_eq!(w.chunk(), MIN_CHUNK);
    assert_eq!(cut(&w, &rate), MIN_CHUNK, "not the rate's {}", rate.chunk());
    w.on_ack(5, 4 * K, Some(ms(20)), true, t0 + ms(120));
    assert!(!w.draining());
    assert_eq!(cut(&w, &rate), w.chunk().max(rate.chunk()));
}

/// Two acks of 8 KiB at `at`, each a round trip of 50 ms: over the 10 ms
/// path of the tests below, a queue of 40 ms holds the window back.
fn held(w: &mut Congestion, seq: u64, at: Instant) {
    w.on_ack(seq, 8 * K, Some(ms(50)), true, at);
    w.on_ack(seq + 1, 8 * K, Some(ms(50)), true, at);
}

/// A regular drain that measured well above the base the regular drain
/// before it measured (one session's samples can all trail another's
/// floor) is doubted: the base stays, held, until the next drain, which
/// counts whatever it measures. Within the slack, or after a session's
/// first drain (perhaps measured before the other sessions started), a
/// drain counts at once.
#[test]
fn a_drain_well_above_a_regular_drains_base_waits_for_the_next() {
    let t0 = drain_boundary();
    // Held back, then a drain at the `n`th DRAIN_PERIOD boundary whose
    // least round trip is `least`.
    let drain = |w: &mut Congestion, n: u32, least: u64| {
        let at = t0 + DRAIN_PERIOD * n;
        let seq = 10 * u64::from(n) + 2;
        held(w, seq, at - ms(500));
        w.on_ack(seq + 2, 8 * K, Some(ms(50)), true, at);
        assert!(w.drain.is_some(), "draining at period {n}");
        w.on_ack(seq + 3, 4 * K, Some(ms(least)), true, at + ms(120));
        assert!(w.drain.is_none(), "drained at period {n}");
    };
    let mut w = Congestion::new();
    w.on_ack(1, 64 * K, Some(ms(10)), true, t0 - ms(600));
    drain(&mut w, 0, 10);
    assert_eq!(w.delay().base(), Some(ms(10)), "the first drain");
    drain(&mut w, 1, 11);
    assert_eq!(w.delay().base(), Some(ms(11)), "within the slack");
    // 20 ms, more than 2 ms above a regular drain's base: the base stays...
    drain(&mut w, 2, 20);
    assert_eq!(w.delay().base(), Some(ms(11)), "doubted");
    // ...held: a sample below it (a moment when another session's floor
    // was out of the queue) does not lower it either; and no drain comes
    // early.
    let later = t0 + DRAIN_PERIOD * 2 + ms(300);
    w.on_ack(30, 4 * K, Some(ms(5)), true, later);
    assert_eq!(w.delay().base(), Some(ms(11)), "held");
    held(&mut w, 31, later + FIRST_DRAIN_PERIOD);
    assert!(w.drain.is_none(), "no drain before the next period");
    // The next drain counts, whatever it measures.
    drain(&mut w, 3, 20);
    assert_eq!(w.delay().base(), Some(ms(20)), "the next drain");

    // After a session's first drain, a drain that measures far more counts
    // at once: the first may have come before the others started.
    let mut w = Congestion::new();
    w.on_ack(1, 64 * K, Some(ms(10)), true, t0 - ms(600));
    drain(&mut w, 0, 10);
    drain(&mut w, 1, 20);
    assert_eq!(w.delay().base(), Some(ms(20)));
}

#[test]
fn the_first_drains_come_early() {
    let t0 = drain_boundary();
    // Held back in a period's first FIRST_DRAIN_PERIOD.
    let held = |w: &mut Congestion, seq: u64, at: Instant| {
        held(w, seq, at);
        assert!(w.drain.is_none(), "not draining");
    };
    let mut w = Congestion::new();
    w.on_ack(1, 64 * K, Some(ms(10)), true, t0);
    held(&mut w, 2, t0 + ms(100));
    // Not drained yet: the next FIRST_DRAIN_PERIOD drains.
    w.on_ack(4, 8 * K, Some(ms(50)), true, t0 + FIRST_DRAIN_PERIOD);
    assert!(w.drain.is_some(), "the first drain, early");
    w.on_ack(
        5,
        4 * K,
        Some(ms(20)),
        true,
        t0 + FIRST_DRAIN_PERIOD + ms(200),
    );
    assert!(w.drain.is_none(), "drained");
    // Drained once: the next FIRST_DRAIN_PERIOD drains again (EARLY_DRAINS).
    assert_eq!(EARLY_DRAINS, 2);
    held(&mut w, 6, t0 + FIRST_DRAIN_PERIOD + ms(300));
    w.on_ack(8, 8 * K, Some(ms(50)), true, t0 + FIRST_DRAIN_PERIOD * 2);
    assert!(w.drain.is_some(), "the second drain, early");
    let after = t0 + FIRST_DRAIN_PERIOD * 2 + ms(200);
    w.on_ack(9, 4 * K, Some(ms(20)), true, after);
    assert!(w.drain.is_none(), "drained");
    // The next DRAIN_PERIOD drains (a regular drain)...
    held(&mut w, 10, after + ms(100));
    w.on_ack(12, 8 * K, Some(ms(50)), true, t0 + DRAIN_PERIOD);
    assert!(w.drain.is_some(), "a regular drain");
    let after = t0 + DRAIN_PERIOD + ms(200);
    w.on_ack(13, 4 * K, Some(ms(20)), true, after);
    assert!(w.drain.is_none(), "drained");
    // ...and from then on, no FIRST_DRAIN_PERIOD does.
    held(&mut w, 14, after + ms(100));
    held(&mut w, 16, t0 + DRAIN_PERIOD + FIRST_DRAIN_PERIOD);
}

#[test]
fn the_window_and_its_chunk_stay_within_bounds() {
    let t0 = Instant::now();
    let mut w = Congestion::new();
    assert_eq!(w.window(), INITIAL_WINDOW);
    assert_eq!(w.chunk(), INITIAL_WINDOW as usize / 4, "a quarter");
    w.on_timeout(0);
    assert_eq!(w.window(), MIN_WINDOW, "the floor");
    assert_eq!(w.chunk(), MIN_CHUNK, "the smallest chunk");
    let mut w = Congestion::new();
    for i in 0..200 {
        w.on_ack(i, MAX_CHUNK, Some(ms(1)), true, t0);
    }
    assert_eq!(w.window(), MAX_WINDOW, "the ceiling");
    assert_eq!(w.chunk(), MAX_CHUNK, "the largest chunk");
    assert!(w.allows(0) && w.allows(MAX_WINDOW as usize - 1));
    assert!(!w.allows(MAX_WINDOW as usize));
}

#[test]
fn base_delay_is_the_least_of_two_periods() {
    let t0 = Instant::now();
    let mut d = DelayFilter::default();
    assert_eq!((d.base(), d.queue()), (None, None));
    d.on_sample(ms(40), t0);
    d.on_sample(ms(30), t0 + ms(10));
    d.on_sample(ms(70), t0 + ms(20));
    assert_eq!(d.base(), Some(ms(30)));
    // The smaller of the two latest samples: one late sample is not a queue.
    assert_eq!(d.queue(), Some(ms(0)));
    d.on_sample(ms(50), t0 + ms(30));
    assert_eq!(d.queue(), Some(ms(20)));
    // The path got longer (another network): the old base is kept one
    // period more, then forgotten.
    d.on_sample(ms(200), t0 + BASE_PERIOD);
    assert_eq!(d.base(), Some(ms(30)));
    d.on_sample(ms(210), t0 + BASE_PERIOD * 2);
    assert_eq!(d.base(), Some(ms(200)));
    d.on_sample(ms(205), t0 + BASE_PERIOD * 3);
    assert_eq!(d.base(), Some(ms(205)));
    assert_eq!(d.queue(), Some(ms(0)));
    d.reset();
    assert_eq!(d.base(), None);
}

#[test]
fn a_drains_base_holds_until_the_next_drain() {
    let t0 = Instant::now();
    let mut d = DelayFilter::default();
    d.on_sample(ms(5), t0);
    d.restart_base(ms(15), t0 + ms(100));
    // A moment with less queue than the drain measured: not the base.
    d.on_sample(ms(7), t0 + ms(110));
    assert_eq!(d.base(), Some(ms(15)));
    assert_eq!(d.queue(), Some(ms(0)));
    // No drain within a period (the session is no longer held back): a
    // smaller sample counts again.
    d.on_sample(ms(8), t0 + ms(100) + DRAIN_PERIOD);
    assert_eq!(d.base(), Some(ms(8)));
}

/// Bad input: round trips a lying peer or broker reports, and floods of
/// acknowledgements, keep the window within its bounds, with nothing that
/// grows with their number (the filter is a fixed handful of values).
#[test]
fn lies_about_the_round_trip_keep_the_window_within_bounds() {
    let t0 = Instant::now();
    // (case, round trips in ms, in turn)
    let cases: [(&str, &[u64]); 4] = [
        ("zero", &[0]),
        ("huge", &[3_600_000]),
        ("zero and huge in turn", &[0, 3_600_000]),
        ("huge then zero", &[3_600_000, 3_600_000, 0, 0]),
    ];
    for (name, rtts) in cases {
        let mut w = Congestion::new();
        for i in 0..10_000u64 {
            let rtt = rtts[i as usize % rtts.len()];
            // 30 s: through several drains.
            w.on_ack(i + 1, 4 * K, Some(ms(rtt)), true, t0 + ms(3 * i));
            assert!(
                w.window().is_finite() && (MIN_WINDOW..=MAX_WINDOW).contains(&w.window()),
                "{name}: {}",
                w.window()
            );
        }
    }
    // A flood of acks that acknowledge nothing new.
    let mut w = Congestion::new();
    for _ in 0..100_000 {
        w.on_ack(5, 0, Some(ms(0)), true, t0);
    }
    assert_eq!(w.window(), INITIAL_WINDOW, "a flood of duplicates");
}
