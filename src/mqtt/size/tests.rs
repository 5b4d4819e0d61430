use super::*;

const SOON: Duration = Duration::from_millis(50);
const LONG: Duration = SIZE_DROP_WINDOW;
const BIG: u32 = 65_650;

#[test]
fn two_quick_drops_after_big_packets_lower_the_limit() {
    // (drops as (lived, largest packet), the limit each one sets)
    type Drops = &'static [((Duration, u32), Option<u32>)];
    let cases: &[(&str, Drops)] = &[
        ("one drop is a restart", &[((SOON, BIG), None)]),
        (
            "two in a row",
            &[((SOON, BIG), None), ((SOON, BIG), Some(32512))],
        ),
        (
            "step by step",
            &[
                ((SOON, BIG), None),
                ((SOON, BIG), Some(32512)),
                ((SOON, 32512), None),
                ((SOON, 32512), Some(16128)),
            ],
        ),
        (
            "a long-lived connection in between clears the strikes",
            &[
                ((SOON, BIG), None),
                ((LONG, BIG), None),
                ((SOON, BIG), None),
            ],
        ),
        (
            "a drop without big packets clears them",
            &[
                ((SOON, BIG), None),
                ((SOON, 300), None),
                ((SOON, BIG), None),
            ],
        ),
        (
            "another size restarts the count",
            &[
                ((SOON, BIG), None),
                ((SOON, 40_000), None),
                ((SOON, BIG), None),
            ],
        ),
        (
            "never below the floor",
            &[
                ((SOON, MIN_PACKET as u32 + 1), None),
                ((SOON, MIN_PACKET as u32 + 1), Some(MIN_PACKET as u32)),
            ],
        ),
    ];
    for (name, drops) in cases {
        let mut d = DropSizer::default();
        for (i, &((lived, largest), want)) in drops.iter().enumerate() {
            let got = d.on_drop(lived, largest).map(|l| l.limit);
            assert_eq!(got, want, "{name}: drop {i}");
        }
    }
}

#[test]
fn a_lowered_limit_is_confirmed_once_by_a_connection_that_lives() {
    let mut d = DropSizer::default();
    d.on_drop(SOON, BIG);
    let lowered = d.on_drop(SOON, BIG).expect("lowered");
    assert_eq!(d.on_alive(CONFIRM_AFTER / 2), None, "too early");
    assert_eq!(d.on_alive(CONFIRM_AFTER), Some(lowered));
    assert_eq!(d.on_alive(CONFIRM_AFTER * 2), None, "once");
    // A drop before the confirmation forgets it.
    d.on_drop(SOON, 32512);
    d.on_drop(SOON, 32512).expect("lowered again");
    d.on_drop(SOON, 100);
    assert_eq!(d.on_alive(CONFIRM_AFTER), None);
}
