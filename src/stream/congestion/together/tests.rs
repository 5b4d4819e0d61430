use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Two sessions at 128 KiB/s each (a link paced to 256 KiB/s): the
/// other's floor and the chunk past it take 46 ms at their rate together.
const HALF: f64 = 128.0 * 1024.0;

fn slack(rate: f64) -> Duration {
    Duration::from_secs_f64((MIN_WINDOW + MIN_CHUNK as f64) / rate)
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
    // But no lower than its own less the other's floor at the rate of
    // both: a proxy that far away has a longer path.
    assert_eq!(slack(2.0 * HALF).as_millis(), 46);
    assert_eq!(t.base(7, ms(100)), ms(100) - slack(2.0 * HALF));
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

/// Where the others' floors take less than the queue target at the
/// sessions' rate (two sharing a 1 MiB/s link: 11.5 ms), a drain empties
/// the queue well enough, and each session keeps its own base.
#[test]
fn faster_sessions_keep_their_own_bases() {
    let t = DrainsTogether::default();
    t.offer(7, ms(20), 4.0 * HALF);
    t.offer(7, ms(10), 4.0 * HALF);
    assert_eq!(slack(8.0 * HALF).as_micros(), 11_535);
    assert_eq!(t.base(7, ms(20)), ms(20));
    // Three sessions at 512 KiB/s each: two others' floors, 15 ms,
    // still under.
    let t = DrainsTogether::default();
    for least in [20, 15, 10] {
        t.offer(7, ms(least), 512.0 * 1024.0);
    }
    assert_eq!(t.base(7, ms(20)), ms(20));
    // Three at 128 KiB/s each: 62 ms, over.
    let t = DrainsTogether::default();
    for least in [80, 40, 70] {
        t.offer(7, ms(least), HALF);
    }
    assert_eq!(t.base(7, ms(80)), ms(40));
}

/// Bad input: a lying peer's drain (a round trip of zero, a rate of
/// zero or none) moves another session's base no further than the
/// others' floors take at the honest session's own rate, and a peer whose
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
    use super::super::tests::drain_boundary;
    use super::super::Congestion;
    use std::sync::Arc;

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
