//! Simulated-network tests of the stream state machine: two `Stream`s joined
//! by a lossy, duplicating, reordering, delaying link on a virtual clock.

use super::*;
use crate::protocol::{MAX_INFLIGHT_CHUNKS, MIN_MESSAGE};
use proptest::prelude::*;

/// Deterministic xorshift PRNG so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1_000_000.0 < p
    }
}

#[derive(Clone, Copy, Debug)]
struct Faults {
    loss: f64,
    dup: f64,
    /// Probability that a frame gets extra delay (reordering).
    reorder: f64,
    latency_ms: u64,
}

const CLEAN: Faults = Faults {
    loss: 0.0,
    dup: 0.0,
    reorder: 0.0,
    latency_ms: 5,
};

/// One end: its stream, what its application still has to send, what it
/// received, and whether its reader is paused.
struct End {
    s: Stream,
    to_send: Vec<u8>,
    sent: usize,
    close_after_send: bool,
    received: Vec<u8>,
    reader_paused: bool,
    max_buffered: usize,
    max_unacked: usize,
}

impl End {
    fn new(sid: u64, cfg: Config, data: Vec<u8>, now: Instant) -> End {
        End {
            s: Stream::new(sid, cfg, cfg.recv_window, now),
            to_send: data,
            sent: 0,
            close_after_send: true,
            received: Vec::new(),
            reader_paused: false,
            max_buffered: 0,
            max_unacked: 0,
        }
    }

    /// Application activity: write what the stream accepts, read what it has.
    fn app(&mut self, now: Instant, chunk: usize) {
        while self.sent < self.to_send.len() && self.s.can_send() {
            // Like the tunnel: reads are cut at the stream's chunk size.
            let chunk = chunk.min(self.s.max_chunk());
            let end = (self.sent + chunk).min(self.to_send.len());
            let data = Bytes::copy_from_slice(&self.to_send[self.sent..end]);
            self.s.send(data, now);
            self.sent = end;
        }
        if self.sent == self.to_send.len()
            && self.close_after_send
            && self.s.send.stage() == send::SendStage::Open
        {
            self.s.close_write(now);
        }
        if !self.reader_paused {
            while let Some(b) = self.s.readable() {
                let n = b.len().min(7000); // partial writes, like a pipe
                self.received.extend_from_slice(&b[..n]);
                self.s.consume(n);
            }
        }
        self.max_buffered = self.max_buffered.max(self.s.recv.buffered());
        self.max_unacked = self.max_unacked.max(self.s.send.unacked_bytes());
    }
}

struct Sim {
    now: Instant,
    rng: Rng,
    faults: Faults,
    /// (arrival time, to A?, encoded frame)
    wire: Vec<(Instant, bool, Bytes)>,
    a: End,
    b: End,
    /// While set, every frame is dropped (a broker outage).
    outage: bool,
    chunk: usize,
    /// Frames larger than this are dropped (a broker's message size limit).
    max_message: usize,
    /// Frames dropped for their size.
    too_large: u64,
    /// Pure ACK frames sent: [by A, by B].
    pure_acks: [u64; 2],
}

impl Sim {
    fn new(seed: u64, faults: Faults, a_data: Vec<u8>, b_data: Vec<u8>, cfg: Config) -> Sim {
        let now = Instant::now();
        Sim {
            now,
            rng: Rng(seed | 1),
            faults,
            wire: Vec::new(),
            a: End::new(7, cfg, a_data, now),
            b: End::new(7, cfg, b_data, now),
            outage: false,
            chunk: MAX_CHUNK,
            max_message: usize::MAX,
            too_large: 0,
            pure_acks: [0; 2],
        }
    }

    fn transmit(&mut self) {
        for to_a in [false, true] {
            loop {
                let from = if to_a { &mut self.b } else { &mut self.a };
                let Some(f) = from.s.poll_transmit(self.now) else {
                    break;
                };
                if f.kind == Kind::Ack {
                    self.pure_acks[usize::from(to_a)] += 1;
                }
                if self.outage || self.rng.chance(self.faults.loss) {
                    continue;
                }
                let encoded = f.encode();
                if encoded.len() > self.max_message {
                    self.too_large += 1;
                    continue;
                }
                let copies = if self.rng.chance(self.faults.dup) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let mut delay = self.faults.latency_ms;
                    if self.rng.chance(self.faults.reorder) {
                        delay += self.rng.next() % 30;
                    }
                    let at = self.now + Duration::from_millis(delay);
                    self.wire.push((at, to_a, encoded.clone()));
                }
            }
        }
    }

    /// Advance 1 ms of virtual time.
    fn step(&mut self) {
        self.a.app(self.now, self.chunk);
        self.b.app(self.now, self.chunk);
        self.transmit();
        self.now += Duration::from_millis(1);
        let now = self.now;
        let (due, rest): (Vec<_>, Vec<_>) = self.wire.drain(..).partition(|(t, _, _)| *t <= now);
        self.wire = rest;
        for (_, to_a, bytes) in due {
            let end = if to_a { &mut self.a } else { &mut self.b };
            let f = Frame::decode(bytes).expect("valid frame");
            let _ = end.s.on_frame(f, now);
        }
        for end in [&mut self.a, &mut self.b] {
            if end.s.poll_deadline().is_some_and(|d| d <= now) {
                end.s.on_timeout(now);
            }
        }
    }

    fn run_until_done(&mut self, max_ms: u64) {
        for _ in 0..max_ms {
            if self.a.s.is_done() && self.b.s.is_done() {
                return;
            }
            self.step();
        }
        panic!(
            "not done after {max_ms} ms: a sent {}/{} recv {}, b sent {}/{} recv {}\n{:?}\n{:?}",
            self.a.sent,
            self.a.to_send.len(),
            self.a.received.len(),
            self.b.sent,
            self.b.to_send.len(),
            self.b.received.len(),
            self.a.s.stats(),
            self.b.s.stats()
        );
    }

    fn assert_intact(&self) {
        assert!(self.a.received == self.b.to_send, "a received wrong bytes");
        assert!(self.b.received == self.a.to_send, "b received wrong bytes");
        assert!(self.a.s.error().is_none() && self.b.s.error().is_none());
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn transfers_intact_under_faults() {
    let cases = [
        ("clean", CLEAN),
        ("loss", Faults { loss: 0.1, ..CLEAN }),
        ("dup", Faults { dup: 0.2, ..CLEAN }),
        (
            "reorder",
            Faults {
                reorder: 0.3,
                ..CLEAN
            },
        ),
        (
            "everything",
            Faults {
                loss: 0.15,
                dup: 0.1,
                reorder: 0.2,
                latency_ms: 20,
            },
        ),
    ];
    for (name, faults) in cases {
        let mut sim = Sim::new(
            42,
            faults,
            pattern(3_000_000, 1),
            pattern(500_000, 2),
            Config::default(),
        );
        sim.run_until_done(600_000);
        sim.assert_intact();
        eprintln!("{name}: a {:?} b {:?}", sim.a.s.stats(), sim.b.s.stats());
    }
}

#[test]
fn small_chunks_and_empty_directions() {
    for (a_len, b_len) in [(0, 0), (1, 0), (0, 1), (1, 1), (100_000, 0)] {
        let mut sim = Sim::new(
            3,
            CLEAN,
            pattern(a_len, 5),
            pattern(b_len, 6),
            Config::default(),
        );
        sim.chunk = 1000;
        sim.run_until_done(60_000);
        sim.assert_intact();
    }
}

#[test]
fn both_orders_of_half_close() {
    for a_first in [true, false] {
        let mut sim = Sim::new(
            9,
            CLEAN,
            pattern(50_000, 1),
            pattern(70_000, 2),
            Config::default(),
        );
        let (first, second) = if a_first {
            (&mut sim.a, &mut sim.b)
        } else {
            (&mut sim.b, &mut sim.a)
        };
        second.close_after_send = false;
        let _ = first;
        // Run until the first side's FIN has reached the other side.
        for _ in 0..10_000 {
            sim.step();
            let second = if a_first { &sim.b } else { &sim.a };
            if second.s.read_closed() {
                break;
            }
        }
        let (first, second) = if a_first {
            (&mut sim.a, &mut sim.b)
        } else {
            (&mut sim.b, &mut sim.a)
        };
        assert!(second.s.read_closed(), "half-close reached the peer");
        assert!(!first.s.is_done() && !second.s.is_done());
        // The other direction still flows after the half-close.
        second.to_send.extend_from_slice(b"after half-close");
        second.close_after_send = true;
        sim.run_until_done(10_000);
        sim.assert_intact();
    }
}

#[test]
fn stalled_reader_bounds_memory_then_resumes() {
    let cfg = Config {
        recv_window: 256 * 1024,
        ..Config::default()
    };
    let mut sim = Sim::new(5, CLEAN, pattern(5_000_000, 1), Vec::new(), cfg);
    sim.b.reader_paused = true;
    for _ in 0..20_000 {
        sim.step();
    }
    // The sender stopped: nothing beyond the window was sent or buffered.
    let limit = cfg.recv_window as usize + MAX_CHUNK;
    assert!(
        sim.b.max_buffered <= limit,
        "{} > {limit}",
        sim.b.max_buffered
    );
    assert!(
        sim.a.max_unacked <= limit,
        "{} > {limit}",
        sim.a.max_unacked
    );
    assert!(sim.a.sent < 1_000_000, "sender kept going: {}", sim.a.sent);
    // Window probes keep the peer alive and the sender learns of the reopen.
    sim.b.reader_paused = false;
    sim.run_until_done(120_000);
    sim.assert_intact();
}

#[test]
fn window_exhaustion_with_loss_of_window_updates() {
    let cfg = Config {
        recv_window: 64 * 1024,
        ..Config::default()
    };
    let faults = Faults { loss: 0.3, ..CLEAN };
    let mut sim = Sim::new(11, faults, pattern(2_000_000, 3), pattern(10, 4), cfg);
    sim.b.reader_paused = true;
    for _ in 0..5_000 {
        sim.step();
    }
    sim.b.reader_paused = false;
    sim.run_until_done(600_000);
    sim.assert_intact();
    assert!(sim.b.max_buffered <= cfg.recv_window as usize + MAX_CHUNK);
}

#[test]
fn outage_then_reconnect_resumes() {
    let mut sim = Sim::new(
        13,
        CLEAN,
        pattern(4_000_000, 1),
        pattern(1_000_000, 2),
        Config::default(),
    );
    for _ in 0..300 {
        sim.step();
    }
    sim.outage = true;
    for _ in 0..20_000 {
        sim.step();
    }
    assert!(
        sim.a.s.error().is_none(),
        "20 s outage is within the grace period"
    );
    sim.outage = false;
    let now = sim.now;
    sim.a.s.on_reconnect(now);
    sim.b.s.on_reconnect(now);
    let before = sim.now;
    sim.run_until_done(120_000);
    sim.assert_intact();
    // Resynchronisation restarts at once rather than after a backed-off RTO.
    assert!(sim.now - before < Duration::from_secs(10));
}

#[test]
fn outage_longer_than_grace_period_times_out() {
    let cfg = Config {
        peer_timeout: Duration::from_secs(5),
        ..Config::default()
    };
    let mut sim = Sim::new(17, CLEAN, pattern(1_000_000, 1), Vec::new(), cfg);
    for _ in 0..100 {
        sim.step();
    }
    sim.outage = true;
    for _ in 0..5_100 {
        sim.step();
    }
    assert_eq!(
        sim.a.s.error(),
        Some(&StreamError::PeerTimeout(Duration::from_secs(5)))
    );
    assert_eq!(
        sim.b.s.error(),
        Some(&StreamError::PeerTimeout(Duration::from_secs(5)))
    );
}

#[test]
fn silent_peer_is_dropped_after_first_contact_timeout() {
    let now = Instant::now();
    let mut s = Stream::new(1, Config::default(), 1 << 20, now);
    let d = s.poll_deadline().unwrap();
    assert!(d <= now + FIRST_CONTACT);
    s.on_timeout(now + FIRST_CONTACT);
    assert_eq!(s.error(), Some(&StreamError::PeerTimeout(FIRST_CONTACT)));
}

#[test]
fn idle_session_stays_alive_via_keepalive() {
    // Peer timeouts above and below the keepalive interval: an idle session
    // must outlive many timeouts in either case (100 s of virtual time).
    for secs in [25, 10, 5, 1] {
        let cfg = Config {
            peer_timeout: Duration::from_secs(secs),
            ..Config::default()
        };
        let mut sim = Sim::new(19, CLEAN, pattern(10, 1), Vec::new(), cfg);
        sim.a.close_after_send = false;
        sim.b.close_after_send = false;
        for _ in 0..100_000 {
            sim.step();
        }
        assert!(
            sim.a.s.error().is_none() && sim.b.s.error().is_none(),
            "peer timeout {secs} s: {:?} / {:?}",
            sim.a.s.error(),
            sim.b.s.error()
        );
        assert_eq!(sim.b.received, pattern(10, 1));
    }
}

#[test]
fn reset_reaches_peer() {
    let mut sim = Sim::new(
        23,
        CLEAN,
        pattern(100_000, 1),
        Vec::new(),
        Config::default(),
    );
    sim.step();
    sim.a.s.abort();
    for _ in 0..50 {
        sim.step();
    }
    assert_eq!(sim.b.s.error(), Some(&StreamError::Reset));
}

#[test]
fn last_will_is_a_hint_not_a_reset() {
    let now = Instant::now();
    let mut s = Stream::new(1, Config::default(), 1000, now);
    let mut will = Frame::control(Kind::Reset, 1, Bytes::new());
    will.flags = FLAG_PEER_LOST;
    s.on_frame(will, now).unwrap();
    assert!(s.peer_lost_hint());
    assert_eq!(s.error(), None);
}

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
    let initial = crate::stream::congestion::INITIAL_CWND as u32;
    assert!(
        initial < every,
        "a fresh congestion window fills below ACK_EVERY"
    );
    // (case, chunks acked first (grows the congestion window by as many),
    // peer window, chunks of 1000 bytes, ack requested on the last)
    let cases = [
        ("room left", 0, 1 << 20, 3, false),
        ("peer window filled by one chunk", 0, 1000, 1, true),
        ("peer window filled by a few chunks", 0, 1000 * 5, 5, true),
        ("congestion window filled", 0, 1 << 20, initial, true),
        (
            "peer window filled by one chunk too few",
            initial,
            1000 * (every - 1),
            every - 1,
            true,
        ),
        (
            "peer window filled with enough in flight",
            initial,
            1000 * every,
            every,
            false,
        ),
    ];
    for (name, grow, window, chunks, wanted) in cases {
        let now = Instant::now();
        let mut s = Stream::new(1, Config::default(), 1 << 20, now);
        for _ in 0..grow {
            s.send(Bytes::from(vec![1; 1000]), now);
            s.poll_transmit(now).expect("a data frame");
        }
        let mut ack = Frame::control(Kind::Ack, 1, Bytes::new());
        ack.ack = grow as u64;
        ack.window = window;
        s.on_frame(ack, now).unwrap();
        let mut last = None;
        for _ in 0..chunks {
            s.send(Bytes::from(vec![1; 1000]), now);
            last = s.poll_transmit(now);
        }
        let last = last.expect("a data frame");
        assert_eq!(last.has(FLAG_ACK_REQ), wanted, "{name}");
    }
}

/// A chunk read behind room for its header goes out exactly as the same
/// chunk passed to `send` would, byte for byte: first transmissions (with
/// and without an ack request), and retransmissions after a timeout.
#[test]
fn a_chunk_framed_in_place_is_sent_as_send_would_send_it() {
    // (case, peer window, chunks of 1000 bytes)
    let cases = [
        ("room left", 1 << 20, 5),
        ("the window fills: ack requested", 3000, 3),
    ];
    for (name, window, chunks) in cases {
        let now = Instant::now();
        let mut copied = Stream::new(7, Config::default(), window, now);
        let mut framed = Stream::new(7, Config::default(), window, now);
        let mut wires = Vec::new();
        for i in 0..chunks {
            let data = pattern(1000, i);
            copied.send(Bytes::from(data.clone()), now);
            let mut buf = BytesMut::zeroed(HEADER_LEN);
            buf.extend_from_slice(&data);
            framed.send_framed(buf, now);
            let (fc, wc) = copied.poll_transmit_encoded(now).expect("a data frame");
            let (ff, wf) = framed.poll_transmit_encoded(now).expect("a data frame");
            assert_eq!((&ff, &wf), (&fc, &wc), "{name}: chunk {i}");
            assert_eq!(
                Frame::decode(wf.clone()).as_ref(),
                Ok(&ff),
                "{name}: chunk {i}"
            );
            wires.push(wf);
        }
        assert_eq!(
            wires.last().map(|w| w[2] & FLAG_ACK_REQ != 0),
            Some(window < 1 << 20),
            "{name}: ack request on the last chunk"
        );
        let later = now + Duration::from_secs(5);
        copied.on_timeout(later);
        framed.on_timeout(later);
        let resent = |s: &mut Stream| {
            std::iter::from_fn(|| s.poll_transmit_encoded(later)).collect::<Vec<_>>()
        };
        let (rc, rf) = (resent(&mut copied), resent(&mut framed));
        assert!(!rf.is_empty(), "{name}: a retransmission");
        assert_eq!(rf, rc, "{name}: retransmissions");
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_faults_never_corrupt(seed in any::<u64>(),
                                   loss in 0.0f64..0.3, dup in 0.0f64..0.3, reorder in 0.0f64..0.5,
                                   a_len in 0usize..300_000, b_len in 0usize..300_000,
                                   chunk in 1usize..MAX_CHUNK) {
        let faults = Faults { loss, dup, reorder, latency_ms: 3 };
        let mut sim = Sim::new(seed, faults, pattern(a_len, 1), pattern(b_len, 2), Config::default());
        sim.chunk = chunk;
        sim.run_until_done(2_000_000);
        sim.assert_intact();
    }
}

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
