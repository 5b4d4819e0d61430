//! Whole transfers: bytes arrive intact under loss, duplication and
//! reordering, with either order of half-close and a stalled reader.

use super::*;
use proptest::prelude::*;

#[test]
fn transfers_intact_under_faults() {
    let cases = [
        ("clean", CLEAN),
        ("loss", Faults { loss: 0.1, ..CLEAN }),
        ("dup", Faults { dup: 0.2, ..CLEAN }),
        (
            "reorder",
            Faults {
                reorder: 0.3,
                ..CLEAN
            },
        ),
        (
            "everything",
            Faults {
                loss: 0.15,
                dup: 0.1,
                reorder: 0.2,
                latency_ms: 20,
            },
        ),
    ];
    for (name, faults) in cases {
        let mut sim = Sim::new(
            42,
            faults,
            pattern(3_000_000, 1),
            pattern(500_000, 2),
            Config::default(),
        );
        sim.run_until_done(600_000);
        sim.assert_intact();
        eprintln!("{name}: a {:?} b {:?}", sim.a.s.stats(), sim.b.s.stats());
    }
}

#[test]
fn small_chunks_and_empty_directions() {
    for (a_len, b_len) in [(0, 0), (1, 0), (0, 1), (1, 1), (100_000, 0)] {
        let mut sim = Sim::new(
            3,
            CLEAN,
            pattern(a_len, 5),
            pattern(b_len, 6),
            Config::default(),
        );
        sim.chunk = 1000;
        sim.run_until_done(60_000);
        sim.assert_intact();
    }
}

#[test]
fn both_orders_of_half_close() {
    for a_first in [true, false] {
        let mut sim = Sim::new(
            9,
            CLEAN,
            pattern(50_000, 1),
            pattern(70_000, 2),
            Config::default(),
        );
        let (first, second) = if a_first {
            (&mut sim.a, &mut sim.b)
        } else {
            (&mut sim.b, &mut sim.a)
        };
        second.close_after_send = false;
        let _ = first;
        // Run until the first side's FIN has reached the other side.
        for _ in 0..10_000 {
            sim.step();
            let second = if a_first { &sim.b } else { &sim.a };
            if second.s.read_closed() {
                break;
            }
        }
        let (first, second) = if a_first {
            (&mut sim.a, &mut sim.b)
        } else {
            (&mut sim.b, &mut sim.a)
        };
        assert!(second.s.read_closed(), "half-close reached the peer");
        assert!(!first.s.is_done() && !second.s.is_done());
        // The other direction still flows after the half-close.
        second.to_send.extend_from_slice(b"after half-close");
        second.close_after_send = true;
        sim.run_until_done(10_000);
        sim.assert_intact();
    }
}

#[test]
fn stalled_reader_bounds_memory_then_resumes() {
    let cfg = Config {
        recv_window: 256 * 1024,
        ..Config::default()
    };
    let mut sim = Sim::new(5, CLEAN, pattern(5_000_000, 1), Vec::new(), cfg);
    sim.b.reader_paused = true;
    for _ in 0..20_000 {
        sim.step();
    }
    // The sender stopped: nothing beyond the window was sent or buffered.
    let limit = cfg.recv_window as usize + MAX_CHUNK;
    assert!(
        sim.b.max_buffered <= limit,
        "{} > {limit}",
        sim.b.max_buffered
    );
    assert!(
        sim.a.max_unacked <= limit,
        "{} > {limit}",
        sim.a.max_unacked
    );
    assert!(sim.a.sent < 1_000_000, "sender kept going: {}", sim.a.sent);
    // Window probes keep the peer alive and the sender learns of the reopen.
    sim.b.reader_paused = false;
    sim.run_until_done(120_000);
    sim.assert_intact();
}

#[test]
fn window_exhaustion_with_loss_of_window_updates() {
    let cfg = Config {
        recv_window: 64 * 1024,
        ..Config::default()
    };
    let faults = Faults { loss: 0.3, ..CLEAN };
    let mut sim = Sim::new(11, faults, pattern(2_000_000, 3), pattern(10, 4), cfg);
    sim.b.reader_paused = true;
    for _ in 0..5_000 {
        sim.step();
    }
    sim.b.reader_paused = false;
    sim.run_until_done(600_000);
    sim.assert_intact();
    assert!(sim.b.max_buffered <= cfg.recv_window as usize + MAX_CHUNK);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_faults_never_corrupt(seed in any::<u64>(),
                                   loss in 0.0f64..0.3, dup in 0.0f64..0.3, reorder in 0.0f64..0.5,
                                   a_len in 0usize..300_000, b_len in 0usize..300_000,
                                   chunk in 1usize..MAX_CHUNK) {
        let faults = Faults { loss, dup, reorder, latency_ms: 3 };
        let mut sim = Sim::new(seed, faults, pattern(a_len, 1), pattern(b_len, 2), Config::default());
        sim.chunk = chunk;
        sim.run_until_done(2_000_000);
        sim.assert_intact();
    }
}
