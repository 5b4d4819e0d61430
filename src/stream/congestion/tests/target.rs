//! The queue the window aims for ([`Congestion::target`]): near and far
//! paths, each session's own terms, stalls, and lies about the round trip.

use super::*;

/// A window of `cwnd` bytes that measured `base` as the path's round trip
/// and `latest` since.
fn measured(base: Duration, latest: Duration, cwnd: f64) -> Congestion {
    let t0 = Instant::now();
    let mut c = Congestion::new();
    c.delay.on_sample(base, t0);
    c.delay.on_sample(latest, t0);
    c.delay.on_sample(latest, t0);
    c.cwnd = cwnd;
    c
}

/// A round trip so long that the own term of the target is at its cap
/// (a session of a slow rate: 8 KiB a second here).
const SLOW: Duration = Duration::from_secs(1);

/// The target: `QUEUE_TARGET` before any sample and on a near path, three
/// quarters of the base (`BASE_SHARE`) on a far one, with the time of
/// `FAR_OWN_QUEUE` bytes at the session's rate on top: for a slow
/// session its cap (half of `QUEUE_TARGET`), at the ceiling window a
/// tenth of a millisecond.
#[test]
fn the_target_is_a_share_of_a_far_base() {
    assert_eq!(Congestion::new().target(), QUEUE_TARGET);
    let us = Duration::from_micros;
    for (base, want) in [(ms(4), QUEUE_TARGET), (ms(200), us(162_500))] {
        let got = measured(base, SLOW, MIN_WINDOW).target();
        assert!(got.abs_diff(want) <= us(1), "base {base:?}: {got:?}");
    }
    let fast = measured(ms(200), ms(200), MAX_WINDOW).target();
    assert!(fast >= ms(150) && fast <= ms(150) + us(100), "{fast:?}");
}

/// Over a path nearer than `NEAR_BASE` the target shrinks with the round
/// trip, down to `NEAR_TARGET`; from `NEAR_BASE` up it is as before.
#[test]
fn a_near_path_has_a_smaller_target() {
    let us = Duration::from_micros;
    for (base, want) in [
        (us(0), NEAR_TARGET),
        (us(200), NEAR_TARGET),
        (us(400), us(2_500)),
        (ms(2), us(12_500)),
        (ms(3), us(18_750)),
        (NEAR_BASE, QUEUE_TARGET),
        (ms(10), QUEUE_TARGET),
    ] {
        let got = measured(base, SLOW, MIN_WINDOW).target();
        assert!(
            got.abs_diff(want) <= us(1),
            "base {base:?}: target {got:?}, want {want:?}"
        );
    }
}

/// A near path that stalls again and again (a bridge's Nagle: round trips
/// far above the base, two in a row) aims at the target of a path that is
/// not near (how long: `stall/tests.rs`). One such round trip alone is no
/// stall, and one stall alone (a busy moment) leaves the near target.
#[test]
fn a_near_path_that_stalls_again_aims_at_the_regular_target() {
    // Within one FIRST_DRAIN_PERIOD: no drain measures a base.
    let t0 = drain_boundary();
    let us = Duration::from_micros;
    let regular = QUEUE_TARGET.mul_f64(1.0 - OWN_SHARE);
    let mut c = Congestion::new();
    let mut seq = 0;
    let mut sample = |c: &mut Congestion, rtt: Duration, at: u64| {
        seq += 1;
        c.on_ack(seq, 64 * K, Some(rtt), true, t0 + ms(at));
        c.target()
    };
    sample(&mut c, us(300), 0);
    assert!(sample(&mut c, ms(1), 1) <= ms(2));
    // One round trip of 43 ms between ones of a millisecond.
    sample(&mut c, ms(43), 10);
    assert!(sample(&mut c, ms(1), 20) <= ms(2));
    // Two in a row: a stall, but the first.
    sample(&mut c, ms(43), 100);
    assert!(sample(&mut c, ms(44), 150) <= ms(2));
    sample(&mut c, ms(1), 200);
    // Another: the regular target.
    sample(&mut c, ms(43), 300);
    assert!(sample(&mut c, ms(43), 350) >= regular);
    assert!(sample(&mut c, ms(1), 400) >= regular);
    // A reconnect forgets them.
    c.on_reconnect();
    assert!(sample(&mut c, us(300), 500) <= ms(2));
}

/// Over a near path, `OWN_SHARE` of the target is the time `OWN_QUEUE`
/// bytes take at the session's own rate: a session at 1 MiB/s aims at
/// half of 25 ms plus 3.85 ms, one at half of that rate at half of 25 ms
/// plus 7.7 ms, and one slow enough at the whole 25 ms, never more. So of
/// two sessions that read the same queue, the one with more of the link
/// is the one that sees it above its target.
#[test]
fn a_fast_session_aims_lower_on_a_near_path() {
    let us = |n: f64| Duration::from_secs_f64(n * 1e-6);
    let rtt = ms(20);
    // Windows of 1 MiB/s and 512 KiB/s over the latest round trip.
    let fast = measured(ms(4), rtt, 20.0 * 1024.0 * 1024.0 / 1000.0);
    let half = measured(ms(4), rtt, 10.0 * 1024.0 * 1024.0 / 1000.0);
    let own = OWN_QUEUE / (1024.0 * 1024.0) * 1e6;
    for (c, want) in [(&fast, 12_500.0 + own), (&half, 12_500.0 + 2.0 * own)] {
        let got = c.target();
        assert!(got.abs_diff(us(want)) <= us(1.0), "{got:?}, want {want} µs");
    }
    assert!(fast.target() < half.target());
    assert!(half.target() < measured(ms(4), rtt, MIN_WINDOW).target());
    // The same queue: above the fast session's target, below the other's.
    let queue = Some(us(18_000.0));
    assert!(fast.off(queue) < 0.0 && half.off(queue) > 0.0);
    // Loopback: the least target holds, however fast.
    let lo = measured(Duration::from_micros(200), ms(1), MAX_WINDOW);
    assert_eq!(lo.target(), NEAR_TARGET);
}

/// Over a far path the time `FAR_OWN_QUEUE` bytes take at the session's
/// rate comes on top of the far target: of two sessions over a 40 ms path
/// that read the same queue, the one with more of the link sees it above
/// its target. At `scripts/bench-wan`'s rates the far target stays whole
/// to a fraction of a millisecond.
#[test]
fn a_fast_session_aims_lower_on_a_far_path() {
    let us = |n: f64| Duration::from_secs_f64(n * 1e-6);
    let (mib, rtt) = (1024.0 * 1024.0, 0.070);
    // Windows of 1 MiB/s and 512 KiB/s over the latest round trip.
    let fast = measured(ms(40), ms(70), mib * rtt);
    let half = measured(ms(40), ms(70), mib / 2.0 * rtt);
    let own = FAR_OWN_QUEUE / mib * 1e6;
    for (c, want) in [(&fast, 30_000.0 + own), (&half, 30_000.0 + 2.0 * own)] {
        let got = c.target();
        assert!(got.abs_diff(us(want)) <= us(1.0), "{got:?}, want {want} µs");
    }
    let queue = Some(us(30_000.0 + 1.5 * own));
    assert!(fast.off(queue) < 0.0 && half.off(queue) > 0.0);
    // 24 MB/s.
    let wan = measured(ms(40), ms(70), 24e6 * rtt).target();
    assert!(wan >= ms(30) && wan <= ms(30) + us(100.0), "{wan:?}");
}

/// Bad input: a round trip of zero or of an hour moves the own terms only
/// between nothing and their cap, at any window: the target stays within
/// the near target's bounds, and a far path's at most the cap above its
/// share of the base.
#[test]
fn lies_about_the_round_trip_keep_the_target_bounded() {
    let hour = Duration::from_secs(3600);
    for (base, latest, want) in [
        // A round trip of zero is the base from then on.
        (ms(4), Duration::ZERO, NEAR_TARGET),
        (ms(4), hour, QUEUE_TARGET),
        (Duration::ZERO, hour, NEAR_TARGET),
        (Duration::ZERO, Duration::ZERO, NEAR_TARGET),
        (hour, hour, hour.mul_f64(BASE_SHARE) + QUEUE_TARGET / 2),
    ] {
        for cwnd in [MIN_WINDOW, MAX_WINDOW] {
            let got = measured(base, latest, cwnd).target();
            assert!(
                got.abs_diff(want) <= Duration::from_micros(1),
                "base {base:?}, latest {latest:?}, window {cwnd}: {got:?}, want {want:?}"
            );
        }
    }
}

/// Over a far path the target leaves out the drain's own chunk: three
/// quarters of the base less the time `MIN_CHUNK` takes at the link's
/// rate, the rate of all the sessions that drained at that moment
/// (`CHUNK_TIME_SHARE`). Two sessions with different shares of a 256 KiB/s
/// link take the same 15.4 ms off their bases. Without shared drains, or
/// of another moment, nothing; a rate a lie made tiny takes half the base
/// at most, one of zero or an infinite one nothing; and where the near
/// target is the larger it stays.
#[test]
fn a_far_target_leaves_out_the_drains_chunk() {
    let us = |n: f64| Duration::from_secs_f64(n * 1e-6);
    let link = 256.0 * K as f64;
    let base = ms(71);
    let chunk = MIN_CHUNK as f64 / link;
    // Drained in `epoch`; the drains of epoch 7 at `rates`.
    let shared = |base: Duration, rates: &[f64], epoch: u64, cwnd: f64| {
        let t = Arc::new(DrainsTogether::default());
        for rate in rates {
            t.offer(7, base, *rate);
        }
        let mut c = measured(base, SLOW, cwnd);
        c.drain_with(t);
        c.drained_at = Some((epoch, base));
        c
    };
    // The whole link, two sessions of it: the same chunk's time off.
    for (rates, cwnd) in [
        (vec![link], MIN_WINDOW),
        (vec![link / 4.0, link * 3.0 / 4.0], MIN_WINDOW),
        (vec![link / 4.0, link * 3.0 / 4.0], 4.0 * MIN_WINDOW),
    ] {
        let whole = measured(base, SLOW, cwnd).target();
        let got = shared(base, &rates, 7, cwnd).target();
        let want = whole - Duration::from_secs_f64(chunk * BASE_SHARE);
        assert!(
            got.abs_diff(want) <= us(1.0),
            "{rates:?}: {got:?}, want {want:?}"
        );
    }
    // The drains of another moment: none off.
    let whole = measured(base, SLOW, MIN_WINDOW).target();
    assert_eq!(shared(base, &[link], 8, MIN_WINDOW).target(), whole);
    // Lies: a tiny rate takes half the base, none or an infinite one nothing.
    let half = whole - base.mul_f64(CHUNK_TIME_SHARE * BASE_SHARE);
    let got = shared(base, &[1.0], 7, MIN_WINDOW).target();
    assert!(got.abs_diff(half) <= us(1.0), "{got:?}, want {half:?}");
    for rate in [0.0, f64::INFINITY] {
        assert_eq!(shared(base, &[rate], 7, MIN_WINDOW).target(), whole);
    }
    // A base of 10 ms: the near target, whatever the rate.
    let near = measured(ms(10), SLOW, MIN_WINDOW).target();
    assert_eq!(shared(ms(10), &[1.0], 7, MIN_WINDOW).target(), near);
}
