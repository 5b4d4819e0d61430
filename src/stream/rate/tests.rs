use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A link of `rate` bytes/s that a sender keeps full with `chunk`-byte
/// chunks, `window` of them in flight, each acknowledged as it crosses
/// (ack clocked: a new chunk leaves as each is acknowledged). Returns the
/// estimator after `n` deliveries.
pub(crate) fn byte_limited(rate: f64, chunk: usize, window: usize, n: usize) -> DeliveryRate {
    let t0 = Instant::now();
    let cross = Duration::from_secs_f64(chunk as f64 / rate);
    let mut r = DeliveryRate::default();
    // (sent at, snapshot)
    let mut flight: std::collections::VecDeque<(Instant, SendSnapshot)> =
        (0..window).map(|i| (t0, r.on_send(i == 0, t0))).collect();
    let mut now = t0;
    for _ in 0..n {
        now += cross;
        let (sent, snap) = flight.pop_front().expect("in flight");
        r.on_delivered(chunk, snap, sent, now);
        flight.push_back((now, r.on_send(flight.is_empty(), now)));
    }
    r
}

/// Two chunks of `bytes` each, sent together at `at` with nothing else in
/// flight and delivered together at `delivered`: the second's sample spans
/// both (a chunk alone in flight gives none).
fn pair(r: &mut DeliveryRate, bytes: usize, at: Instant, delivered: Instant) {
    let a = r.on_send(true, at);
    let b = r.on_send(false, at);
    r.on_delivered(bytes, a, at, delivered);
    r.on_delivered(bytes, b, at, delivered);
}

#[test]
fn a_chunk_is_min_chunk_until_a_rate_is_measured() {
    let r = DeliveryRate::default();
    assert_eq!(r.max(), None);
    assert_eq!(r.chunk(), MIN_CHUNK);
}

/// A byte-limited link is never measured faster than it is, so a
/// keystroke behind one chunk waits at most CHUNK_TIME (a little more
/// where MIN_CHUNK is longer than that).
#[test]
fn a_slow_link_gets_chunks_of_chunk_time() {
    for (rate, want) in [
        (256.0 * 1024.0, MIN_CHUNK),
        (1024.0 * 1024.0, 4194),
        (4.0 * 1024.0 * 1024.0, 16_777),
        (16.0 * 1024.0 * 1024.0, 67_108),
    ] {
        let r = byte_limited(rate, MIN_CHUNK, 8, 200);
        let got = r.max().expect("measured");
        assert!(got <= rate * 1.001 && got >= rate * 0.95, "{rate}: {got}");
        let chunk = r.chunk();
        assert!(
            chunk.abs_diff(want) <= want / 50,
            "{rate}: chunk {chunk}, want {want}"
        );
    }
}

/// A path that holds each burst 44 ms (Nagle's algorithm against a
/// delayed ack, on a broker bridge) and then delivers it at once, and now
/// and then in under a millisecond: the window of two small chunks reads
/// as 180 KB/s at the stalls, but the fast deliveries show what the path
/// carries, and chunks grow to full size instead of staying small (where
/// every message stalls again).
#[test]
fn a_path_that_stalls_messages_gets_large_chunks() {
    let t0 = Instant::now();
    let mut r = DeliveryRate::default();
    let mut now = t0;
    for round in 0..40 {
        let took = if round % 7 == 3 {
            Duration::from_micros(500)
        } else {
            ms(44)
        };
        pair(&mut r, MIN_CHUNK, now, now + took);
        now += took + Duration::from_micros(100);
    }
    assert!(r.chunk() >= 10 * MIN_CHUNK, "{}", r.chunk());
}

/// Acknowledgements that arrive bunched together after being held up on
/// the way back do not make a slow link look fast: the interval is the
/// longer of the send and the ack intervals.
#[test]
fn bunched_acknowledgements_do_not_inflate_the_rate() {
    let rate = 256.0 * 1024.0;
    let t0 = Instant::now();
    let cross = Duration::from_secs_f64(MIN_CHUNK as f64 / rate);
    let mut r = byte_limited(rate, MIN_CHUNK, 4, 50);
    let before = r.max().expect("measured");
    // Four chunks sent one crossing apart, acknowledged all at once later.
    let start = t0 + ms(10_000);
    let sent: Vec<_> = (0..4u32)
        .map(|i| {
            let at = start + cross * i;
            (at, r.on_send(i == 0, at))
        })
        .collect();
    let now = start + cross * 4 + ms(200);
    for (at, snap) in sent {
        r.on_delivered(MIN_CHUNK, snap, at, now);
    }
    let after = r.max().expect("measured");
    assert!(after <= before.max(rate * 1.001), "{before} -> {after}");
}

/// The fastest delivery is forgotten after two periods: a path that got
/// slower (a laptop moved to a cellular link) gets small chunks again.
#[test]
fn a_fast_moment_is_forgotten_after_two_periods() {
    let t0 = Instant::now();
    let mut r = DeliveryRate::default();
    pair(&mut r, 1 << 19, t0, t0 + ms(10));
    assert!(r.chunk() >= crate::protocol::MAX_CHUNK);
    let slow = |r: &mut DeliveryRate, at: Instant| pair(r, MIN_CHUNK, at, at + ms(1000));
    slow(&mut r, t0 + RATE_PERIOD);
    assert!(r.chunk() > MIN_CHUNK, "still within the last period");
    slow(&mut r, t0 + RATE_PERIOD * 2 + ms(1000));
    assert_eq!(r.chunk(), MIN_CHUNK);
}

/// Bad input: a delivery learnt before the chunk was sent, or at the very
/// instant, gives no sample and no panic; a reset forgets all.
#[test]
fn impossible_timings_give_no_sample() {
    let t0 = Instant::now() + ms(1000);
    let mut r = DeliveryRate::default();
    let snap = r.on_send(true, t0);
    r.on_delivered(MIN_CHUNK, snap, t0, t0);
    r.on_delivered(MIN_CHUNK, snap, t0, t0 - ms(500));
    assert_eq!(r.max(), None);
    pair(&mut r, MIN_CHUNK, t0, t0 + ms(1));
    assert!(r.max().is_some());
    r.reset();
    assert_eq!(r.max(), None);
}

/// A link that saves credit while idle (a token bucket's burst; the pace
/// relay until 2026-12-06) lets a lone chunk after a pause through faster
/// than its rate: 4 KiB in 1.4 ms over 1 MiB/s. That is one round trip,
/// not a rate, and leaves the chunk size alone (it would have been 11 KiB
/// for up to two periods).
#[test]
fn a_lone_chunk_through_a_burst_is_no_rate() {
    let rate = 1024.0 * 1024.0;
    let mut r = byte_limited(rate, MIN_CHUNK, 8, 200);
    let before = r.chunk();
    let at = Instant::now() + ms(10_000);
    let snap = r.on_send(true, at);
    r.on_delivered(MIN_CHUNK, snap, at, at + Duration::from_micros(1400));
    assert_eq!(r.chunk(), before);
    assert!(r.max().expect("measured") <= rate * 1.001);
}

/// The largest chunk the window may ask for is LONGEST_CHUNK of the
/// link's rate (a keystroke behind one waits at most that long), at least
/// MIN_CHUNK, and unlimited until a rate is measured.
#[test]
fn the_longest_chunk_is_longest_chunk_of_the_rate() {
    assert_eq!(DeliveryRate::default().longest(), usize::MAX);
    for (rate, want) in [
        (128.0 * 1024.0, MIN_CHUNK),
        (256.0 * 1024.0, 4194),
        (1024.0 * 1024.0, 16_777),
        (16.0 * 1024.0 * 1024.0, 268_435),
    ] {
        let longest = byte_limited(rate, MIN_CHUNK, 8, 200).longest();
        assert!(
            longest.abs_diff(want) <= want / 50,
            "{rate}: longest {longest}, want {want}"
        );
    }
}

/// A window grown in slow start by `acks` acks of `bytes` each, every one
/// with a round trip of `rtt` (no queue: the path's own).
fn grown(acks: u64, bytes: usize, rtt: Duration) -> Congestion {
    let mut cc = Congestion::new();
    let now = Instant::now();
    for seq in 1..=acks {
        cc.on_ack(seq, bytes, Some(rtt), true, now);
    }
    cc
}

/// Once the first slow start has ended, a quarter of a large window over
/// a slow link is cut to LONGEST_CHUNK of the link: the window's 18 KiB
/// would hold a 1 MiB/s link 18 ms, and 256 KiB/s 70 ms. Over a link fast
/// enough to carry the quarter in LONGEST_CHUNK (4 MiB/s), or before any
/// rate is measured, the quarter stands; and in the first slow start,
/// where the rate lags the window, it stands too.
#[test]
fn a_slow_link_cuts_a_large_window_to_the_longest_chunk() {
    let mut cc = grown(8, 16 * 1024, ms(40));
    assert_eq!(cc.chunk(), 36 * 1024, "the window grew in slow start");
    let slow = [256.0 * 1024.0, 1024.0 * 1024.0].map(|r| byte_limited(r, MIN_CHUNK, 8, 200));
    for r in &slow {
        assert!(!cc.slow_start_ended());
        assert_eq!(cut(&cc, r), 36 * 1024, "in slow start");
    }
    cc.on_loss(100);
    assert!(cc.slow_start_ended());
    let quarter = cc.chunk();
    assert_eq!(quarter, 18 * 1024, "halved by the loss");
    for r in &slow {
        assert_eq!(cut(&cc, r), r.longest());
        assert!(cut(&cc, r) < quarter);
    }
    let fast = byte_limited(4.0 * 1024.0 * 1024.0, MIN_CHUNK, 8, 200);
    assert_eq!(cut(&cc, &fast), quarter);
    assert_eq!(cut(&cc, &DeliveryRate::default()), quarter);
}

/// A window that holds more than MAX_INFLIGHT_CHUNKS chunks of
/// LONGEST_CHUNK (over a second of the link: a round trip that long) is
/// cut in chunks that fill it within the chunk count, not in chunks of
/// LONGEST_CHUNK that it could never fill.
#[test]
fn a_window_over_a_second_of_the_link_is_cut_to_fill_it() {
    let mut cc = grown(64, 32 * 1024, ms(1500));
    cc.on_loss(1000);
    assert!(cc.slow_start_ended());
    let window = cc.window();
    let slow = byte_limited(256.0 * 1024.0, MIN_CHUNK, 8, 200);
    assert!(
        window / MAX_INFLIGHT_CHUNKS as f64 > slow.longest() as f64,
        "the window, {window}, holds more than 64 of the longest chunks"
    );
    let chunk = cut(&cc, &slow);
    assert!(chunk < cc.chunk(), "still under the quarter");
    assert!(
        chunk as f64 * MAX_INFLIGHT_CHUNKS as f64 >= window,
        "64 chunks of {chunk} fill the window of {window}"
    );
}
