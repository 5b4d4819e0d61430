use super::*;

const RTT: Duration = Duration::from_millis(200);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn nothing_published_holds_nothing() {
    assert!(!BrokerNagle::default().holds(Instant::now()));
}

#[test]
fn a_frame_holds_the_next_for_the_peers_round_trip() {
    let t = Instant::now();
    let mut n = BrokerNagle::default();
    n.published(t, RTT);
    assert!(n.holds(t));
    assert!(n.holds(t + RTT - ms(1)));
    assert!(!n.holds(t + RTT));
}

/// The ssh key exchange over a 200 ms path: our delayed pure ACK went
/// out, the reply 73 ms later waited for it (padded, its PAD's tail
/// waits), and the next reply 222 ms later still finds that tail
/// unacknowledged: it left only when the ACK's segment was acknowledged.
#[test]
fn a_held_tail_leaves_when_the_one_before_is_acknowledged() {
    let t = Instant::now();
    let mut n = BrokerNagle::default();
    n.published(t, RTT);
    assert!(n.holds(t + ms(73)));
    n.published(t + ms(73), RTT);
    // The tail left at 200 ms: in flight until 400 ms.
    assert!(n.holds(t + ms(295)));
    assert!(n.holds(t + ms(399)));
    assert!(!n.holds(t + ms(400)));
    // Published at 295 ms (held), its own tail leaves at 400 ms.
    n.published(t + ms(295), RTT);
    assert!(n.holds(t + ms(599)));
    assert!(!n.holds(t + ms(600)));
}

/// A stream of chunks (a bulk transfer) does not push the guess into the
/// future: the held tails join into one, which leaves once per round trip.
#[test]
fn a_burst_moves_the_guess_once_per_round_trip() {
    let t = Instant::now();
    let mut n = BrokerNagle::default();
    // A second of chunks, one a millisecond.
    for i in 0..1000 {
        n.published(t + ms(i), RTT);
    }
    // Tails leave at 200, 400, ... 1,000 ms, each joining the chunks
    // published meanwhile; the last is acknowledged at 1,200 ms.
    assert!(n.holds(t + ms(1199)));
    assert!(!n.holds(t + ms(1200)));
}

#[test]
fn after_a_quiet_round_trip_a_frame_leaves_at_once() {
    let t = Instant::now();
    let mut n = BrokerNagle::default();
    n.published(t, RTT);
    n.published(t + ms(500), ms(40));
    assert!(n.holds(t + ms(539)));
    assert!(!n.holds(t + ms(540)));
}
