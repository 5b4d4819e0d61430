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

/// Fragment `offset..end` of `data`.
fn frag(data: &[u8], offset: usize, end: usize) -> Fragment {
    Fragment {
        offset,
        total: data.len(),
        data: Bytes::copy_from_slice(&data[offset..end]),
    }
}

fn delivered(r: &mut RecvHalf) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(b) = r.readable().cloned() {
        out.extend_from_slice(&b);
        r.consume(b.len());
    }
    out
}

#[test]
fn fragments_reassemble_in_any_order_with_duplicates_and_overlaps() {
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    // (name, fragment ranges in arrival order)
    let cases: &[(&str, &[(usize, usize)])] = &[
        ("in order", &[(0, 4000), (4000, 8000), (8000, 10_000)]),
        ("reversed", &[(8000, 10_000), (4000, 8000), (0, 4000)]),
        (
            "duplicates",
            &[
                (0, 4000),
                (0, 4000),
                (8000, 10_000),
                (8000, 10_000),
                (4000, 8000),
            ],
        ),
        // A retransmission cut at another size.
        (
            "overlapping",
            &[(0, 4000), (3000, 6000), (2000, 9000), (9000, 10_000)],
        ),
        ("touching", &[(5000, 10_000), (0, 5000)]),
        (
            "one byte at a time at the end",
            &[(0, 9998), (9999, 10_000), (9998, 9999)],
        ),
    ];
    for (name, ranges) in cases {
        let mut r = RecvHalf::new(CAPACITY);
        let (last, rest) = ranges.split_last().expect("cases are not empty");
        for &(a, b) in rest {
            r.on_fragment(0, frag(&data, a, b)).unwrap();
            assert!(r.readable().is_none(), "{name}: incomplete chunk delivered");
            assert_eq!(r.take_ack().ack, 0, "{name}: incomplete chunk acked");
        }
        assert_eq!(r.buffered(), data.len(), "{name}: reserves the whole chunk");
        r.on_fragment(0, frag(&data, last.0, last.1)).unwrap();
        assert_eq!(r.take_ack().ack, 1, "{name}");
        assert_eq!(delivered(&mut r), data, "{name}");
        assert_eq!(r.buffered(), 0, "{name}");
        // A late fragment of a received chunk is a duplicate.
        r.on_fragment(0, frag(&data, 0, 10)).unwrap();
        assert!(
            r.poll_ack(Instant::now()),
            "{name}: a duplicate is re-acked"
        );
        assert!(r.readable().is_none());
    }
}

#[test]
fn fragmented_chunks_out_of_order_mix_with_whole_ones() {
    let a = vec![1u8; 3000];
    let b = vec![2u8; 5000];
    let c = vec![3u8; 700];
    let mut r = RecvHalf::new(CAPACITY);
    // Chunk 1 in fragments, chunk 2 whole, then chunk 0 fills the gap.
    r.on_fragment(1, frag(&b, 0, 2500)).unwrap();
    r.on_data(2, Bytes::from(c.clone()), false).unwrap();
    assert_eq!(r.take_ack().sack, 0b10, "only the whole chunk is sacked");
    r.on_fragment(1, frag(&b, 2500, 5000)).unwrap();
    assert_eq!(r.take_ack().sack, 0b11);
    r.on_data(0, Bytes::from(a.clone()), false).unwrap();
    assert_eq!(r.take_ack().ack, 3);
    assert_eq!(delivered(&mut r), [a, b, c].concat());
    // A chunk whose fragments were overtaken by a whole copy.
    r.on_fragment(3, frag(&[9u8; 1000], 0, 400)).unwrap();
    r.on_data(3, Bytes::from(vec![9u8; 1000]), false).unwrap();
    assert_eq!(r.buffered(), 1000, "the partial copy was released");
    assert_eq!(delivered(&mut r), vec![9u8; 1000]);
    assert_eq!(r.buffered(), 0);
}

#[test]
fn bad_fragments_are_refused_and_cost_nothing() {
    let data = vec![5u8; 4000];
    let mut r = RecvHalf::new(CAPACITY);
    r.on_fragment(0, frag(&data, 0, 1000)).unwrap();
    // Another total length for the same chunk.
    let other = Fragment {
        offset: 1000,
        total: 5000,
        data: Bytes::from(vec![5u8; 1000]),
    };
    assert_eq!(
        r.on_fragment(0, other),
        Err(Rejected::FragmentMismatch {
            seq: 0,
            total: 5000,
            earlier: 4000
        })
    );
    // Beyond the window.
    assert_eq!(
        r.on_fragment(MAX_INFLIGHT_CHUNKS, frag(&data, 0, 10)),
        Err(Rejected::OutsideWindow {
            seq: MAX_INFLIGHT_CHUNKS
        })
    );
    // More than the buffer: each partial chunk reserves its whole length.
    let mut small = RecvHalf::new(1000);
    let big = vec![0u8; MAX_CHUNK];
    small.on_fragment(0, frag(&big, 0, 10)).unwrap();
    assert_eq!(
        small.on_fragment(1, frag(&big, 0, 10)),
        Err(Rejected::BufferFull { seq: 1 })
    );
    assert_eq!(small.buffered(), MAX_CHUNK);
    // Too many pieces: one-byte fragments with gaps between them.
    let mut r = RecvHalf::new(CAPACITY);
    let many = vec![0u8; 2 * MAX_PIECES + 2];
    for i in 0..MAX_PIECES {
        r.on_fragment(0, frag(&many, 2 * i, 2 * i + 1)).unwrap();
    }
    assert_eq!(
        r.on_fragment(0, frag(&many, 2 * MAX_PIECES, 2 * MAX_PIECES + 1)),
        Err(Rejected::TooFragmented { seq: 0 })
    );
    // Filling the gaps still completes the chunk.
    for i in 0..=MAX_PIECES {
        r.on_fragment(0, frag(&many, 2 * i + 1, 2 * i + 2)).unwrap();
    }
    r.on_fragment(0, frag(&many, 2 * MAX_PIECES, 2 * MAX_PIECES + 1))
        .unwrap();
    assert_eq!(delivered(&mut r), many);
}

#[test]
fn fragments_after_the_fin_are_refused_and_partials_forgotten() {
    let mut r = RecvHalf::new(CAPACITY);
    r.on_fragment(2, frag(&[1u8; 100], 0, 50)).unwrap();
    r.on_data(0, chunk(10), false).unwrap();
    r.on_data(1, Bytes::new(), true).unwrap();
    assert_eq!(r.buffered(), 10, "the partial chunk beyond the FIN is gone");
    assert_eq!(
        r.on_fragment(2, frag(&[1u8; 100], 50, 100)),
        Err(Rejected::AfterFin { seq: 2 })
    );
}
