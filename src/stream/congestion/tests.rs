use super::*;

const CAP: f64 = MAX_INFLIGHT_CHUNKS as f64;

#[derive(Debug, Clone, Copy)]
enum Event {
    /// Cumulative ack moved to `.0`, acknowledging `.1` more chunks.
    Ack(u64, u32),
    /// A loss found while `.0` was the next sequence number.
    Loss(u64),
    /// Retransmission timeout with `.0` chunks in flight.
    Timeout(usize),
}
use Event::*;

/// Events from a fresh window, each with the (cwnd, ssthresh, in recovery)
/// it must leave.
struct Case<'a> {
    name: &'a str,
    steps: &'a [(Event, f64, f64, bool)],
}

#[test]
fn window_follows_acks_losses_and_timeouts() {
    let cases = [
        Case {
            name: "slow start adds one chunk per acknowledged chunk",
            steps: &[
                (Ack(1, 1), 9.0, CAP, false),
                (Ack(5, 4), 13.0, CAP, false),
                (Ack(5, 0), 13.0, CAP, false),
            ],
        },
        Case {
            name: "growth stops at the cap",
            steps: &[
                (Ack(50, 50), 58.0, CAP, false),
                (Ack(56, 6), CAP, CAP, false),
                (Ack(57, 1), CAP, CAP, false),
                (Ack(200, 143), CAP, CAP, false),
            ],
        },
        Case {
            name: "a loss halves the window and starts recovery",
            steps: &[(Loss(10), 4.0, 4.0, true)],
        },
        Case {
            name: "one halving per window of data",
            steps: &[
                (Ack(8, 8), 16.0, CAP, false),
                (Loss(24), 8.0, 8.0, true),
                (Loss(25), 8.0, 8.0, true),
                // Acks during recovery still grow the window (avoidance).
                (Ack(23, 1), 8.125, 8.0, true),
                (Loss(26), 8.125, 8.0, true),
                // Everything sent before the loss is acknowledged: a new
                // loss halves again.
                (Ack(24, 1), 8.125 + 1.0 / 8.125, 8.0, false),
                (
                    Loss(30),
                    (8.125 + 1.0 / 8.125) / 2.0,
                    (8.125 + 1.0 / 8.125) / 2.0,
                    true,
                ),
            ],
        },
        Case {
            name: "congestion avoidance adds one chunk per window",
            steps: &[
                (Loss(10), 4.0, 4.0, true),
                (Ack(10, 1), 4.25, 4.0, false),
                (Ack(14, 4), 4.25 + 4.0 / 4.25, 4.0, false),
            ],
        },
        Case {
            name: "halving never goes below the floor",
            steps: &[
                (Timeout(8), LOSS_WINDOW, 4.0, false),
                (Loss(9), MIN_SSTHRESH, MIN_SSTHRESH, true),
                (Ack(9, 1), 2.5, MIN_SSTHRESH, false),
                (Loss(12), MIN_SSTHRESH, MIN_SSTHRESH, true),
            ],
        },
        Case {
            name: "a timeout drops to one chunk, threshold half the flight",
            steps: &[
                (Timeout(10), LOSS_WINDOW, 5.0, false),
                (Ack(1, 1), 2.0, 5.0, false),
                // Slow start overshoots by what one ack covers.
                (Ack(5, 4), 6.0, 5.0, false),
                (Ack(6, 1), 6.0 + 1.0 / 6.0, 5.0, false),
            ],
        },
        Case {
            name: "a timeout's threshold has the floor too",
            steps: &[
                (Timeout(3), LOSS_WINDOW, MIN_SSTHRESH, false),
                (Timeout(0), LOSS_WINDOW, MIN_SSTHRESH, false),
            ],
        },
        Case {
            name: "a timeout during recovery keeps the recovery point",
            steps: &[
                (Loss(10), 4.0, 4.0, true),
                (Timeout(4), LOSS_WINDOW, MIN_SSTHRESH, true),
                (Loss(11), LOSS_WINDOW, MIN_SSTHRESH, true),
                (Ack(9, 1), 2.0, MIN_SSTHRESH, true),
                (Ack(10, 1), 2.5, MIN_SSTHRESH, false),
            ],
        },
    ];
    for c in cases {
        let mut w = CongestionWindow::new();
        assert_eq!(
            (w.window(), w.ssthresh(), w.in_recovery()),
            (INITIAL_CWND, CAP, false)
        );
        for (i, &(event, cwnd, ssthresh, recovery)) in c.steps.iter().enumerate() {
            match event {
                Ack(ack, n) => w.on_ack(ack, n),
                Loss(next) => w.on_loss(next),
                Timeout(in_flight) => w.on_timeout(in_flight),
            }
            assert_eq!(
                (w.window(), w.ssthresh(), w.in_recovery()),
                (cwnd, ssthresh, recovery),
                "{}: step {i} ({event:?})",
                c.name
            );
        }
    }
}

#[test]
fn allows_strictly_fewer_chunks_than_the_window() {
    let mut w = CongestionWindow::new();
    assert!(w.allows(0) && w.allows(7));
    assert!(!w.allows(8) && !w.allows(9));
    w.on_timeout(8);
    assert!(w.allows(0) && !w.allows(1), "one chunk after a timeout");
    w.on_loss(3);
    w.on_ack(3, 1);
    w.on_ack(4, 1); // 2.5, then 2.9: a fractional window rounds up.
    assert!(w.allows(2) && !w.allows(3), "window {}", w.window());
}
