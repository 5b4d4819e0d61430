//! Outages, timeouts, keepalives, resets and the last will.

use super::*;

#[test]
fn outage_then_reconnect_resumes() {
    let mut sim = Sim::new(
        13,
        CLEAN,
        pattern(4_000_000, 1),
        pattern(1_000_000, 2),
        Config::default(),
    );
    for _ in 0..300 {
        sim.step();
    }
    sim.outage = true;
    for _ in 0..20_000 {
        sim.step();
    }
    assert!(
        sim.a.s.error().is_none(),
        "20 s outage is within the grace period"
    );
    sim.outage = false;
    let now = sim.now;
    sim.a.s.on_reconnect(now);
    sim.b.s.on_reconnect(now);
    let before = sim.now;
    sim.run_until_done(120_000);
    sim.assert_intact();
    // Resynchronisation restarts at once rather than after a backed-off RTO.
    assert!(sim.now - before < Duration::from_secs(10));
}

#[test]
fn outage_longer_than_grace_period_times_out() {
    let cfg = Config {
        peer_timeout: Duration::from_secs(5),
        ..Config::default()
    };
    let mut sim = Sim::new(17, CLEAN, pattern(1_000_000, 1), Vec::new(), cfg);
    for _ in 0..100 {
        sim.step();
    }
    sim.outage = true;
    for _ in 0..5_100 {
        sim.step();
    }
    assert_eq!(
        sim.a.s.error(),
        Some(&StreamError::PeerTimeout(Duration::from_secs(5)))
    );
    assert_eq!(
        sim.b.s.error(),
        Some(&StreamError::PeerTimeout(Duration::from_secs(5)))
    );
}

#[test]
fn silent_peer_is_dropped_after_first_contact_timeout() {
    let now = Instant::now();
    let mut s = Stream::new(1, Config::default(), 1 << 20, now);
    let d = s.poll_deadline().unwrap();
    assert!(d <= now + FIRST_CONTACT);
    s.on_timeout(now + FIRST_CONTACT);
    assert_eq!(s.error(), Some(&StreamError::PeerTimeout(FIRST_CONTACT)));
}

#[test]
fn idle_session_stays_alive_via_keepalive() {
    // Peer timeouts above and below the keepalive interval: an idle session
    // must outlive many timeouts in either case (100 s of virtual time).
    for secs in [25, 10, 5, 1] {
        let cfg = Config {
            peer_timeout: Duration::from_secs(secs),
            ..Config::default()
        };
        let mut sim = Sim::new(19, CLEAN, pattern(10, 1), Vec::new(), cfg);
        sim.a.close_after_send = false;
        sim.b.close_after_send = false;
        for _ in 0..100_000 {
            sim.step();
        }
        assert!(
            sim.a.s.error().is_none() && sim.b.s.error().is_none(),
            "peer timeout {secs} s: {:?} / {:?}",
            sim.a.s.error(),
            sim.b.s.error()
        );
        assert_eq!(sim.b.received, pattern(10, 1));
    }
}

#[test]
fn reset_reaches_peer() {
    let mut sim = Sim::new(
        23,
        CLEAN,
        pattern(100_000, 1),
        Vec::new(),
        Config::default(),
    );
    sim.step();
    sim.a.s.abort();
    for _ in 0..50 {
        sim.step();
    }
    assert_eq!(sim.b.s.error(), Some(&StreamError::Reset));
}

#[test]
fn last_will_is_a_hint_not_a_reset() {
    let now = Instant::now();
    let mut s = Stream::new(1, Config::default(), 1000, now);
    let mut will = Frame::control(Kind::Reset, 1, Bytes::new());
    will.flags = FLAG_PEER_LOST;
    s.on_frame(will, now).unwrap();
    assert!(s.peer_lost_hint());
    assert_eq!(s.error(), None);
}
