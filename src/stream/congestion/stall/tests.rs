use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Stalls count as repeated from the second that begins within
/// `STALL_MEMORY` of the one before, and stay so while the next comes
/// within `STALL_MEMORY`; a stall that goes on is one stall.
#[test]
fn a_stall_counts_when_it_comes_again_within_the_memory() {
    let t0 = Instant::now();
    let mut s = Stalls::default();
    let at = |s: &mut Stalls, stall: bool, t: Duration| {
        s.on_sample(stall, t0 + t);
        s.repeated()
    };
    // One stall, however long.
    assert!(!at(&mut s, true, ms(0)));
    assert!(!at(&mut s, true, ms(50)));
    assert!(!at(&mut s, true, ms(100)));
    assert!(!at(&mut s, false, ms(150)));
    // Another, STALL_MEMORY after the first's last sample.
    assert!(at(&mut s, true, ms(100) + STALL_MEMORY));
    // Kept while stalls come within STALL_MEMORY of each other...
    let next = ms(100) + STALL_MEMORY * 2;
    assert!(at(&mut s, false, next - ms(1)));
    assert!(at(&mut s, true, next));
    assert!(at(&mut s, false, next + ms(1)));
    assert!(at(&mut s, false, next + STALL_MEMORY));
    // ...and gone after STALL_MEMORY without one.
    assert!(!at(&mut s, false, next + STALL_MEMORY + ms(1)));
    // Two stalls further apart than that are each alone.
    let later = next + STALL_MEMORY * 3;
    assert!(!at(&mut s, true, later));
    assert!(!at(&mut s, false, later + ms(50)));
    assert!(!at(&mut s, true, later + STALL_MEMORY + ms(51)));
}
