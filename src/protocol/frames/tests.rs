use super::*;

#[test]
fn only_frames_nobody_answers_go_at_qos_1() {
    use Kind::*;
    let cases = [
        (Open, Delivery::AtMostOnce),
        (Accept, Delivery::AtMostOnce),
        (Refuse, Delivery::AtMostOnce),
        (Challenge, Delivery::AtMostOnce),
        (Auth, Delivery::AtMostOnce),
        (Data, Delivery::AtMostOnce),
        (Ack, Delivery::AtLeastOnce),
        (Reset, Delivery::AtLeastOnce),
        (Pad, Delivery::AtMostOnce),
    ];
    for (kind, want) in cases {
        let f = Frame::control(kind, 7, Bytes::new()).encode();
        assert_eq!(delivery(&f), want, "{kind:?}");
    }
    assert_eq!(delivery(&[]), Delivery::AtLeastOnce, "not a frame");
}

#[test]
fn a_pad_decodes_as_padding_for_its_session() {
    let f = Frame::decode_clear(pad(9)).expect("valid");
    assert_eq!((f.kind, f.sid, f.payload.len()), (Kind::Pad, 9, PAD_LEN));
}

fn data(seq: u64, payload: &'static [u8]) -> Frame {
    Frame {
        kind: Kind::Data,
        flags: FLAG_FIN,
        sid: 0xdead_beef,
        seq,
        ack: 7,
        sack: 0b101,
        window: 12345,
        recv_limit: 16,
        counter: 99,
        payload: Bytes::from_static(payload),
    }
}

#[test]
fn recv_limits_in_units_of_256_bytes() {
    // (largest packet we receive well, units sent, what the peer reads)
    let cases = [
        (None, 0, None),
        (Some(4096), 16, Some(4096)),
        (Some(4100), 16, Some(4096)),
        // Below one unit: one unit, read as the least packet we send.
        (Some(100), 1, Some(MIN_PACKET)),
        (Some(255 * 256), 255, Some(255 * 256)),
        // Beyond what one byte says: no limit (above any frame of ours).
        (Some(256 * 256), 0, None),
    ];
    for (packet, units, read) in cases {
        assert_eq!(recv_limit_units(packet), units, "{packet:?}");
        assert_eq!(recv_limit_packet(units), read, "{packet:?}");
    }
}

#[test]
fn roundtrip() {
    let f = data(42, b"hello");
    let enc = f.encode();
    assert_eq!(enc.len(), HEADER_LEN + 5);
    assert_eq!(Frame::decode_clear(enc).unwrap(), f);
}

#[test]
fn rejects_bad_frames() {
    let good = data(1, b"x").encode();
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        (vec![], DecodeError::TooShort(0)),
        (good[..HEADER_LEN - 1].to_vec(), DecodeError::TooShort(47)),
        (
            {
                let mut v = good.to_vec();
                v[0] = 9;
                v
            },
            DecodeError::Version(9),
        ),
        (
            {
                let mut v = good.to_vec();
                v[1] = 99;
                v
            },
            DecodeError::Kind(99),
        ),
        (
            {
                let mut v = good.to_vec();
                v[2] = 0x80;
                v
            },
            DecodeError::Flags {
                kind: Kind::Data,
                flags: 0x80,
            },
        ),
        (
            {
                let mut v = good.to_vec();
                v[1] = Kind::Ack as u8;
                v
            },
            DecodeError::Flags {
                kind: Kind::Ack,
                flags: FLAG_FIN,
            },
        ),
        (vec![0; MAX_FRAME + 1], DecodeError::TooLong(MAX_FRAME + 1)),
    ];
    for (input, want) in cases {
        assert_eq!(Frame::decode_clear(Bytes::from(input)), Err(want));
    }
    let mut ack = Frame::control(Kind::Ack, 1, Bytes::from_static(b"x")).encode();
    assert_eq!(
        Frame::decode_clear(ack.split_to(ack.len())),
        Err(DecodeError::Payload(Kind::Ack, 1))
    );
}

#[test]
fn fragments_roundtrip_and_bad_ones_are_refused() {
    let frag = |offset: usize, total: usize, len: usize| Frame {
        flags: FLAG_FRAG,
        payload: Fragment {
            offset,
            total,
            data: Bytes::from(vec![3u8; len]),
        }
        .encode(),
        ..data(5, b"")
    };
    let good = frag(100, 1000, 900);
    let decoded = Frame::decode_clear(good.encode()).unwrap();
    assert_eq!(
        decoded.fragment(),
        Some(Fragment {
            offset: 100,
            total: 1000,
            data: Bytes::from(vec![3u8; 900])
        })
    );
    assert_eq!(data(5, b"abc").fragment(), None, "not a fragment");
    let bad = |f: Frame| Frame::decode_clear(f.encode()).unwrap_err();
    let cases = [
        (frag(0, 10, 0), DecodeError::Fragment("no data")),
        (
            frag(5, 10, 6),
            DecodeError::Fragment("data beyond the total length"),
        ),
        (
            frag(u32::MAX as usize, 10, 1),
            DecodeError::Fragment("data beyond the total length"),
        ),
        (
            frag(0, MAX_CHUNK + 1, 10),
            DecodeError::Fragment("total length above the largest chunk"),
        ),
        (
            Frame {
                flags: FLAG_FRAG | FLAG_FIN,
                ..frag(0, 10, 10)
            },
            DecodeError::Flags {
                kind: Kind::Data,
                flags: FLAG_FRAG | FLAG_FIN,
            },
        ),
        (
            Frame {
                kind: Kind::Ack,
                ..frag(0, 10, 10)
            },
            DecodeError::Flags {
                kind: Kind::Ack,
                flags: FLAG_FRAG,
            },
        ),
    ];
    for (f, want) in cases {
        assert_eq!(bad(f.clone()), want, "{f:?}");
    }
    // A short prefix.
    let mut short = frag(0, 10, 10);
    short.payload = Bytes::from_static(&[0, 0, 0]);
    assert_eq!(bad(short), DecodeError::Fragment("no data"));
}
