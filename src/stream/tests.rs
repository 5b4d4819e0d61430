//! Simulated-network tests of the stream state machine: two `Stream`s joined
//! by a lossy, duplicating, reordering, delaying link on a virtual clock.
//! This file is the harness (`Sim`); the tests are in its submodules, by
//! topic.

use super::*;

mod acks;
mod hostile;
mod liveness;
mod sizes;
mod transfers;

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
            let f = Frame::decode_clear(bytes).expect("valid frame");
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
