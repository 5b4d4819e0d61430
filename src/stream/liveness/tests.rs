//! The liveness rules on synthetic instants: `at(s)` is `s` seconds after
//! the session began.

use super::*;

fn at(t0: Instant, secs: f64) -> Instant {
    t0 + Duration::from_secs_f64(secs)
}

fn start() -> (Liveness, Instant) {
    let t0 = Instant::now();
    (Liveness::new(t0), t0)
}

#[test]
fn a_peer_that_sent_data_and_went_quiet_is_probed_once() {
    let (mut l, t0) = start();
    assert_eq!(
        l.probe_deadline(false),
        None,
        "nothing heard: nothing to probe"
    );
    l.on_heard(at(t0, 1.0), true);
    assert_eq!(l.probe_deadline(false), Some(at(t0, 1.0) + PROBE_AFTER));
    assert_eq!(l.probe_deadline(true), None, "our retransmissions will do");
    assert!(!l.probe_due(at(t0, 1.9), false));
    assert!(!l.probe_due(at(t0, 2.0), true));
    assert!(l.probe_due(at(t0, 2.0), false));
    assert_eq!(l.probe_deadline(false), None, "once");
    assert!(!l.probe_due(at(t0, 5.0), false));
    // The answer (an ACK) is not data: no further probe.
    l.on_heard(at(t0, 2.1), false);
    assert_eq!(l.probe_deadline(false), None);
    // More data: probed again after the next quiet spell.
    l.on_heard(at(t0, 30.0), true);
    assert!(l.probe_due(at(t0, 31.0), false));
}

#[test]
fn an_idle_session_is_not_a_stalled_one() {
    let (mut l, t0) = start();
    l.on_heard(at(t0, 1.0), false);
    for s in [6.0, 20.0, 59.0] {
        l.check_stall(at(t0, s), false);
        assert_eq!(l.take_notice(), None, "at {s} s");
    }
    assert_eq!(l.stall_deadline(false), None);
}

#[test]
fn unanswered_data_or_probe_for_5_s_is_a_stall_said_once_then_back() {
    for by_probe in [false, true] {
        let (mut l, t0) = start();
        l.on_heard(at(t0, 1.0), by_probe);
        if by_probe {
            assert!(l.probe_due(at(t0, 2.0), false));
        }
        let waiting = !by_probe;
        assert_eq!(l.stall_deadline(waiting), Some(at(t0, 6.0)));
        l.check_stall(at(t0, 5.9), waiting);
        assert_eq!(l.take_notice(), None);
        l.check_stall(at(t0, 6.0), waiting);
        assert_eq!(
            l.take_notice(),
            Some(Notice::Stalled {
                silent: STALL_NOTICE
            })
        );
        l.check_stall(at(t0, 9.0), waiting);
        assert_eq!(l.take_notice(), None, "said once");
        assert_eq!(l.stall_deadline(waiting), None);
        l.on_heard(at(t0, 12.0), false);
        assert_eq!(l.take_notice(), Some(Notice::Back));
        l.on_heard(at(t0, 13.0), false);
        assert_eq!(l.take_notice(), None, "back once");
    }
}

#[test]
fn time_the_process_was_stopped_is_not_silence() {
    let (mut l, t0) = start();
    l.on_heard(at(t0, 1.0), false);
    assert_eq!(l.take_notice(), None);
    // Stopped for five minutes until 309 s: the gap does not count, and
    // is news.
    l.on_paused(Duration::from_secs(300), at(t0, 309.0));
    assert_eq!(l.last_heard(), at(t0, 301.0));
    assert_eq!(
        l.take_notice(),
        Some(Notice::Woke {
            stopped: Duration::from_secs(300)
        })
    );
    // Never later than now.
    l.on_paused(Duration::from_secs(100), at(t0, 320.0));
    assert_eq!(l.last_heard(), at(t0, 320.0));
}

#[test]
fn a_probe_sent_before_a_pause_waits_its_time_after_it() {
    let (mut l, t0) = start();
    l.on_heard(at(t0, 1.0), true);
    assert!(l.probe_due(at(t0, 2.0), false));
    l.on_paused(Duration::from_secs(300), at(t0, 302.0));
    l.check_stall(at(t0, 302.0), false);
    assert!(matches!(l.take_notice(), Some(Notice::Woke { .. })));
    assert_eq!(l.take_notice(), None, "the pause is not the peer's silence");
    l.check_stall(at(t0, 306.0), false);
    assert!(matches!(l.take_notice(), Some(Notice::Stalled { .. })));
}
