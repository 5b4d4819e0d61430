use super::*;

/// Events fed to a fresh segmenter, and what each returns.
#[derive(Debug, Clone, Copy)]
enum Ev {
    /// A timeout with this largest lost message; expect a shrink or not.
    Timeout(usize, bool),
    Delivered(usize),
    Link(bool),
    Ceiling(usize),
}
use Ev::*;

fn run(events: &[Ev]) -> Segmenter {
    let mut s = Segmenter::new();
    for (i, &e) in events.iter().enumerate() {
        match e {
            Timeout(n, want) => assert_eq!(s.on_timeout(n), want, "event {i}: {e:?}"),
            Delivered(n) => s.on_delivered(n),
            Link(up) => s.set_link_up(up),
            Ceiling(n) => s.set_ceiling(n),
        }
    }
    s
}

#[test]
fn shrinks_after_strikes_and_only_then() {
    // (events, limit afterwards)
    let cases: &[(&[Ev], usize)] = &[
        (&[], MAX_FRAME),
        // One timeout is noise.
        (&[Timeout(MAX_FRAME, false)], MAX_FRAME),
        // Two in a row: the next step down.
        (
            &[Timeout(MAX_FRAME, false), Timeout(MAX_FRAME, true)],
            32512,
        ),
        // A step per two timeouts, down to a size that works.
        (
            &[
                Timeout(MAX_FRAME, false),
                Timeout(MAX_FRAME, true),
                Timeout(32512, false),
                Timeout(32512, true),
                Timeout(16128, false),
                Timeout(16128, true),
                Delivered(7936),
            ],
            7936,
        ),
        // A delivery of the suspect size in between clears the strikes.
        (
            &[
                Timeout(MAX_FRAME, false),
                Delivered(MAX_FRAME),
                Timeout(MAX_FRAME, false),
            ],
            MAX_FRAME,
        ),
        // A smaller delivery does not: keystrokes get through a limit.
        (
            &[
                Timeout(MAX_FRAME, false),
                Delivered(100),
                Timeout(MAX_FRAME, true),
            ],
            32512,
        ),
        // Never below what is known to arrive.
        (
            &[
                Delivered(20_000),
                Timeout(32512, false),
                Timeout(32512, true),
            ],
            20_000,
        ),
        // Sizes known to arrive never count.
        (
            &[
                Delivered(MAX_FRAME),
                Timeout(MAX_FRAME, false),
                Timeout(MAX_FRAME, false),
                Timeout(MAX_FRAME, false),
            ],
            MAX_FRAME,
        ),
        // Timeouts while the connection is down do not count, and an
        // outage clears the strikes.
        (
            &[
                Link(false),
                Timeout(MAX_FRAME, false),
                Timeout(MAX_FRAME, false),
                Link(true),
                Timeout(MAX_FRAME, false),
            ],
            MAX_FRAME,
        ),
        (
            &[
                Timeout(MAX_FRAME, false),
                Link(false),
                Link(true),
                Timeout(MAX_FRAME, false),
            ],
            MAX_FRAME,
        ),
        // A different size restarts the count.
        (
            &[
                Timeout(MAX_FRAME, false),
                Timeout(20_000, false),
                Timeout(MAX_FRAME, false),
            ],
            MAX_FRAME,
        ),
        // Nothing below the floor.
        (
            &[
                Ceiling(MIN_MESSAGE),
                Timeout(MIN_MESSAGE, false),
                Timeout(MIN_MESSAGE, false),
            ],
            MIN_MESSAGE,
        ),
        // Messages sent before the connection's limit fell are no
        // evidence about the new limit.
        (
            &[
                Ceiling(16128),
                Timeout(MAX_FRAME, false),
                Timeout(MAX_FRAME, false),
            ],
            16128,
        ),
        // The ceiling caps the estimate and is itself clamped.
        (&[Ceiling(10)], MIN_MESSAGE),
        (&[Ceiling(1 << 30)], MAX_FRAME),
    ];
    for (i, (events, limit)) in cases.iter().enumerate() {
        let s = run(events);
        assert_eq!(s.limit(), *limit, "case {i}: {events:?}");
        assert_eq!(s.max_chunk(), limit - FRAME_OVERHEAD);
        assert_eq!(s.max_fragment(), limit - FRAME_OVERHEAD - FRAG_PREFIX_LEN);
    }
}

#[test]
fn a_shrink_is_reported_once_when_its_size_arrives() {
    let mut s = run(&[Timeout(MAX_FRAME, false), Timeout(MAX_FRAME, true)]);
    assert_eq!(s.take_discovery(), None, "not confirmed yet");
    s.on_delivered(1000);
    assert_eq!(s.take_discovery(), None, "a small message confirms nothing");
    s.on_delivered(32512);
    assert_eq!(
        s.take_discovery(),
        Some(Discovery {
            failed: MAX_FRAME,
            size: 32512
        })
    );
    s.on_delivered(32512);
    assert_eq!(s.take_discovery(), None, "once");
    // A second shrink names the size that failed last.
    let mut s = run(&[
        Timeout(MAX_FRAME, false),
        Timeout(MAX_FRAME, true),
        Timeout(32512, false),
        Timeout(32512, true),
        Delivered(16128),
    ]);
    assert_eq!(
        s.take_discovery(),
        Some(Discovery {
            failed: 32512,
            size: 16128
        })
    );
}
