use std::time::Duration;

use tokio::time::Instant;

use super::*;

const MS: Duration = Duration::from_millis(1);

#[test]
fn without_a_rate_nothing_waits() {
    let now = Instant::now();
    let mut p = Pacer::default();
    for _ in 0..100 {
        p.on_send(64 * 1024, None, now);
        assert!(p.ready(now));
        assert_eq!(p.deadline(), None);
    }
}

#[test]
fn chunks_leave_at_the_rate_after_the_credit() {
    let t0 = Instant::now();
    let mut p = Pacer::default();
    // At 2 MB/s a 20 KB chunk takes 10 ms of the pace.
    let rate = Some(2_000_000.0);
    p.on_send(20_000, rate, t0);
    // The first one spends the credit (2 ms) and is 8 ms ahead.
    assert!(!p.ready(t0));
    assert_eq!(p.deadline(), Some(t0 + 8 * MS));
    assert!(!p.ready(t0 + 7 * MS));
    assert!(p.ready(t0 + 8 * MS));
    // Sent on time, each next one waits its 10 ms: 2 MB/s.
    let mut at = t0 + 8 * MS;
    for _ in 0..10 {
        p.on_send(20_000, rate, at);
        assert_eq!(p.deadline(), Some(at + 10 * MS));
        at += 10 * MS;
    }
}

#[test]
fn an_idle_moment_earns_only_the_credit() {
    let t0 = Instant::now();
    let mut p = Pacer::default();
    let rate = Some(2_000_000.0);
    p.on_send(20_000, rate, t0);
    // A second later: two milliseconds (4 KB at the pace) may go at once,
    // not a second's worth.
    let t1 = t0 + Duration::from_secs(1);
    p.on_timeout(t1);
    assert!(p.ready(t1));
    p.on_send(2_000, rate, t1);
    assert!(p.ready(t1), "1 ms of the 2 ms credit");
    p.on_send(2_000, rate, t1);
    assert!(p.ready(t1), "the credit, spent exactly");
    p.on_send(2_000, rate, t1);
    assert!(!p.ready(t1), "over the credit");
    assert_eq!(p.deadline(), Some(t1 + MS));
}

#[test]
fn the_timer_ends_the_wait() {
    let t0 = Instant::now();
    let mut p = Pacer::default();
    p.on_send(20_000, Some(2_000_000.0), t0);
    let d = p.deadline().expect("waiting");
    p.on_timeout(d - MS);
    assert_eq!(p.deadline(), Some(d), "too early");
    p.on_timeout(d);
    assert_eq!(p.deadline(), None, "no timer once the pace allows");
    assert!(p.ready(d));
}

#[test]
fn a_fast_link_is_not_held_back() {
    // 2 GB/s: 64 KiB chunks take 33 us of the pace; the credit covers
    // sixty of them at once, and no timer is ever needed.
    let now = Instant::now();
    let mut p = Pacer::default();
    for _ in 0..60 {
        p.on_send(64 * 1024, Some(2e9), now);
        assert!(p.ready(now));
        assert_eq!(p.deadline(), None);
    }
}

#[test]
fn a_rate_made_tiny_or_senseless_does_not_stall_the_session() {
    let now = Instant::now();
    // A rate of a byte a second would hold a 64 KiB chunk's successor
    // for 9 hours: at most MAX_SPACING.
    for r in [1.0, 1e-300, f64::MIN_POSITIVE] {
        let mut p = Pacer::default();
        p.on_send(64 * 1024, Some(r), now);
        assert_eq!(p.deadline(), Some(now + MAX_SPACING - PACE_CREDIT));
    }
    // Zero, negative, infinite or NaN: no pacing at all.
    for r in [0.0, -1.0, f64::INFINITY, f64::NAN] {
        let mut p = Pacer::default();
        p.on_send(64 * 1024, Some(r), now);
        assert!(p.ready(now), "rate {r}");
        assert_eq!(p.deadline(), None, "rate {r}");
    }
}

#[test]
fn the_pace_is_twice_the_windows_rate() {
    let ms = |n| Some(Duration::from_millis(n));
    // 100 KB over 100 ms: 1 MB/s, paced at 2 MB/s.
    assert_eq!(rate(100_000.0, ms(100)), Some(2_000_000.0));
    // No round trip yet, or one of zero: no pace.
    assert_eq!(rate(100_000.0, None), None);
    assert_eq!(rate(100_000.0, ms(0)), None);
}
