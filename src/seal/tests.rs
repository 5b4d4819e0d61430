use super::*;
use crate::handshake::{pair_for_tests, SessionKeys};
use crate::protocol::{Kind, FLAG_PEER_LOST, FLAG_RESYNC};

fn data(payload: &'static [u8]) -> Frame {
    let mut f = Frame::control(Kind::Data, 42, Bytes::from_static(payload));
    f.seq = 7;
    f.ack = 3;
    f.window = 1000;
    f
}

fn open(keys: &mut SessionKeys, wire: &Bytes) -> Result<Frame, OpenError> {
    keys.rx.open(Frame::decode(wire.clone()).expect("decodes"))
}

#[test]
fn a_sealed_frame_opens_to_what_was_sent_with_its_counter() {
    let (client, mut agent) = pair_for_tests(None);
    for i in 0..3 {
        let wire = client.tx.seal(&data(b"payload").encode());
        assert_eq!(wire.len(), HEADER_LEN + 7 + TAG_LEN);
        // The payload is not on the wire in the clear.
        assert!(!wire.windows(7).any(|w| w == b"payload"));
        let mut want = data(b"payload");
        want.counter = i;
        assert_eq!(open(&mut agent, &wire), Ok(want));
    }
}

#[test]
fn a_flipped_bit_anywhere_is_forged() {
    let (client, mut agent) = pair_for_tests(None);
    let wire = client.tx.seal(&data(b"some bytes").encode());
    let mut forged = 0;
    for byte in 0..wire.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = wire.to_vec();
            bad[byte] ^= bit;
            let Ok(f) = Frame::decode(Bytes::from(bad)) else {
                continue; // The header's own checks caught it.
            };
            match agent.rx.open(f) {
                Err(OpenError::Forged) => forged += 1,
                other => panic!("byte {byte} bit {bit:#x}: {other:?}"),
            }
        }
    }
    assert!(forged > 100, "{forged}");
    assert_eq!(agent.rx.forged(), forged);
    // Forgeries did not move the window: the original still opens.
    assert!(open(&mut agent, &wire).is_ok());
}

#[test]
fn a_replay_is_refused_and_reordering_is_not() {
    let (client, mut agent) = pair_for_tests(None);
    let wires: Vec<Bytes> = (0..5)
        .map(|_| client.tx.seal(&data(b"x").encode()))
        .collect();
    for i in [3, 0, 4, 1, 2] {
        assert!(open(&mut agent, &wires[i]).is_ok(), "{i}");
    }
    for (i, w) in wires.iter().enumerate() {
        assert_eq!(
            open(&mut agent, w).err(),
            Some(OpenError::Replayed(i as u64))
        );
    }
    assert_eq!((agent.rx.replayed(), agent.rx.forged()), (5, 0));
}

#[test]
fn the_window_forgets_what_is_too_old_and_slots_are_reused() {
    let mut w = ReplayWindow::default();
    assert!(w.fresh(0));
    w.mark(0);
    assert!(!w.fresh(0));
    w.mark(REPLAY_WINDOW);
    assert!(!w.fresh(0), "too old");
    assert!(w.fresh(1) && w.fresh(REPLAY_WINDOW - 1));
    w.mark(REPLAY_WINDOW + 5);
    // The slot of 5 now holds REPLAY_WINDOW + 5; 6 is still fresh, 5 too old.
    assert!(w.fresh(6) && !w.fresh(5));
    assert!(!w.fresh(REPLAY_WINDOW) && !w.fresh(REPLAY_WINDOW + 5));
    // A jump beyond the whole window clears it.
    w.mark(10 * REPLAY_WINDOW);
    assert!(w.fresh(10 * REPLAY_WINDOW - 1));
    assert!(!w.fresh(10 * REPLAY_WINDOW));
}

#[test]
fn frames_of_another_session_or_direction_are_forged() {
    let (_, mut agent) = pair_for_tests(None);
    let (other_client, _) = pair_for_tests(None);
    let wire = other_client.tx.seal(&data(b"x").encode());
    assert_eq!(open(&mut agent, &wire).err(), Some(OpenError::Forged));
    // The agent's own frame, reflected at it.
    let wire = agent.tx.seal(&data(b"x").encode());
    assert_eq!(open(&mut agent, &wire).err(), Some(OpenError::Forged));
}

#[test]
fn unsealed_kinds_pass_and_sealed_kinds_in_the_clear_do_not() {
    let (_, mut agent) = pair_for_tests(None);
    // The client's last will is unsealed: it passes, for the stream to
    // take as a hint only.
    let mut will = Frame::control(Kind::Reset, 42, Bytes::new());
    will.flags = FLAG_PEER_LOST;
    assert!(open(&mut agent, &will.encode()).is_ok());
    // A RESET, ACK or DATA without a tag is too short to decode...
    for (kind, flags) in [(Kind::Reset, 0), (Kind::Ack, FLAG_RESYNC), (Kind::Data, 0)] {
        let mut f = Frame::control(kind, 42, Bytes::new());
        f.flags = flags;
        assert!(Frame::decode(f.encode()).is_err(), "{kind:?}");
    }
    // ... or, with bytes enough, forged.
    let f = data(&[0; 40]);
    assert_eq!(open(&mut agent, &f.encode()).err(), Some(OpenError::Forged));
}

#[test]
fn a_frame_sealed_in_place_keeps_its_buffer_and_opens_again_for_its_sealer_only() {
    let (client, mut agent) = pair_for_tests(None);
    let (other, _) = pair_for_tests(None);
    let plain = data(b"payload").encode();
    let mut buf = BytesMut::with_capacity(plain.len() + TAG_LEN);
    buf.extend_from_slice(&plain);
    let at = buf.as_ptr();
    let wire = client.tx.seal_in_place(buf);
    assert_eq!(wire.as_ptr(), at, "the tag fits the room behind: no copy");
    assert_eq!(counter_of(&wire), 0);
    assert_eq!(
        client.tx.unseal_own(&wire),
        Some(Bytes::from_static(b"payload"))
    );
    // Only the sealer's own frames, unchanged, open.
    assert_eq!(other.tx.unseal_own(&wire), None);
    assert_eq!(agent.tx.unseal_own(&wire), None);
    let mut changed = wire.to_vec();
    changed[HEADER_LEN] ^= 1;
    assert_eq!(client.tx.unseal_own(&changed), None);
    assert_eq!(
        client.tx.unseal_own(&wire[..HEADER_LEN + TAG_LEN - 1]),
        None
    );
    // Opening it for a retransmission did not spend its counter at the peer.
    let mut want = data(b"payload");
    want.counter = 0;
    assert_eq!(open(&mut agent, &wire), Ok(want));
}
