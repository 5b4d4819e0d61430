use super::*;
use crate::protocol::{Frame, Kind};
use crate::stream::Config;
use std::time::Duration;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An agent's session that gathers into `uploads`.
fn agent_session(sid: u64, uploads: &Arc<DrainsTogether>, now: Instant) -> Stream {
    let mut s = Stream::new(sid, Config::default(), 64 * 1024, now);
    s.gather_drains(uploads.clone());
    s
}

fn report(s: &mut Stream, epoch: u64, base: Duration, now: Instant) {
    let r = DrainReport {
        epoch,
        base,
        rate: 512.0 * 1024.0,
    };
    s.on_frame(r.frame(s.sid()), now).expect("a PAD");
}

/// The drains a session has for its peer now.
fn told(s: &mut Stream, now: Instant) -> Vec<DrainsShared> {
    std::iter::from_fn(|| s.poll_transmit_parts(now))
        .filter(|(f, _)| f.kind == Kind::Pad)
        .filter_map(|(f, _)| DrainsShared::decode(&f.payload))
        .collect()
}

/// The agent tells each client what the drains of its moment measured,
/// once the drains of another client's session came in too: at once to
/// the one that reported last, and to the other with its next frame.
#[test]
fn the_agent_tells_each_client_the_drains_of_its_moment() {
    let now = Instant::now();
    let epoch = congestion::epoch(now);
    let uploads = Arc::new(DrainsTogether::default());
    let (mut a, mut b) = (
        agent_session(1, &uploads, now),
        agent_session(2, &uploads, now),
    );
    report(&mut a, epoch, ms(50), now);
    assert!(told(&mut a, now).is_empty(), "alone: nothing to tell");
    report(&mut b, epoch, ms(62), now);
    let to_b = told(&mut b, now);
    assert_eq!(to_b.len(), 1);
    assert_eq!(
        (to_b[0].epoch, to_b[0].least, to_b[0].sessions),
        (epoch, ms(50), 2)
    );
    assert!(told(&mut a, now).is_empty(), "A has sent nothing since");
    let ack = Frame::control(Kind::Ack, 1, bytes::Bytes::new());
    a.on_frame(ack.clone(), now).expect("an ack");
    assert_eq!(told(&mut a, now), to_b);
    // Told once.
    a.on_frame(ack, now).expect("an ack");
    assert!(told(&mut a, now).is_empty());
}

/// Bad input: a peer's report counts once per moment, and one far from
/// the agent's clock not at all, so a peer cannot count as more sessions
/// than it is (their floors move the others' bases) nor hold off the
/// others' drains with a moment to come.
#[test]
fn a_peer_counts_once_and_only_in_its_time() {
    let now = Instant::now();
    let epoch = congestion::epoch(now);
    let uploads = Arc::new(DrainsTogether::default());
    let mut liar = agent_session(1, &uploads, now);
    for _ in 0..3 {
        report(&mut liar, epoch, Duration::ZERO, now);
    }
    report(&mut liar, epoch - 1, Duration::ZERO, now);
    let shared = uploads.shared().expect("one report");
    assert_eq!((shared.epoch, shared.sessions), (epoch, 1));
    report(&mut liar, epoch + REPORT_EPOCHS + 1, Duration::ZERO, now);
    report(&mut liar, u64::MAX, Duration::ZERO, now);
    assert_eq!(uploads.shared(), Some(shared));
    // An honest session's report of the moment still counts.
    let mut b = agent_session(2, &uploads, now);
    report(&mut b, epoch, ms(62), now);
    assert_eq!(uploads.shared().map(|s| s.sessions), Some(2));
}

/// A client's session does not gather: a report from its peer (the agent
/// sends none) changes nothing, and nothing is told.
#[test]
fn a_session_that_does_not_gather_ignores_reports() {
    let now = Instant::now();
    let mut s = Stream::new(1, Config::default(), 64 * 1024, now);
    s.report_drains();
    report(&mut s, congestion::epoch(now), ms(1), now);
    assert!(told(&mut s, now).is_empty());
}
