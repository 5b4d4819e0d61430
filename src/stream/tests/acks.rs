//! When acknowledgements go, what they carry, and when a sender asks for
//! one; a chunk sealed in place goes out as `send` would send it.

use super::*;
use crate::handshake::pair_for_tests;
use crate::protocol::HEADER_LEN;
use crate::stream::recv::ACK_EVERY;
use bytes::BytesMut;

#[test]
fn duplicate_data_is_delivered_once_and_acked_at_once() {
    let now = Instant::now();
    let mut s = Stream::new(1, Config::default(), 1 << 20, now);
    let mut f = Frame::control(Kind::Data, 1, Bytes::from_static(b"abc"));
    f.seq = 0;
    s.on_frame(f.clone(), now).unwrap();
    while s.poll_transmit(now).is_some() {}
    s.on_frame(f, now).unwrap();
    assert_eq!(s.readable().map(|b| &b[..]), Some(&b"abc"[..]));
    s.consume(3);
    assert!(s.readable().is_none());
    let ack = s.poll_transmit(now).expect("duplicate triggers an ack");
    assert_eq!((ack.kind, ack.ack), (Kind::Ack, 1));
}

#[test]
fn gap_triggers_sack_and_fast_retransmit() {
    let now = Instant::now();
    let mut tx = Stream::new(1, Config::default(), 1 << 20, now);
    for i in 0..4u8 {
        tx.send(Bytes::from(vec![i; 10]), now);
    }
    let frames: Vec<Frame> = std::iter::from_fn(|| tx.poll_transmit(now)).collect();
    assert_eq!(frames.len(), 4);
    let mut rx = Stream::new(1, Config::default(), 1 << 20, now);
    let later = now + Duration::from_millis(5);
    // Chunk 1 is lost.
    for f in [&frames[0], &frames[2], &frames[3]] {
        rx.on_frame(f.clone(), later).unwrap();
    }
    let ack = rx.poll_transmit(later).expect("gap acks at once");
    assert_eq!((ack.ack, ack.sack), (1, 0b11));
    tx.on_frame(ack, later).unwrap();
    let retx = tx.poll_transmit(later).expect("fast retransmit");
    assert_eq!((retx.kind, retx.seq), (Kind::Data, 1));
    assert!(tx.poll_transmit(later).is_none(), "only the hole is resent");
    assert_eq!(tx.stats().retransmits, 1);
}

/// Keystrokes over a 40 ms round trip with jitter: A types one byte, B
/// echoes it unless it is a password prompt's, and A types the next one
/// `pause` after the echo (or after its ack, unechoed). The ack of an echo
/// rides on the next keystroke when the pause is shorter than the ack
/// delay (a pure ACK would hold that keystroke back on a Nagle broker);
/// longer pauses cost one pure ACK each; and an unechoed key, whose ack
/// waits the whole ack delay right after round trips measured on echoes,
/// is never taken for lost.
#[test]
fn keystroke_acks_ride_on_the_next_key_and_never_time_out() {
    const KEYS: usize = 64;
    let jitter = Faults {
        reorder: 0.5,
        latency_ms: 20,
        ..CLEAN
    };
    fn all(_: usize) -> bool {
        true
    }
    fn not_every_sixteenth(i: usize) -> bool {
        i % 16 != 15
    }
    let n = KEYS as u64;
    // (case, pause in ms, which keys B echoes, pure ACKs A sends)
    type Case<'a> = (
        &'a str,
        u64,
        fn(usize) -> bool,
        std::ops::RangeInclusive<u64>,
    );
    let cases: &[Case] = &[
        ("auto-repeat", 20, all, 0..=0),
        ("fast typist", 100, all, 0..=0),
        ("below the ack delay", 150, all, 0..=0),
        ("slow typist", 300, all, n - 1..=n),
        ("every 16th key unechoed", 100, not_every_sixteenth, 0..=0),
    ];
    for &(name, pause, echo, ref acks) in cases {
        let mut sim = Sim::new(41, jitter, Vec::new(), Vec::new(), Config::default());
        sim.a.close_after_send = false;
        sim.b.close_after_send = false;
        let mut next_key = Some(sim.now);
        let mut typed = 0;
        let mut seen = 0;
        for _ in 0..100_000 {
            if next_key.is_some_and(|t| t <= sim.now) {
                sim.a.to_send.push(typed as u8);
                typed += 1;
                next_key = None;
            }
            sim.step();
            for &key in &sim.b.received[seen..] {
                if echo(key as usize) {
                    sim.b.to_send.push(key);
                }
            }
            seen = sim.b.received.len();
            let last = typed - 1;
            let answered = if echo(last) {
                sim.a.received.last() == Some(&(last as u8))
            } else {
                sim.a.s.send.unacked_bytes() == 0
            };
            if next_key.is_none() && typed == sim.a.sent && answered {
                if typed == KEYS {
                    break;
                }
                next_key = Some(sim.now + Duration::from_millis(pause));
            }
        }
        assert_eq!(typed, KEYS, "{name}: all keys typed");
        let echoed: Vec<u8> = (0..KEYS).filter(|&i| echo(i)).map(|i| i as u8).collect();
        assert_eq!(sim.b.received.len(), KEYS, "{name}");
        assert_eq!(sim.a.received, echoed, "{name}");
        assert!(
            acks.contains(&sim.pure_acks[0]),
            "{name}: A sent {} pure ACKs, expected {acks:?}",
            sim.pure_acks[0]
        );
        let retransmits = sim.a.s.stats().retransmits + sim.b.s.stats().retransmits;
        assert_eq!(retransmits, 0, "{name}: spurious retransmissions");
    }
}

/// A sender whose windows a chunk fills, with too few chunks in flight for
/// the peer's every-few-chunks ack, asks for an ack at once rather than
/// wait out the peer's ack delay.
#[test]
fn sender_out_of_window_with_few_chunks_in_flight_asks_for_an_ack() {
    let every = ACK_EVERY as u32;
    // Chunks of 4096 bytes fill a fresh congestion window in fewer than
    // ACK_EVERY; ACK_EVERY chunks of 1000 bytes fit in it.
    let initial = crate::stream::congestion::INITIAL_WINDOW as u32;
    assert!(initial / 4096 < every && 1000 * every < initial);
    // (case, peer window, chunk size, chunks, ack requested on the last)
    let cases = [
        ("room left", 1 << 20, 1000, 3, false),
        ("peer window filled by one chunk", 1000, 1000, 1, true),
        (
            "peer window filled by a few chunks",
            1000 * 5,
            1000,
            5,
            true,
        ),
        (
            "congestion window filled",
            1 << 20,
            4096,
            initial / 4096,
            true,
        ),
        (
            "peer window filled by one chunk too few",
            1000 * (every - 1),
            1000,
            every - 1,
            true,
        ),
        (
            "peer window filled with enough in flight",
            1000 * every,
            1000,
            every,
            false,
        ),
    ];
    for (name, window, size, chunks, wanted) in cases {
        let now = Instant::now();
        let mut s = Stream::new(1, Config::default(), 1 << 20, now);
        let mut ack = Frame::control(Kind::Ack, 1, Bytes::new());
        ack.window = window;
        s.on_frame(ack, now).unwrap();
        let mut last = None;
        for _ in 0..chunks {
            s.send(Bytes::from(vec![1; size as usize]), now);
            last = s.poll_transmit(now);
        }
        let last = last.expect("a data frame");
        assert_eq!(last.has(FLAG_ACK_REQ), wanted, "{name}");
    }
}

/// Every full chunk (a copy's) asks for an ack at once while fewer than
/// `ACK_EVERY` chunks are in flight, with room left in the windows: a
/// copy's acks come one per chunk, not one per window. Chunks smaller than
/// the window's chunk (keystrokes) ask only when they fill a window.
#[test]
fn every_full_chunk_asks_for_an_ack_with_few_in_flight() {
    let initial = crate::stream::congestion::INITIAL_WINDOW as usize;
    for (name, less, asks) in [("full chunk", 0, true), ("smaller chunk", 1, false)] {
        let now = Instant::now();
        let mut s = Stream::new(1, Config::default(), 1 << 20, now);
        let mut ack = Frame::control(Kind::Ack, 1, Bytes::new());
        ack.window = 1 << 20;
        s.on_frame(ack, now).unwrap();
        let full = s.max_chunk();
        // Room left after each: the window holds more than three.
        assert!(3 * full < initial, "{full} of {initial}");
        for i in 0..3 {
            s.send(Bytes::from(vec![1; full - less]), now);
            let f = s.poll_transmit(now).expect("a data frame");
            assert_eq!(f.has(FLAG_ACK_REQ), asks, "{name} {i}");
        }
    }
}

/// A chunk read behind room for its header and sealed in place goes out
/// as the same chunk passed to `send` would, once opened: first
/// transmissions (with and without an ack request), and retransmissions
/// after a timeout, which are opened from what was kept and sealed afresh.
#[test]
fn a_chunk_sealed_in_place_is_sent_as_send_would_send_it() {
    // (case, peer window, chunks of 1000 bytes)
    let cases = [
        ("room left", 1 << 20, 5),
        ("the window fills: ack requested", 3000, 3),
    ];
    for (name, window, chunks) in cases {
        let now = Instant::now();
        let (tx, mut rx) = pair_for_tests(None);
        let mut copied = Stream::new(7, Config::default(), window, now);
        let mut sealed = Stream::new(7, Config::default(), window, now);
        let mut wires = Vec::new();
        for i in 0..chunks {
            let data = pattern(1000, i);
            copied.send(Bytes::from(data.clone()), now);
            let mut buf = BytesMut::zeroed(HEADER_LEN);
            buf.extend_from_slice(&data);
            sealed.send_sealed(buf, now, &tx.tx);
            let (mut fc, _) = encoded(&mut copied, now).expect("a data frame");
            let (fs, ws) = sealed.poll_transmit_parts(now).expect("a data frame");
            let ws = ws.expect("sealed in place");
            assert_eq!(
                Frame::decode(ws.clone()).as_ref(),
                Ok(&fs),
                "{name}: chunk {i}"
            );
            let opened = rx.rx.open(fs).expect("opens");
            fc.counter = i as u64;
            assert_eq!(opened, fc, "{name}: chunk {i}");
            wires.push(ws);
        }
        assert_eq!(
            wires.last().map(|w| w[2] & FLAG_ACK_REQ != 0),
            Some(window < 1 << 20),
            "{name}: ack request on the last chunk"
        );
        let later = now + Duration::from_secs(5);
        copied.on_timeout(later);
        sealed.on_timeout(later);
        let resent = |s: &mut Stream| std::iter::from_fn(|| encoded(s, later)).collect::<Vec<_>>();
        let (rc, rs) = (resent(&mut copied), resent(&mut sealed));
        assert!(!rs.is_empty(), "{name}: a retransmission");
        assert_eq!(rs, rc, "{name}: retransmissions");
    }
}

/// The next frame to publish, encoded in the clear (none was sealed in
/// place).
fn encoded(s: &mut Stream, now: Instant) -> Option<(Frame, Bytes)> {
    s.poll_transmit_parts(now).map(|(f, sealed)| {
        assert!(sealed.is_none(), "a frame sealed in place");
        let wire = f.encode();
        (f, wire)
    })
}
