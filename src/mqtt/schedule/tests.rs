use super::*;

const SMALL: usize = 100;
const BULK: usize = 25_000;

/// How many publishes wait.
fn waiting(s: &Schedule) -> usize {
    let class = |c: &Class| c.flows.iter().map(|(_, q)| q.len()).sum::<usize>();
    class(&s.small) + class(&s.bulk)
}

/// Frames pushed as (flow, payload), and the order they go in (indexes
/// into the pushes).
type Case = (&'static [(u64, usize)], &'static [usize]);

/// Let every waiting publish go, in turn: the order they went in.
fn drain(s: &mut Schedule) -> Vec<Ticket> {
    let mut order = Vec::new();
    while let Some(t) = s.next() {
        s.went(t);
        order.push(t);
    }
    order
}

#[test]
fn small_frames_go_before_bulk_ones() {
    let cases: &[Case] = &[
        // A keystroke behind two sessions' chunks goes first.
        (&[(1, BULK), (2, BULK), (3, SMALL)], &[2, 0, 1]),
        // Acks and echoes among chunks: all small ones first, each class
        // first come, first served.
        (
            &[(1, BULK), (2, SMALL), (3, BULK), (4, SMALL)],
            &[1, 3, 0, 2],
        ),
        // The boundary: SMALL_FRAME bytes is small, one more is bulk.
        (&[(1, SMALL_FRAME + 1), (2, SMALL_FRAME)], &[1, 0]),
        // Only bulk, or only small: first come, first served.
        (&[(1, BULK), (2, BULK), (3, BULK)], &[0, 1, 2]),
        (&[(1, SMALL), (2, SMALL)], &[0, 1]),
        // An empty payload is small.
        (&[(1, BULK), (2, 0)], &[1, 0]),
    ];
    for (i, (pushes, expected)) in cases.iter().enumerate() {
        let mut s = Schedule::default();
        let tickets: Vec<_> = pushes.iter().map(|&(f, n)| s.push(f, n)).collect();
        let want: Vec<_> = expected.iter().map(|&j| tickets[j]).collect();
        assert_eq!(drain(&mut s), want, "case {i}");
        assert_eq!(waiting(&s), 0, "case {i}");
    }
}

#[test]
fn a_small_frame_that_comes_later_still_goes_first() {
    let mut s = Schedule::default();
    let chunk = s.push(1, BULK);
    assert_eq!(s.next(), Some(chunk));
    // The chunk waits for its bytes; an echo arrives meanwhile.
    let echo = s.push(2, SMALL);
    assert_eq!(s.next(), Some(echo));
    s.went(echo);
    assert_eq!(s.next(), Some(chunk));
}

#[test]
fn sessions_take_turns_within_a_class() {
    // Sessions 1 and 2 each re-queue a chunk as soon as one went (a copy
    // each), session 3 joins later: each goes once per round.
    let mut s = Schedule::default();
    let mut waiting = vec![s.push(1, BULK), s.push(2, BULK)];
    let mut flows = vec![1, 2];
    let mut order = Vec::new();
    for round in 0..12 {
        if round == 3 {
            waiting.push(s.push(3, BULK));
            flows.push(3);
        }
        let t = s.next().expect("chunks wait");
        s.went(t);
        let i = waiting.iter().position(|&w| w == t).expect("a waiting one");
        order.push(flows[i]);
        waiting[i] = s.push(flows[i], BULK);
    }
    assert_eq!(order, [1, 2, 1, 2, 1, 3, 2, 1, 3, 2, 1, 3]);
}

#[test]
fn a_flow_that_queues_many_delays_others_by_one_frame_per_turn() {
    // A flood of small frames on one flow (a burst of control frames), then
    // one small frame each on two other flows: they go second and third,
    // not behind the flood; the flood's own frames keep their order.
    let mut s = Schedule::default();
    let flood: Vec<_> = (0..1000).map(|_| s.push(7, SMALL)).collect();
    let a = s.push(8, SMALL);
    let b = s.push(9, SMALL);
    let order = drain(&mut s);
    assert_eq!(&order[..3], &[flood[0], a, b]);
    assert_eq!(&order[3..], &flood[1..]);
    // Nothing is kept once everything went (no state per flow that ever
    // sent): memory is bounded by what waits.
    assert!(s.small.flows.is_empty() && s.bulk.flows.is_empty());
}

#[test]
fn bulk_is_not_starved_by_a_flood_of_small_frames() {
    // Small frames keep coming from two flows, always one waiting each; a
    // chunk waits. It goes after MAX_PASSES small frames, then the small
    // ones again, and a second chunk likewise.
    let mut s = Schedule::default();
    let mut small = [s.push(1, SMALL), s.push(2, SMALL)];
    let mut chunk = s.push(3, BULK);
    let mut since_chunk = 0;
    let mut chunks = 0;
    for _ in 0..100 {
        let t = s.next().expect("always one waits");
        s.went(t);
        if t == chunk {
            assert_eq!(since_chunk, MAX_PASSES, "small frames before the chunk");
            since_chunk = 0;
            chunks += 1;
            chunk = s.push(3, BULK);
        } else {
            since_chunk += 1;
            let i = small.iter().position(|&x| x == t).expect("a small one");
            small[i] = s.push(i as u64 + 1, SMALL);
        }
    }
    assert_eq!(chunks, 100 / (MAX_PASSES as usize + 1));
}

#[test]
fn small_frames_without_bulk_waiting_do_not_count_as_passes() {
    // Typing with no copy, then a chunk: the keystroke that comes with it
    // still goes first.
    let mut s = Schedule::default();
    for _ in 0..(MAX_PASSES * 3) {
        let t = s.push(1, SMALL);
        s.went(t);
    }
    let chunk = s.push(2, BULK);
    let key = s.push(1, SMALL);
    assert_eq!(drain(&mut s), [key, chunk]);
}

#[test]
fn a_cancelled_publish_leaves_no_trace() {
    let mut s = Schedule::default();
    let chunk = s.push(1, BULK);
    let key = s.push(2, SMALL);
    let other = s.push(3, SMALL);
    assert_eq!(waiting(&s), 3);
    // The head gives up: the next one's turn.
    s.cancel(key);
    assert_eq!(s.next(), Some(other));
    // Cancelling twice, or a ticket that went, changes nothing.
    s.cancel(key);
    s.went(other);
    s.cancel(other);
    assert_eq!(s.next(), Some(chunk));
    s.cancel(chunk);
    assert_eq!(waiting(&s), 0);
    assert_eq!(s.next(), None);
}

#[test]
fn a_cancelled_chunk_resets_the_passes() {
    // Small frames passed a chunk that then gave up: a later chunk starts
    // afresh, so a keystroke with it is not held back.
    let mut s = Schedule::default();
    let chunk = s.push(1, BULK);
    for _ in 0..MAX_PASSES {
        let t = s.push(2, SMALL);
        s.went(t);
    }
    s.cancel(chunk);
    let chunk = s.push(1, BULK);
    let key = s.push(2, SMALL);
    assert_eq!(drain(&mut s), [key, chunk]);
}

#[test]
fn only_the_next_publish_may_go() {
    // A caller that was not told it is its turn cannot jump the queue.
    let mut s = Schedule::default();
    let first = s.push(1, SMALL);
    let second = s.push(2, SMALL);
    s.went(second);
    assert_eq!(waiting(&s), 2);
    assert_eq!(drain(&mut s), [first, second]);
}
