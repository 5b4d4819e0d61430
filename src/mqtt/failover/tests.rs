use super::*;
use Outcome::*;

/// Successive outcomes on a list of `len` brokers, and the broker in use
/// after each (a move marked by `Some`).
fn run(len: usize, steps: &[(Outcome, Option<usize>, usize)]) {
    let mut f = Failover::new(len);
    assert_eq!(f.current(), 0, "starts on the first broker");
    for (i, (outcome, moved, now_on)) in steps.iter().enumerate() {
        assert_eq!(f.on(*outcome), *moved, "step {i}: {outcome:?}");
        assert_eq!(f.current(), *now_on, "step {i}: {outcome:?}");
    }
}

#[test]
fn one_broker_never_moves() {
    run(
        1,
        &[
            (Up, None, 0),
            (Lost, None, 0),
            (Failed, None, 0),
            (Up, None, 0),
        ],
    );
}

#[test]
fn the_first_broker_that_answers_in_order() {
    // A and B down, C answers.
    run(
        3,
        &[(Failed, Some(1), 1), (Failed, Some(2), 2), (Up, None, 2)],
    );
}

#[test]
fn a_lost_connection_moves_to_the_next_and_stays_there() {
    run(
        2,
        &[
            (Up, None, 0),
            // A dies: B.
            (Lost, Some(1), 1),
            (Up, None, 1),
            // A is back meanwhile: nothing happens, no outcome on B says
            // anything about A (no flapping back).
            (Up, None, 1),
            // B dies: A again (wrapping around).
            (Lost, Some(0), 0),
            (Failed, Some(1), 1),
            (Up, None, 1),
        ],
    );
}

#[test]
fn every_broker_down_tries_them_in_turn() {
    run(
        3,
        &[
            (Up, None, 0),
            (Lost, Some(1), 1),
            (Failed, Some(2), 2),
            (Failed, Some(0), 0),
            (Failed, Some(1), 1),
            (Failed, Some(2), 2),
        ],
    );
}

#[test]
fn a_version_fallback_stays_on_the_broker() {
    run(
        2,
        &[
            (VersionFallback, None, 0),
            (Up, None, 0),
            (Lost, Some(1), 1),
            (VersionFallback, None, 1),
            (Failed, Some(0), 0),
        ],
    );
}
