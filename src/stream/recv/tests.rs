use super::*;

const CAPACITY: u32 = 64 * 1024;

fn chunk(n: usize) -> Bytes {
    Bytes::from(vec![7u8; n])
}

/// A receiver whose owed acknowledgements were all sent.
fn quiet(r: &mut RecvHalf) {
    r.take_ack();
}

#[test]
fn in_order_data_is_acked_after_a_delay_or_every_few_chunks() {
    let t0 = Instant::now();
    let mut r = RecvHalf::new(CAPACITY);
    r.on_data(0, chunk(10), false).unwrap();
    assert!(!r.poll_ack(t0), "one in-order chunk waits");
    assert_eq!(r.ack_deadline(), Some(t0 + ACK_DELAY));
    assert!(!r.poll_ack(t0 + ACK_DELAY / 2), "the delay is not re-armed");
    assert!(r.poll_ack(t0 + ACK_DELAY));
    quiet(&mut r);
    assert_eq!(r.ack_deadline(), None);
    for seq in 1..ACK_EVERY {
        r.on_data(seq, chunk(10), false).unwrap();
        assert!(!r.poll_ack(t0), "chunk {seq} of {ACK_EVERY} waits");
    }
    r.on_data(ACK_EVERY, chunk(10), false).unwrap();
    assert!(r.poll_ack(t0), "every {ACK_EVERY} chunks at once");
}

#[test]
fn gap_is_acked_at_once_with_a_sack_bitmap() {
    let t0 = Instant::now();
    let mut r = RecvHalf::new(CAPACITY);
    for seq in [0, 2, 4] {
        r.on_data(seq, chunk(100), false).unwrap();
    }
    assert!(r.poll_ack(t0), "a gap acks at once");
    let ack = r.take_ack();
    // Bit i is chunk ack + 1 + i: chunks 2 and 4.
    assert_eq!((ack.ack, ack.sack), (1, 0b101));
    assert_eq!(ack.window, CAPACITY - 300);
    r.on_data(1, chunk(100), false).unwrap();
    assert!(r.poll_ack(t0), "a filled gap acks at once");
    assert_eq!(r.take_ack().ack, 3);
}

#[test]
fn duplicate_is_dropped_and_acked_at_once() {
    let t0 = Instant::now();
    let mut r = RecvHalf::new(CAPACITY);
    r.on_data(0, chunk(5), false).unwrap();
    quiet(&mut r);
    r.on_data(0, chunk(5), false).unwrap();
    assert!(r.poll_ack(t0));
    assert_eq!((r.buffered(), r.bytes_received()), (5, 5));
}

#[test]
fn fin_closes_the_direction_once_everything_before_it_is_consumed() {
    let t0 = Instant::now();
    let mut r = RecvHalf::new(CAPACITY);
    // The FIN (1) and bogus chunks after it (2, right behind it, and 3)
    // arrive before chunk 0.
    r.on_data(1, Bytes::new(), true).unwrap();
    r.on_data(2, chunk(5), false).unwrap();
    r.on_data(3, chunk(3), false).unwrap();
    assert_eq!(r.stage(), RecvStage::Open, "FIN out of order");
    r.on_data(0, chunk(4), false).unwrap();
    assert_eq!(r.stage(), RecvStage::FinReceived);
    assert!(r.poll_ack(t0), "FIN acks at once");
    assert_eq!(r.buffered(), 4, "chunks beyond the FIN forgotten");
    assert!(!r.read_closed(), "bytes before the FIN still unread");
    r.consume(4);
    assert!(r.read_closed());
    assert_eq!(
        r.on_data(3, chunk(1), false),
        Err(Rejected::AfterFin { seq: 3 })
    );
}

#[test]
fn consuming_a_quarter_of_the_buffer_announces_the_window() {
    let t0 = Instant::now();
    let mut r = RecvHalf::new(CAPACITY);
    let quarter = CAPACITY as usize / 4;
    r.on_data(0, chunk(quarter), false).unwrap();
    r.on_data(1, chunk(quarter), false).unwrap();
    quiet(&mut r);
    r.consume(quarter - 1);
    assert!(!r.poll_ack(t0), "less than a quarter opened");
    r.consume(1);
    assert!(r.poll_ack(t0), "a quarter opened");
    assert_eq!(r.take_ack().window, CAPACITY - quarter as u32);
}

#[test]
fn buffer_and_sequence_limits() {
    let mut r = RecvHalf::new(CAPACITY);
    assert_eq!(
        r.on_data(MAX_INFLIGHT_CHUNKS, chunk(1), false),
        Err(Rejected::OutsideWindow {
            seq: MAX_INFLIGHT_CHUNKS
        })
    );
    let mut seq = 1;
    while r.buffered() + MAX_CHUNK <= CAPACITY as usize + MAX_CHUNK {
        r.on_data(seq, chunk(MAX_CHUNK), false).unwrap();
        seq += 1;
    }
    assert_eq!(
        r.on_data(seq, chunk(MAX_CHUNK), false),
        Err(Rejected::BufferFull { seq })
    );
    assert_eq!(r.window(), 0);
}
