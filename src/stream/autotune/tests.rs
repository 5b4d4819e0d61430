use super::*;

const MIB: u32 = 1 << 20;
const RTT: Duration = Duration::from_millis(100);

/// `chunks` arrivals of `bytes` each, `gap` apart, into a fresh tuner with
/// a 1 MiB window and a reader `buffered` bytes behind; returns the window
/// after each growth.
fn feed(chunks: u32, bytes: u64, gap: Duration, buffered: usize) -> Vec<u32> {
    let t0 = Instant::now();
    let mut t = WindowTuner::new(MAX_RECV_WINDOW);
    let (mut cap, mut received) = (MIB, 0);
    let mut grown = Vec::new();
    for i in 1..=chunks {
        received += bytes;
        if let Some(c) = t.on_data(t0 + gap * i, received, Some(RTT), cap, buffered) {
            assert!(c > cap, "the window only grows");
            cap = c;
            grown.push(c);
        }
    }
    grown
}

#[test]
fn window_follows_the_round_trip() {
    // (bytes per round trip the peer delivers, reader's backlog, windows
    // the tuner grows to from 1 MiB over two round trips)
    let cases: &[(&str, u64, usize, &[u32])] = &[
        ("well below half the window: stays", 256 << 10, 0, &[]),
        ("exactly half: stays", 512 << 10, 0, &[]),
        ("the full window: doubles", 1 << 20, 0, &[2 * MIB]),
        ("a lagging reader: stays", 1 << 20, 300 << 10, &[]),
    ];
    for &(what, per_rtt, buffered, want) in cases {
        // Ten arrivals per round trip, for two round trips; the first
        // arrival starts the measurement.
        let grown = feed(21, per_rtt / 10, RTT / 10, buffered);
        assert_eq!(grown, want, "{what}");
    }
}

#[test]
fn growth_is_capped_and_needs_a_round_trip_estimate() {
    let t0 = Instant::now();
    let mut t = WindowTuner::new(MAX_RECV_WINDOW);
    assert_eq!(t.on_data(t0, 0, None, MIB, 0), None);
    assert_eq!(t.on_data(t0 + RTT * 5, 50 * MIB as u64, None, MIB, 0), None);

    // A peer that always fills whatever window it gets: 1, 2, 4, 8 MiB, no more.
    let mut cap = MIB;
    let mut received = 0u64;
    let mut windows = Vec::new();
    for i in 0..10u32 {
        received += cap as u64;
        if let Some(c) = t.on_data(t0 + RTT * i, received, Some(RTT), cap, 0) {
            cap = c;
            windows.push(c);
        }
    }
    assert_eq!(windows, [2 * MIB, 4 * MIB, MAX_RECV_WINDOW]);
}

#[test]
fn a_burst_is_spread_over_the_time_it_took() {
    // 1 MiB in one burst after ten quiet round trips is 0.1 MiB per round
    // trip: no reason to grow.
    let t0 = Instant::now();
    let mut t = WindowTuner::new(MAX_RECV_WINDOW);
    assert_eq!(t.on_data(t0, 0, Some(RTT), MIB, 0), None);
    assert_eq!(
        t.on_data(t0 + RTT * 10, MIB as u64, Some(RTT), MIB, 0),
        None
    );
    // The same megabyte within one round trip is.
    assert_eq!(
        t.on_data(t0 + RTT * 11, 2 * MIB as u64, Some(RTT), MIB, 0),
        Some(2 * MIB)
    );
}
