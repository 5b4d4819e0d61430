use super::*;

#[test]
fn backoff_grows_and_is_capped() {
    assert!(backoff(1) <= BACKOFF_MIN && backoff(1) >= BACKOFF_MIN / 2);
    for a in 1..40 {
        assert!(backoff(a) <= BACKOFF_MAX);
    }
    assert!(backoff(30) >= BACKOFF_MAX / 2);
}

#[test]
fn mqtt_5_falls_back_to_3_1_1_only_before_it_was_ever_up() {
    use V5Verdict::*;
    let auto = || VersionChoice {
        current: Version::V5,
        settled: false,
        logged: false,
    };
    // (verdicts of successive failed attempts, expected (version, at once) after each)
    type Steps = &'static [(Version, bool)];
    let cases: &[(&[V5Verdict], Steps)] = &[
        // Refused by code: 3.1.1 at once, and for good.
        (
            &[Refused, Unrelated],
            &[(Version::V311, true), (Version::V311, false)],
        ),
        // Closed or silent instead of an answer: 3.1.1 at once; if that fails too,
        // 5 again after the backoff.
        (
            &[NoAnswer, Unrelated, NoAnswer],
            &[
                (Version::V311, true),
                (Version::V5, false),
                (Version::V311, true),
            ],
        ),
        // Broker down, wrong password, TLS: no fallback.
        (
            &[Unrelated, Unrelated],
            &[(Version::V5, false), (Version::V5, false)],
        ),
    ];
    for (i, (verdicts, expected)) in cases.iter().enumerate() {
        let mut v = auto();
        let got: Vec<_> = verdicts.iter().map(|&x| v.after_failure(x)).collect();
        assert_eq!(&got, expected, "case {i}");
    }
    // Forced, or once a connection was up: never changes.
    let mut v = VersionChoice {
        settled: true,
        ..auto()
    };
    assert_eq!(v.after_failure(Refused), (Version::V5, false));
}
