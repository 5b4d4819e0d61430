//! Message size limits: discovered, known in advance, and told to the
//! peer.

use super::*;
use crate::protocol::MIN_MESSAGE;

/// A broker that silently drops messages above a size limit: the streams
/// discover a size that passes, re-send what was lost as fragments, and
/// the bytes arrive intact, with loss on top too; each direction reports
/// what it discovered once.
#[test]
fn silent_size_limits_are_discovered() {
    // (limit, faults, smallest size the senders may settle on)
    let cases = [
        (16_000, CLEAN, 7936),
        (
            16_000,
            Faults {
                loss: 0.05,
                ..CLEAN
            },
            768,
        ),
        (1000, CLEAN, 768),
        (MIN_MESSAGE + 10, CLEAN, MIN_MESSAGE),
    ];
    for (limit, faults, floor) in cases {
        let mut sim = Sim::new(
            11,
            faults,
            pattern(2_000_000, 1),
            pattern(300_000, 2),
            Config::default(),
        );
        sim.max_message = limit;
        sim.run_until_done(600_000);
        sim.assert_intact();
        assert!(sim.too_large > 0, "{limit}: the limit was never hit");
        for end in [&mut sim.a, &mut sim.b] {
            let size = end.s.send.segment().limit();
            assert!(size <= limit && size >= floor, "{limit}: settled on {size}");
            let d = end.s.take_size_discovery().expect("a discovery to report");
            assert_eq!(d.size, size, "{limit}");
            assert!(d.failed > limit, "{limit}: {d:?}");
            assert_eq!(end.s.take_size_discovery(), None, "{limit}: reported once");
        }
        eprintln!(
            "{limit}: {:?} {:?} dropped {}",
            sim.a.s.stats(),
            sim.b.s.stats(),
            sim.too_large
        );
    }
}

/// A limit the connection knows (the broker announced it, or
/// `--max-message-size`): chunks are cut to fit and nothing is dropped.
#[test]
fn a_known_limit_cuts_chunks_and_loses_nothing() {
    let mut sim = Sim::new(
        5,
        CLEAN,
        pattern(1_000_000, 3),
        pattern(10_000, 4),
        Config::default(),
    );
    sim.max_message = 5000;
    sim.a.s.set_max_message(5000);
    sim.b.s.set_max_message(5000);
    sim.run_until_done(600_000);
    sim.assert_intact();
    assert_eq!(sim.too_large, 0);
    assert_eq!(sim.a.s.stats().retransmits, 0);
}

#[test]
fn each_side_tells_the_other_what_it_receives_well() {
    let now = Instant::now();
    let mut s = Stream::new(1, Config::default(), 1 << 20, now);
    assert_eq!(s.peer_recv_packet(), None, "nothing heard yet");
    s.set_recv_limit(16);
    s.send(Bytes::from_static(b"x"), now);
    let f = s.poll_transmit(now).expect("a data frame");
    assert_eq!(f.recv_limit, 16, "our limit rides on our frames");
    let mut ack = Frame::control(Kind::Ack, 1, Bytes::new());
    ack.ack = 1;
    ack.window = 1 << 20;
    ack.recv_limit = 16;
    s.on_frame(ack.clone(), now).unwrap();
    assert_eq!(s.peer_recv_packet(), Some(4096));
    ack.recv_limit = 0;
    s.on_frame(ack, now).unwrap();
    assert_eq!(s.peer_recv_packet(), None, "the latest frame counts");
}
