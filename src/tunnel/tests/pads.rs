//! The PADs behind frames (`pad_after`, `transmit`) and the asks for them.

use super::*;

/// The peer acknowledges our first frame, now, with `window` open.
fn peer_acks_first(s: &mut Stream, window: u32) {
    let mut ack = Frame::control(Kind::Ack, 1, Bytes::new());
    ack.ack = 1;
    ack.window = window;
    s.on_frame(ack, Instant::now()).unwrap();
}

#[test]
fn only_small_stream_frames_on_a_far_path_get_a_pad() {
    let ms = Duration::from_millis;
    let far = Some(PAD_MIN_RTT);
    let near = Some(PAD_MIN_RTT - Duration::from_micros(1));
    let small = protocol::PAD_LEN - 1;
    let zero = Duration::ZERO;
    let cases = [
        (Kind::Data, small, far, zero, true),
        (Kind::Ack, small, far, zero, true),
        (Kind::Data, protocol::PAD_LEN, far, zero, false),
        (Kind::Data, small, near, zero, false),
        (Kind::Data, small, None, zero, false),
        (Kind::Reset, small, far, zero, false),
        (Kind::Accept, small, far, zero, false),
        (Kind::Pad, small, far, zero, false),
        // Our own link is the far one: the peer's is near.
        (Kind::Data, small, Some(ms(200)), ms(198), false),
        // Both far.
        (Kind::Data, small, Some(ms(40)), ms(20), true),
        // Our estimate above the path's round trip: nothing to pad for.
        (Kind::Data, small, Some(ms(5)), ms(9), false),
    ];
    for (kind, len, min_rtt, link_rtt, want) in cases {
        let f = Frame::control(kind, 1, Bytes::new());
        for (receiving, asked) in [(true, false), (false, true), (true, true), (false, false)] {
            let path = PadPath {
                min_rtt,
                link_rtt,
                receiving,
                asked,
                sending: false,
                held: false,
                credit: false,
            };
            let got = pad_after(&f, len, false, || Some(path));
            assert_eq!(got, want && (receiving || asked), "{kind:?} {len} {path:?}");
        }
    }
}

/// A DATA frame smaller than a bulk chunk that the broker would hold
/// behind our previous frame's last segment gets a PAD, unless we are the
/// bulk sender; a pure ACK does not, nor a frame not held, nor one to a
/// near peer.
#[test]
fn a_data_frame_the_broker_would_hold_gets_a_pad() {
    let ms = Duration::from_millis;
    let bulk = MIN_CHUNK + protocol::FRAME_OVERHEAD;
    // The peer's own round trip: 100 ms less our 10 ms.
    let (min_rtt, link_rtt) = (Some(ms(100)), ms(10));
    let cases = [
        (Kind::Data, 100, true, false, min_rtt, true),
        // A reply larger than a segment: its tail is what waits.
        (Kind::Data, 1_700, true, false, min_rtt, true),
        (Kind::Data, bulk - 1, true, false, min_rtt, true),
        (Kind::Data, bulk, true, false, min_rtt, false),
        (Kind::Data, 100, false, false, min_rtt, false),
        // The bulk sender's small frames: never (see pad_after).
        (Kind::Data, 100, true, true, min_rtt, false),
        (Kind::Ack, 100, true, false, min_rtt, false),
        (Kind::Reset, 100, true, false, min_rtt, false),
        (Kind::Pad, 100, true, false, min_rtt, false),
        // A near peer, or no round trip measured yet.
        (Kind::Data, 100, true, false, Some(ms(13)), false),
        (Kind::Data, 100, true, false, None, false),
    ];
    for (kind, len, held, sending, min_rtt, want) in cases {
        let f = Frame::control(kind, 1, Bytes::new());
        let path = PadPath {
            min_rtt,
            link_rtt,
            receiving: false,
            asked: false,
            sending,
            held,
            credit: true,
        };
        assert_eq!(
            pad_after(&f, len, false, || Some(path)),
            want,
            "{kind:?} {len} {path:?}"
        );
        // Without a credit (output that answers nothing): never.
        let path = PadPath {
            credit: false,
            ..path
        };
        assert!(
            !pad_after(&f, len, false, || Some(path)),
            "{kind:?} {len} {path:?}"
        );
        // The sink may not pad: never.
        assert!(
            !pad_after(&f, len, false, || None),
            "{kind:?} {len} {path:?}"
        );
    }
}

/// In a drain, every DATA frame gets a PAD, bulk chunks too, when both
/// the peer's link and our own are far; other frames as outside one, and
/// nothing to a near peer, from a sender beside the broker, or where the
/// sink may not pad.
#[test]
fn a_drains_data_frames_get_a_pad() {
    let ms = Duration::from_millis;
    let bulk = MIN_CHUNK + protocol::FRAME_OVERHEAD;
    let near = PAD_MIN_RTT - Duration::from_micros(1);
    let cases = [
        (Some(ms(40)), ms(20), true),
        (Some(ms(40)), PAD_MIN_RTT, true),
        // The peer's link near, or not measured yet.
        (Some(ms(21)), ms(20), false),
        (None, ms(20), false),
        // Our own link near: the peer's far.
        (Some(ms(40)), near, false),
        (Some(ms(40)), Duration::ZERO, false),
    ];
    for (min_rtt, link_rtt, far) in cases {
        let path = PadPath {
            min_rtt,
            link_rtt,
            receiving: false,
            asked: false,
            sending: true,
            held: false,
            credit: false,
        };
        for len in [100, protocol::PAD_LEN, bulk, protocol::MAX_FRAME] {
            let data = Frame::control(Kind::Data, 1, Bytes::new());
            assert_eq!(
                pad_after(&data, len, true, || Some(path)),
                far,
                "{len} {path:?}"
            );
            // Outside a drain the bulk sender pads nothing.
            assert!(!pad_after(&data, len, false, || Some(path)), "{len}");
            assert!(!pad_after(&data, len, true, || None), "{len}");
            for kind in [Kind::Ack, Kind::Reset, Kind::Pad] {
                let f = Frame::control(kind, 1, Bytes::new());
                assert!(!pad_after(&f, len, true, || Some(path)), "{kind:?} {len}");
            }
        }
    }
}

/// A small DATA frame goes out with a PAD right behind it once the
/// round trip is far, a large one without, and never when the sink
/// may not pad (rate caps).
#[tokio::test(start_paused = true)]
async fn transmit_pads_small_frames_once_the_path_is_far() {
    for may_pad in [true, false] {
        let (keys, _) = pair_for_tests(None);
        let cfg = Config::default();
        let mut s = Stream::new(1, cfg, cfg.recv_window, Instant::now());
        let mut sink = Recorder::new(may_pad);
        // The receiving end of a bulk transfer (a megabyte in)...
        let mut data = Frame::control(Kind::Data, 1, Bytes::from(vec![1u8; 64 << 10]));
        data.window = cfg.recv_window;
        for seq in 0..16 {
            data.seq = seq;
            s.on_frame(data.clone(), Instant::now()).unwrap();
        }
        // ...but no round trip measured yet: no PAD.
        s.send(Bytes::from_static(b"first"), Instant::now());
        transmit(&mut s, &mut sink, &keys.tx).await.unwrap();
        tokio::time::advance(Duration::from_millis(20)).await;
        peer_acks_first(&mut s, cfg.recv_window);
        assert!(s.min_rtt().unwrap() >= PAD_MIN_RTT);
        s.send(Bytes::from_static(b"small"), Instant::now());
        transmit(&mut s, &mut sink, &keys.tx).await.unwrap();
        // Past the peer's round trip: a frame close behind the previous
        // one gets a PAD whatever its size (the next test).
        tokio::time::advance(Duration::from_millis(20)).await;
        s.send(Bytes::from(vec![7u8; protocol::PAD_LEN]), Instant::now());
        transmit(&mut s, &mut sink, &keys.tx).await.unwrap();
        let kinds: Vec<_> = sink.frames.iter().map(|f| f.kind).collect();
        let want = if may_pad {
            vec![Kind::Data, Kind::Data, Kind::Pad, Kind::Data]
        } else {
            vec![Kind::Data, Kind::Data, Kind::Data]
        };
        assert_eq!(kinds, want, "may pad: {may_pad}");
        assert_eq!(s.stats().pads, u64::from(may_pad));
    }
}

/// In a dialogue over a far path (neither end sends a bulk transfer), a
/// reply (a DATA frame of the peer's came since our last PAD) that the
/// broker would hold behind the previous frame's last segment goes out
/// with a PAD behind it; one sent once that segment is acknowledged, or
/// that answers nothing, without.
#[tokio::test(start_paused = true)]
async fn transmit_pads_a_reply_close_behind_the_previous_frame() {
    let (keys, _) = pair_for_tests(None);
    let cfg = Config::default();
    let mut s = Stream::new(1, cfg, cfg.recv_window, Instant::now());
    let mut sink = Recorder::new(true);
    let send = |s: &mut Stream, data: &'static [u8]| {
        s.send(Bytes::from_static(data), Instant::now());
    };
    let mut peer_seq = 0;
    let mut peer_says = |s: &mut Stream| {
        let mut f = Frame::control(Kind::Data, 1, Bytes::from_static(b"k"));
        f.seq = peer_seq;
        f.ack = 1;
        f.window = cfg.recv_window;
        peer_seq += 1;
        s.on_frame(f, Instant::now()).unwrap();
    };
    // The first frame measures the path: 100 ms to the peer and back.
    send(&mut s, b"hello");
    transmit(&mut s, &mut sink, &keys.tx).await.unwrap();
    tokio::time::advance(Duration::from_millis(100)).await;
    peer_acks_first(&mut s, cfg.recv_window);
    assert_eq!(s.min_rtt(), Some(Duration::from_millis(100)));
    // A round trip after it: alone.
    send(&mut s, b"a");
    transmit(&mut s, &mut sink, &keys.tx).await.unwrap();
    // 30 ms after that one, answering the peer: padded.
    tokio::time::advance(Duration::from_millis(30)).await;
    peer_says(&mut s);
    send(&mut s, b"b");
    transmit(&mut s, &mut sink, &keys.tx).await.unwrap();
    // The PAD's tail left when "a"'s was acknowledged, 70 ms later, and
    // is acknowledged a round trip after that: then alone.
    tokio::time::advance(Duration::from_millis(170)).await;
    send(&mut s, b"c");
    transmit(&mut s, &mut sink, &keys.tx).await.unwrap();
    // The sender of a bulk chunk: its small frames close behind go alone,
    // until BULK_LATELY has passed.
    s.send(Bytes::from(vec![9u8; MIN_CHUNK]), Instant::now());
    transmit(&mut s, &mut sink, &keys.tx).await.unwrap();
    tokio::time::advance(Duration::from_millis(30)).await;
    peer_says(&mut s);
    send(&mut s, b"d");
    transmit(&mut s, &mut sink, &keys.tx).await.unwrap();
    tokio::time::advance(BULK_LATELY).await;
    send(&mut s, b"e");
    transmit(&mut s, &mut sink, &keys.tx).await.unwrap();
    tokio::time::advance(Duration::from_millis(30)).await;
    send(&mut s, b"f");
    transmit(&mut s, &mut sink, &keys.tx).await.unwrap();
    // Held too, but the peer said nothing since "f"'s PAD: alone.
    tokio::time::advance(Duration::from_millis(30)).await;
    send(&mut s, b"g");
    transmit(&mut s, &mut sink, &keys.tx).await.unwrap();
    let kinds: Vec<_> = sink
        .frames
        .iter()
        .map(|f| (f.kind, f.payload.len()))
        .collect();
    let data = |n| (Kind::Data, n + TAG_LEN);
    let pad = (Kind::Pad, protocol::PAD_LEN + TAG_LEN);
    // The agent's ask for pads: its link sent a bulk chunk, the peer a
    // small frame (the test above).
    let ask = (Kind::Pad, protocol::PAD_ASK.len() + TAG_LEN);
    assert_eq!(
        kinds,
        [
            data(5),
            data(1),
            data(1),
            pad,
            data(1),
            data(MIN_CHUNK),
            ask,
            data(1),
            data(1),
            data(1),
            pad,
            data(1),
        ]
    );
    assert_eq!(s.stats().pads, 2);
}

/// While the node sends a bulk chunk, a session whose peer sends small
/// frames asks it for pads, at most once per period, sealed; the peer
/// opens the ask and pads for a while. Nothing is asked of a peer that
/// sent nothing small, nor once the bulk sending stopped.
#[tokio::test(start_paused = true)]
async fn the_agent_asks_for_pads_while_its_link_sends_bulk() {
    let (client_keys, agent_keys) = pair_for_tests(None);
    let cfg = Config::default();
    let mut agent = Stream::new(1, cfg, cfg.recv_window, Instant::now());
    let mut proxy = Stream::new(1, cfg, cfg.recv_window, Instant::now());
    let mut sink = Recorder::new(true);
    let keystroke = |seq| {
        let mut f = Frame::control(Kind::Data, 1, Bytes::from_static(b"k"));
        f.seq = seq;
        f.window = cfg.recv_window;
        f
    };
    let asks = |sink: &Recorder| sink.frames.iter().filter(|f| f.kind == Kind::Pad).count();
    // No bulk sending yet: a keystroke is echoed, nothing asked.
    agent.on_frame(keystroke(0), Instant::now()).unwrap();
    transmit(&mut agent, &mut sink, &agent_keys.tx)
        .await
        .unwrap();
    assert_eq!(asks(&sink), 0);
    // Another session of the node sends a bulk chunk: the next transmit
    // asks.
    let mut copy = Stream::new(2, cfg, cfg.recv_window, Instant::now());
    copy.send(Bytes::from(vec![0u8; MIN_CHUNK]), Instant::now());
    transmit(&mut copy, &mut sink, &agent_keys.tx)
        .await
        .unwrap();
    assert!(sink.bulk.lately(Instant::now()));
    transmit(&mut agent, &mut sink, &agent_keys.tx)
        .await
        .unwrap();
    assert_eq!(asks(&sink), 1);
    // Another keystroke within the period: not asked again.
    agent.on_frame(keystroke(1), Instant::now()).unwrap();
    transmit(&mut agent, &mut sink, &agent_keys.tx)
        .await
        .unwrap();
    assert_eq!(asks(&sink), 1);
    // A period later, with the link still busy: asked again.
    tokio::time::advance(ASK_PERIOD).await;
    sink.sent_bulk(Instant::now());
    transmit(&mut agent, &mut sink, &agent_keys.tx)
        .await
        .unwrap();
    assert_eq!(asks(&sink), 2);
    // The bulk sending stopped: a keystroke gets no ask.
    tokio::time::advance(BULK_LATELY + ASK_PERIOD).await;
    agent.on_frame(keystroke(2), Instant::now()).unwrap();
    transmit(&mut agent, &mut sink, &agent_keys.tx)
        .await
        .unwrap();
    assert_eq!(asks(&sink), 2);

    // The peer opens the ask and pads for ASKED_FOR.
    let ask = sink
        .frames
        .iter()
        .rfind(|f| f.kind == Kind::Pad)
        .unwrap()
        .clone();
    assert!(protocol::may_ask_for_pads(&ask));
    let mut rx = client_keys.rx;
    let opened = rx.open(ask).expect("sealed with the session's keys");
    assert_eq!(&opened.payload[..], protocol::PAD_ASK);
    assert!(!proxy.pads_asked(Instant::now()));
    proxy.on_frame(opened, Instant::now()).unwrap();
    assert!(proxy.pads_asked(Instant::now()));
    tokio::time::advance(ASKED_FOR).await;
    assert!(!proxy.pads_asked(Instant::now()));
    // Padding is not an ask, and is not worth opening.
    let pad = Frame::decode(agent_keys.tx.seal(&protocol::pad(1))).unwrap();
    assert!(!protocol::may_ask_for_pads(&pad));
}

/// A broker connection pads only without rate caps and when its
/// message size limit lets a PAD through.
#[tokio::test]
async fn an_mqtt_sink_pads_only_without_caps_and_with_room_for_a_pad() {
    use crate::config::{BrokerArgs, FileConfig};
    let cases = [
        (BrokerArgs::default(), true),
        (
            BrokerArgs {
                max_message_size: Some(1200),
                ..Default::default()
            },
            false,
        ),
        (
            BrokerArgs {
                max_publish_rate: Some(100),
                ..Default::default()
            },
            false,
        ),
    ];
    for (args, want) in cases {
        let broker = BrokerArgs {
            // Nothing listens there: the client exists, unconnected.
            host: Some("127.0.0.1".into()),
            port: Some(1),
            ..args
        }
        .resolve(&FileConfig::default(), None, &|_| None)
        .expect("valid settings");
        let (tx, _rx) = mpsc::channel(1);
        let options = mqtt::options("pad-test", &broker).expect("options");
        let m = mqtt::Mqtt::spawn(options, Vec::new(), tx);
        let sink = MqttSink {
            client: m.client.clone(),
            topic: "p/n/s/c/up".into(),
            bulk: None,
        };
        assert_eq!(sink.pads(), want, "{broker:?}");
    }
}

/// The peer's DATA frames pay for at most `PAD_CREDIT_MAX` PADs ahead, and
/// each PAD spends one: output that answers nothing gets no more.
#[test]
fn pad_credits_come_from_the_peers_data_and_are_capped() {
    let cfg = Config::default();
    let now = Instant::now();
    let mut s = Stream::new(1, cfg, cfg.recv_window, now);
    assert!(!s.pad_credit());
    for seq in 0..20 {
        let mut f = Frame::control(Kind::Data, 1, Bytes::from_static(b"k"));
        f.seq = seq;
        f.window = cfg.recv_window;
        s.on_frame(f, now).unwrap();
    }
    // A pure ACK pays for nothing.
    let mut ack = Frame::control(Kind::Ack, 1, Bytes::new());
    ack.window = cfg.recv_window;
    s.on_frame(ack, now).unwrap();
    let mut spent = 0;
    while s.pad_credit() {
        s.count_pad();
        spent += 1;
    }
    assert_eq!(spent, crate::stream::PAD_CREDIT_MAX);
}
