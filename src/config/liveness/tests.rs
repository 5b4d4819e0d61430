use super::*;

fn resolved(flags: [Option<u64>; 3], file: [Option<u64>; 3]) -> Result<[u64; 3], String> {
    Liveness::resolve(flags, file)
        .map(|l| {
            [
                l.probe_interval.as_secs(),
                l.link_timeout.as_secs(),
                l.resume_timeout.as_secs(),
            ]
        })
        .map_err(|e| e.to_string())
}

#[test]
fn flags_beat_the_file_which_beats_the_defaults() {
    let none = [None; 3];
    assert_eq!(resolved(none, none), Ok([20, 5, 600]));
    // A short resume timeout shortens the probing's defaults to fit.
    assert_eq!(resolved([None, None, Some(5)], none), Ok([1, 1, 5]));
    assert_eq!(resolved(none, [None, None, Some(30)]), Ok([10, 5, 30]));
    assert_eq!(
        resolved([Some(60), None, None], [Some(30), Some(8), Some(900)]),
        Ok([60, 8, 900])
    );
}

#[test]
fn values_that_cannot_work_are_refused_naming_the_setting() {
    let none = [None; 3];
    for (flags, file, error) in [
        (
            [Some(0), None, None],
            none,
            "--probe-interval must be at least 1 second",
        ),
        (
            [None, Some(0), None],
            none,
            "--link-timeout must be at least 1 second",
        ),
        (
            [None, None, Some(0)],
            none,
            "--resume-timeout must be at least 1 second",
        ),
        (
            none,
            [None, Some(0), None],
            "key 'link-timeout': must be at least 1 second",
        ),
        (
            [Some(900), None, None],
            none,
            "--probe-interval 900 s plus --link-timeout 5 s is not shorter than \
             --resume-timeout 600 s: a dead link would be noticed only after its sessions \
             gave up",
        ),
        (
            [Some(20), None, Some(25)],
            none,
            "--probe-interval 20 s plus --link-timeout 5 s is not shorter than \
             --resume-timeout 25 s: a dead link would be noticed only after its sessions \
             gave up",
        ),
        (
            [None, None, Some(2)],
            none,
            "--probe-interval 1 s plus --link-timeout 1 s is not shorter than \
             --resume-timeout 2 s: a dead link would be noticed only after its sessions \
             gave up",
        ),
    ] {
        assert_eq!(
            resolved(flags, file),
            Err(error.to_owned()),
            "{flags:?} {file:?}"
        );
    }
    assert_eq!(resolved([None, None, Some(26)], none), Ok([8, 5, 26]));
    assert_eq!(resolved([Some(20), None, Some(26)], none), Ok([20, 5, 26]));
}
