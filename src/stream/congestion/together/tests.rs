use super::super::tests::drain_boundary;
use super::super::{Congestion, DRAIN_PERIOD};
use super::*;
use std::sync::Arc;
use tokio::time::Instant;

const K: usize = 1024;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Two sessions at 128 KiB/s each (a link paced to 256 KiB/s): their
/// floors and the chunks past them take 92 ms at their rate together.
const HALF: f64 = 128.0 * 1024.0;

/// How far two sessions' floors move a base at `rate`.
fn slack(rate: f64) -> Duration {
    Duration::from_secs_f64(2.0 * (MIN_WINDOW + MIN_CHUNK as f64) / rate)
}

#[test]
fn sessions_that_drained_together_take_the_least_base() {
    let t = DrainsTogether::default();
    // Alone in its drain: its own.
    t.offer(7, ms(64), HALF);
    assert_eq!(t.base(7, ms(64)), ms(64));
    // With another: the least of both, for either.
    t.offer(7, ms(36), HALF);
    assert_eq!(t.base(7, ms(64)), ms(36));
    assert_eq!(t.base(7, ms(36)), ms(36));
    // A base lower than the drains' stays.
    assert_eq!(t.base(7, ms(20)), ms(20));
    // But no lower than its own less the floors at the rate of both: a
    // proxy that far away has a longer path.
    assert_eq!(slack(2.0 * HALF).as_millis(), 92);
    assert_eq!(t.base(7, ms(200)), ms(200) - slack(2.0 * HALF));
    // Drains of another moment: its own.
    assert_eq!(t.base(8, ms(64)), ms(64));
    assert_eq!(t.base(6, ms(64)), ms(64));
    // An earlier moment's drain that ends late changes nothing.
    t.offer(6, ms(1), HALF);
    assert_eq!(t.base(7, ms(64)), ms(36));
    // A later moment's replaces it.
    t.offer(8, ms(50), HALF);
    assert_eq!(t.base(7, ms(64)), ms(64));
    assert_eq!(t.base(8, ms(64)), ms(64));
    t.offer(8, ms(40), HALF);
    assert_eq!(t.base(8, ms(64)), ms(40));
}

/// At any rate, but no further than the floors take at the rate of all:
/// two sessions sharing a 1 MiB/s link, 23 ms; two sharing a loopback
/// broker at 100 MB/s, a quarter of a millisecond, so that a near path's
/// base hardly moves.
#[test]
fn faster_sessions_move_their_bases_no_further_than_the_floors() {
    let t = DrainsTogether::default();
    t.offer(7, ms(20), 4.0 * HALF);
    t.offer(7, ms(12), 4.0 * HALF);
    assert_eq!(slack(8.0 * HALF).as_micros(), 23_071);
    assert_eq!(t.base(7, ms(20)), ms(12));
    let t = DrainsTogether::default();
    t.offer(7, ms(20), 4.0 * HALF);
    t.offer(7, ms(5), 4.0 * HALF);
    assert_eq!(t.base(7, ms(40)), ms(40) - slack(8.0 * HALF));
    // Three sessions at 128 KiB/s each: three floors, 92 ms.
    let t = DrainsTogether::default();
    for least in [80, 40, 70] {
        t.offer(7, ms(least), HALF);
    }
    assert_eq!(t.base(7, ms(80)), ms(40));
    // Loopback.
    let t = DrainsTogether::default();
    t.offer(7, ms(2), 50e6);
    t.offer(7, Duration::from_micros(500), 50e6);
    assert_eq!(slack(100e6).as_micros(), 241);
    assert_eq!(t.base(7, ms(2)), ms(2) - slack(100e6));
}

/// Bad input: a lying peer's drain (a round trip of zero, a rate of
/// zero or none) moves another session's base no further than the
/// floors take at the honest session's own rate, and a peer whose
/// every round trip is zero (an infinite rate) not at all.
#[test]
fn a_lying_peers_drain_moves_the_others_no_further_than_the_floors() {
    for liar_rate in [f64::INFINITY, f64::NAN] {
        let t = DrainsTogether::default();
        t.offer(7, Duration::ZERO, liar_rate);
        t.offer(7, ms(64), HALF);
        assert_eq!(t.base(7, ms(64)), ms(64), "{liar_rate}");
    }
    for liar_rate in [0.0, 1.0, HALF] {
        let t = DrainsTogether::default();
        t.offer(7, Duration::ZERO, liar_rate);
        t.offer(7, ms(200), HALF);
        let lowest = ms(200).saturating_sub(slack(HALF + liar_rate));
        assert_eq!(t.base(7, ms(200)), lowest, "{liar_rate}");
    }
    // An hour's round trip: more than the honest session's own, no change.
    let t = DrainsTogether::default();
    t.offer(7, Duration::from_secs(3600), 1.0);
    t.offer(7, ms(64), HALF);
    assert_eq!(t.base(7, ms(64)), ms(64));
}

/// Two sessions of one broker connection drain together; the one that
/// measured the longer round trip takes the other's, whichever ends its
/// drain first.
#[test]
fn windows_that_drain_together_share_the_least_base() {
    let t0 = drain_boundary();
    let together = Arc::new(DrainsTogether::default());
    // Each: slow start over a 10 ms path, then a queue of half a second
    // holds it back (about 70 KiB at 0.5 s: 140 KiB/s each, the other's
    // floor takes 41 ms of both); a new period starts a drain of a
    // second, two round trips.
    let session = |shared: bool| {
        let mut w = Congestion::new();
        if shared {
            w.drain_with(together.clone());
        }
        let before = t0 - ms(50);
        w.on_ack(1, 64 * 1024, Some(ms(10)), true, before);
        for seq in 2..4 {
            w.on_ack(seq, 8 * 1024, Some(ms(500)), true, before);
        }
        w.on_ack(4, 8 * 1024, Some(ms(500)), true, t0);
        assert_eq!(w.window(), MIN_WINDOW, "draining");
        w
    };
    let (mut a, mut b, mut alone) = (session(true), session(true), session(false));
    for (w, least) in [(&mut b, 64), (&mut alone, 64), (&mut a, 36)] {
        w.on_ack(5, 4096, Some(ms(least)), true, t0 + ms(300));
    }
    // B's drain ends first: only its own then.
    b.on_ack(6, 4096, Some(ms(70)), true, t0 + ms(1100));
    assert_eq!(b.delay().base(), Some(ms(64)));
    a.on_ack(6, 4096, Some(ms(70)), true, t0 + ms(1100));
    assert_eq!(a.delay().base(), Some(ms(36)));
    // B's next round trip: A's base.
    b.on_ack(7, 4096, Some(ms(70)), true, t0 + ms(1200));
    assert_eq!(b.delay().base(), Some(ms(36)));
    // A session that shares with nobody keeps its own.
    alone.on_ack(6, 4096, Some(ms(70)), true, t0 + ms(1100));
    alone.on_ack(7, 4096, Some(ms(70)), true, t0 + ms(1200));
    assert_eq!(alone.delay().base(), Some(ms(64)));
    // A reconnect forgets the drain.
    b.on_reconnect();
    b.on_ack(8, 4096, Some(ms(90)), true, t0 + ms(1300));
    assert_eq!(b.delay().base(), Some(ms(90)));
}

/// Two sessions of one broker connection over a 10 ms path, each through
/// its first two drains (10 and 11 ms): the moment of the first drain and
/// the sessions.
fn two_drained() -> (Instant, Congestion, Congestion) {
    let t0 = drain_boundary();
    let together = Arc::new(DrainsTogether::default());
    let session = || {
        let mut w = Congestion::new();
        w.drain_with(together.clone());
        w.on_ack(1, 64 * K, Some(ms(10)), true, t0 - ms(600));
        w
    };
    let (mut a, mut b) = (session(), session());
    for n in 0..2 {
        drain(t0, &mut a, n, 10 + u64::from(n));
        drain(t0, &mut b, n, 10 + u64::from(n));
    }
    assert_eq!(a.delay().base(), Some(ms(11)));
    assert_eq!(b.delay().base(), Some(ms(11)));
    (t0, a, b)
}

/// Held back by a queue of 40 ms, then a drain at the `n`th
/// DRAIN_PERIOD after `t0` whose least round trip is `least`.
fn drain(t0: Instant, w: &mut Congestion, n: u32, least: u64) {
    let at = t0 + DRAIN_PERIOD * n;
    let seq = 10 * u64::from(n) + 2;
    w.on_ack(seq, 8 * K, Some(ms(50)), true, at - ms(500));
    w.on_ack(seq + 1, 8 * K, Some(ms(50)), true, at - ms(500));
    w.on_ack(seq + 2, 8 * K, Some(ms(50)), true, at);
    assert!(w.drain.is_some(), "draining at period {n}");
    w.on_ack(seq + 3, 4 * K, Some(ms(least)), true, at + ms(120));
    assert!(w.drain.is_none(), "drained at period {n}");
}

/// A session whose drain is doubted keeps its base, held, and offers
/// that: the others take it too (within the floors), not the drain's
/// least round trip, which it does not believe either. Otherwise the
/// two sessions' bases part for a whole period: over the 40 ms relay path
/// paced to 1 MiB/s (traced) a doubted drain kept 51.8 ms while the
/// other session's took 61.4, and the other held 4-8 times its window.
#[test]
fn a_doubted_drain_offers_the_base_it_keeps() {
    let (t0, mut a, mut b) = two_drained();
    // A's next drain measures 20 ms: doubted, it keeps 11. B's, 13 ms:
    // within the slack, trusted, but A's kept base is the least.
    drain(t0, &mut a, 2, 20);
    assert_eq!(a.delay().base(), Some(ms(11)), "doubted");
    drain(t0, &mut b, 2, 13);
    assert_eq!(b.delay().base(), Some(ms(11)), "the base A kept");
}

/// A path that grows for good is taken up within a few periods, though
/// the sessions' drains see it at different periods: a session is doubted
/// against the base its own drain left, not against the one the others'
/// drains lowered it to. Doubted against the lowered one, each session's
/// trusted drain was lowered by the other's doubted one, which doubted
/// the next, in turns for as long as both lived: one base stayed at 11 ms
/// on a 20 ms path.
#[test]
fn a_path_that_grows_is_taken_up_by_sessions_that_see_it_in_turns() {
    let (t0, mut a, mut b) = two_drained();
    // The path grows from 11 to 20 ms between A's drain and B's.
    drain(t0, &mut a, 2, 11);
    drain(t0, &mut b, 2, 20);
    for n in 3..6 {
        drain(t0, &mut a, n, 20);
        drain(t0, &mut b, n, 20);
    }
    assert_eq!(a.delay().base(), Some(ms(20)));
    assert_eq!(b.delay().base(), Some(ms(20)));
}

/// Two sessions of two processes (two clients' uploads to one node)
/// share their drains through the peer, as two of one process do: each
/// reports the base its drain left, the peer gathers the reports of the
/// moment, and the session that measured the longer round trip takes the
/// other's from its next round trip on (within the floors).
#[test]
fn sessions_of_two_processes_share_drains_through_the_peer() {
    let t0 = drain_boundary();
    let session = || {
        let mut w = Congestion::new();
        w.report_drains();
        w.on_ack(1, 64 * K, Some(ms(10)), true, t0 - ms(600));
        w
    };
    let (mut a, mut b) = (session(), session());
    for n in 0..2 {
        drain(t0, &mut a, n, 10 + u64::from(n));
        drain(t0, &mut b, n, 10 + u64::from(n));
    }
    drain(t0, &mut a, 2, 11);
    drain(t0, &mut b, 2, 13);
    assert_eq!(b.delay().base(), Some(ms(13)), "alone in its process");
    // Each drain is reported once: the latest.
    let (ra, rb) = (a.take_report().expect("a"), b.take_report().expect("b"));
    assert_eq!((a.take_report(), b.take_report()), (None, None));
    assert_eq!((ra.base, rb.base), (ms(11), ms(13)));
    assert_eq!(ra.epoch, rb.epoch);
    let peer = DrainsTogether::default();
    peer.offer(ra.epoch, ra.base, ra.rate);
    peer.offer(rb.epoch, rb.base, rb.rate);
    let shared = peer.shared().expect("gathered");
    assert_eq!((shared.sessions, shared.least), (2, ms(11)));
    let at = t0 + DRAIN_PERIOD * 2 + ms(200);
    for w in [&mut a, &mut b] {
        w.adopt(shared);
        w.on_ack(40, 4 * K, Some(ms(30)), true, at);
        assert_eq!(w.delay().base(), Some(ms(11)));
    }
    // A session that does not report takes nothing from the peer.
    let mut other = Congestion::new();
    other.drain_with(Arc::new(DrainsTogether::default()));
    other.adopt(shared);
    assert_eq!(other.take_report(), None);
    assert!(other
        .together
        .as_ref()
        .is_some_and(|t| t.shared().is_none()));
}
