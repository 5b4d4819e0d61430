use std::time::Duration;

use super::*;
use crate::stream::congestion::{INITIAL_WINDOW, MIN_WINDOW};
use crate::stream::rtt::INITIAL_RTO;

const WINDOW: u32 = 1 << 20;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A sender that sent `n` one-byte chunks at `at`.
fn sent(n: u64, at: Instant) -> SendHalf {
    sent_sized(n, 1, at)
}

/// A sender that sent `n` chunks of `len` bytes at `at`.
fn sent_sized(n: u64, len: usize, at: Instant) -> SendHalf {
    let mut s = SendHalf::new(WINDOW);
    for i in 0..n {
        let c = s.push(Bytes::from(vec![i as u8; len]), false, at);
        assert_eq!(c.seq, i);
    }
    s
}

#[test]
fn round_trip_sampled_from_the_chunk_that_moved_the_ack() {
    let t0 = Instant::now();
    let mut s = sent(1, t0);
    s.push(Bytes::from_static(b"x"), false, t0 + ms(50));
    // Chunk 0 waited for chunk 1: only chunk 1 (sent at 50 ms) is timed.
    s.on_ack(2, 0, WINDOW, t0 + ms(150));
    assert_eq!(s.rtt().srtt(), Some(ms(100)));
    assert_eq!(
        s.cwnd().window(),
        INITIAL_WINDOW,
        "the peer was not asked to ack at once: its ack may have waited, so no delay sample"
    );
}

#[test]
fn karn_rule_retransmitted_chunk_gives_no_sample() {
    let t0 = Instant::now();
    let mut s = sent(1, t0);
    assert!(!s.on_rto(t0 + INITIAL_RTO - ms(1)), "not yet");
    assert!(s.on_rto(t0 + INITIAL_RTO));
    let retx = s.next_retransmit(t0 + INITIAL_RTO).expect("resent");
    assert_eq!((retx.seq, s.counters().2), (0, 1));
    s.on_ack(1, 0, WINDOW, t0 + INITIAL_RTO + ms(100));
    assert_eq!(s.rtt().srtt(), None, "ambiguous ack is not a sample");
}

#[test]
fn timeout_backs_off_until_the_ack_moves() {
    let t0 = Instant::now();
    let mut s = sent_sized(2, MIN_WINDOW as usize, t0);
    assert!(s.on_rto(t0 + INITIAL_RTO));
    assert_eq!(s.cwnd().window(), MIN_WINDOW, "the floor after a timeout");
    let t1 = t0 + INITIAL_RTO;
    assert_eq!(s.next_retransmit(t1).map(|c| c.seq), Some(0));
    assert_eq!(
        s.next_retransmit(t1),
        None,
        "the window holds one such chunk"
    );
    assert_eq!(s.retransmit_deadline(), Some(t1 + INITIAL_RTO * 2));
    s.on_ack(1, 0, WINDOW, t1 + ms(10));
    assert_eq!(s.rtt().rto(), INITIAL_RTO, "progress ends the backoff");
    assert_eq!(s.next_retransmit(t1 + ms(10)).map(|c| c.seq), Some(1));
}

#[test]
fn chunks_sent_before_an_acknowledged_one_are_lost() {
    let t0 = Instant::now();
    let mut s = sent(4, t0);
    // Chunk 2 arrived (SACK bit 1 above ack 0); 0 and 1 went before it.
    s.on_ack(0, 0b10, WINDOW, t0 + ms(5));
    assert_eq!(s.cwnd().window(), INITIAL_WINDOW / 2.0, "halved once");
    let t1 = t0 + ms(5);
    let resent: Vec<u64> = std::iter::from_fn(|| s.next_retransmit(t1))
        .map(|c| c.seq)
        .collect();
    assert_eq!(resent, [0, 1], "chunk 3 was sent after 2: merely in flight");
    // A later SACK in the same window does not halve again.
    s.on_ack(0, 0b110, WINDOW, t0 + ms(6));
    assert_eq!(s.cwnd().window(), INITIAL_WINDOW / 2.0);
}

#[test]
fn fin_waits_for_the_window_then_is_acknowledged() {
    let t0 = Instant::now();
    let mut s = sent_sized(8, INITIAL_WINDOW as usize / 8, t0);
    assert_eq!(s.stage(), SendStage::Open);
    s.close();
    assert_eq!(s.stage(), SendStage::FinQueued);
    assert!(!s.can_send(), "no data after EOF");
    assert_eq!(s.take_fin(t0), None, "congestion window full");
    s.on_ack(8, 0, WINDOW, t0 + ms(5));
    let fin = s.take_fin(t0 + ms(5)).expect("room now");
    assert_eq!((fin.seq, fin.fin, fin.data.len()), (8, true, 0));
    assert_eq!(s.stage(), SendStage::FinSent);
    assert_eq!(s.take_fin(t0 + ms(5)), None, "one FIN");
    s.close();
    assert_eq!(
        s.stage(),
        SendStage::FinSent,
        "a second EOF changes nothing"
    );
    assert!(!s.fin_acked());
    s.on_ack(9, 0, WINDOW, t0 + ms(10));
    assert!(s.fin_acked());
}

#[test]
fn zero_window_is_probed_with_backoff() {
    let t0 = Instant::now();
    let mut s = SendHalf::new(0);
    assert!(!s.can_send(), "closed window");
    assert!(!s.on_probe_timer(t0), "arms the probe");
    assert_eq!(s.probe_deadline(), Some(t0 + INITIAL_RTO));
    assert!(!s.on_probe_timer(t0 + INITIAL_RTO - ms(1)));
    let t1 = t0 + INITIAL_RTO;
    assert!(s.on_probe_timer(t1), "probe due");
    assert_eq!(s.probe_deadline(), Some(t1 + INITIAL_RTO * 2), "backed off");
    s.on_ack(0, 0, 1000, t1 + ms(5));
    assert_eq!(s.probe_deadline(), None, "window opened");
    assert!(s.can_send());
}

#[test]
fn no_probe_after_the_fin() {
    let t0 = Instant::now();
    let mut s = SendHalf::new(0);
    s.close();
    s.take_fin(t0).expect("a FIN needs no window");
    s.on_ack(1, 0, 0, t0 + ms(5));
    assert!(!s.on_probe_timer(t0 + ms(5)));
    assert_eq!(s.probe_deadline(), None);
}

#[test]
fn a_chunk_is_timed_from_when_it_left_not_when_it_was_queued() {
    let t0 = Instant::now();
    let mut s = sent(2, t0);
    // Chunk 1 waited 300 ms for the rate caps before it left; chunk 0 went
    // at once. Unknown chunks are ignored.
    s.on_transmitted(1, t0 + ms(300));
    s.on_transmitted(7, t0 + ms(300));
    assert_eq!(s.retransmit_deadline(), Some(t0 + INITIAL_RTO), "chunk 0");
    s.on_ack(1, 0, WINDOW, t0 + ms(100));
    assert_eq!(
        s.retransmit_deadline(),
        Some(t0 + ms(300) + s.rtt().rto()),
        "chunk 1's timeout runs from when it left"
    );
    s.on_ack(2, 0, WINDOW, t0 + ms(400));
    // Its round trip is 100 ms, not the 400 ms since it was queued.
    assert_eq!(s.rtt().srtt(), Some(ms(100)));
}

#[test]
fn chunks_follow_the_window_and_the_delivery_rate_unless_told_not_to() {
    let t0 = Instant::now();
    let mut s = SendHalf::new(WINDOW);
    let quarter = INITIAL_WINDOW as usize / 4;
    assert_eq!(s.max_chunk(), quarter, "a quarter of a fresh window");
    // 16 KiB delivered in 1 ms: 16 MB/s, a chunk of CHUNK_TIME of it
    // (larger than the window's quarter). Two chunks: one alone in flight
    // is a round trip, not a rate.
    s.push(Bytes::from(vec![0; 8 << 10]), false, t0);
    s.push(Bytes::from(vec![0; 8 << 10]), false, t0);
    s.on_ack(2, 0, WINDOW, t0 + ms(1));
    assert_eq!(
        s.max_chunk(),
        (16_384_000 * 4 / 1000).min(s.segment().max_chunk())
    );
    assert!(s.max_chunk() > s.cwnd().chunk());
    // Under rate caps: the message size alone.
    let mut s = SendHalf::new(WINDOW);
    s.set_chunks_follow_rate(false);
    assert_eq!(s.max_chunk(), s.segment().max_chunk());
    assert!(s.max_chunk() > quarter);
}

/// A copy asks for an ack at once with nothing in flight (the path's own
/// round trip), and once per round trip when ACK_EVERY chunks or more are
/// in flight; with fewer, `Stream::ack_request_for` has every full chunk
/// ask, so this rule does not. A keystroke never asks.
#[test]
fn a_copy_asks_for_one_immediate_ack_per_round_trip() {
    let t0 = Instant::now();
    let mut s = SendHalf::new(WINDOW);
    let full = s.max_chunk();
    assert!(!s.asks_for_sample(1), "a keystroke asks for nothing");
    assert!(s.asks_for_sample(full), "a copy's first chunk asks");
    let first = s.push(Bytes::from(vec![0; full]), false, t0);
    s.ack_requested(first.seq);
    assert!(!s.asks_for_sample(full), "one that asked is in flight");
    s.on_ack(first.seq + 1, 0, WINDOW, t0 + ms(40));
    assert!(s.asks_for_sample(full), "nothing in flight again");
    for i in 1..ACK_EVERY {
        s.push(Bytes::from(vec![i as u8; full]), false, t0 + ms(40));
        assert!(
            !s.asks_for_sample(full),
            "{i} in flight: left to Stream::ack_request_for"
        );
    }
    let last = s.push(Bytes::from(vec![0; full]), false, t0 + ms(40));
    assert!(
        s.asks_for_sample(full),
        "ACK_EVERY in flight, none asked: the peer may never ack at once"
    );
    assert!(!s.asks_for_sample(full - 1), "only full chunks ask");
    s.ack_requested(last.seq);
    assert!(!s.asks_for_sample(full), "one that asked is in flight");
    s.mark_all_lost();
    assert!(
        s.asks_for_sample(full),
        "everything presumed lost: nothing in flight"
    );
}
