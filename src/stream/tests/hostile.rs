//! Frames a peer should not send: rejected, and never a reason to buffer
//! more than the window.

use super::*;
use crate::protocol::MAX_INFLIGHT_CHUNKS;
use proptest::prelude::*;

#[test]
fn rejects_invalid_frames() {
    let now = Instant::now();
    let mut s = Stream::new(1, Config::default(), 1 << 20, now);
    let mut f = Frame::control(Kind::Data, 2, Bytes::from_static(b"x"));
    assert_eq!(s.on_frame(f.clone(), now), Err(Rejected::WrongSession));
    f.sid = 1;
    f.ack = 5;
    assert_eq!(
        s.on_frame(f.clone(), now),
        Err(Rejected::AckBeyondSent { ack: 5, next: 0 })
    );
    f.ack = 0;
    f.seq = MAX_INFLIGHT_CHUNKS;
    assert_eq!(
        s.on_frame(f.clone(), now),
        Err(Rejected::OutsideWindow {
            seq: MAX_INFLIGHT_CHUNKS
        })
    );
    // FIN at 0, then data at 1 is after the FIN.
    f.seq = 0;
    f.flags = FLAG_FIN;
    f.payload = Bytes::new();
    s.on_frame(f.clone(), now).unwrap();
    assert!(s.read_closed());
    f.seq = 1;
    f.flags = 0;
    assert_eq!(s.on_frame(f, now), Err(Rejected::AfterFin { seq: 1 }));
    let open = Frame::control(Kind::Open, 1, Bytes::new());
    assert_eq!(s.on_frame(open, now), Err(Rejected::NotStream(Kind::Open)));
}

#[test]
fn hostile_peer_cannot_grow_buffers() {
    // A peer that ignores our window and floods distinct out-of-order chunks.
    let now = Instant::now();
    let cfg = Config {
        recv_window: 64 * 1024,
        ..Config::default()
    };
    let mut s = Stream::new(1, cfg, 1 << 20, now);
    for seq in 1..10_000u64 {
        let mut f = Frame::control(Kind::Data, 1, Bytes::from(vec![0u8; MAX_CHUNK]));
        f.seq = seq;
        let _ = s.on_frame(f, now);
        assert!(s.recv.buffered() <= cfg.recv_window as usize + MAX_CHUNK);
        while s.poll_transmit(now).is_some() {}
    }
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    let kinds = prop_oneof![
        Just(Kind::Data),
        Just(Kind::Ack),
        Just(Kind::Reset),
        Just(Kind::Open),
        Just(Kind::Challenge),
    ];
    (
        kinds,
        any::<u8>(),
        0u64..3,
        0u64..80,
        0u64..80,
        any::<u64>(),
        any::<u32>(),
        0usize..40_000,
        any::<u8>(),
    )
        .prop_map(
            |(kind, flags, sid, seq, ack, sack, window, len, recv_limit)| Frame {
                kind,
                flags: flags & 0x0f,
                sid,
                seq,
                ack,
                sack,
                window,
                recv_limit,
                counter: 0,
                payload: Bytes::from(vec![0u8; len]),
            },
        )
}

proptest! {
    /// A hostile peer: any sequence of well-formed frames never panics the
    /// stream and never lets it buffer beyond its window.
    #[test]
    fn arbitrary_frames_never_panic_or_overflow(frames in proptest::collection::vec(arb_frame(), 1..200),
                                                sends in 0usize..40) {
        let now = Instant::now();
        let cfg = Config { recv_window: 128 * 1024, ..Config::default() };
        let mut s = Stream::new(1, cfg, 1 << 20, now);
        for _ in 0..sends {
            if s.can_send() {
                s.send(Bytes::from_static(b"data"), now);
            }
        }
        for (i, f) in frames.into_iter().enumerate() {
            let t = now + Duration::from_millis(i as u64 * 50);
            let _ = s.on_frame(f, t);
            s.on_timeout(t);
            while s.poll_transmit(t).is_some() {}
            prop_assert!(s.recv.buffered() <= cfg.recv_window as usize + MAX_CHUNK);
            if i % 3 == 0 {
                if let Some(n) = s.readable().map(Bytes::len) {
                    s.consume(n);
                }
            }
        }
    }
}
