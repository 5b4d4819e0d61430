//! Admission rules, one scripted table per rule: at a synthetic instant, an
//! event for a client id, and exactly the actions admission must return.

use super::*;
use std::cell::RefCell;

const NODE: &str = "node";
/// The receive window clients announce in their OPEN.
const WINDOW: u32 = 123_456;

fn password() -> Secret {
    Secret::new("correct horse".into())
}

thread_local! {
    /// The agent's key shares handed out so far in this test (each test
    /// runs on its own thread): a script names challenges by number.
    static SHARES: RefCell<Vec<[u8; SHARE_LEN]>> = const { RefCell::new(Vec::new()) };
}

/// The k-th key share handed out (from 1).
fn share(k: usize) -> [u8; SHARE_LEN] {
    // An AUTH for a challenge never sent answers one of zeros.
    SHARES.with(|s| s.borrow().get(k - 1).copied().unwrap_or_default())
}

/// The client's key share in every OPEN of these scripts.
fn client_share() -> [u8; SHARE_LEN] {
    static SHARE: std::sync::OnceLock<[u8; SHARE_LEN]> = std::sync::OnceLock::new();
    *SHARE.get_or_init(|| *Ephemeral::new().share())
}

fn admission(max_sessions: usize, with_password: bool, t0: Instant) -> Admission {
    let policy = Policy {
        node_id: NODE.to_owned(),
        max_sessions,
        password: with_password.then(password),
        access: None,
        clock: SystemTime::now,
    };
    SHARES.with(|s| s.borrow_mut().clear());
    Admission::new(policy, t0, || {
        let e = Ephemeral::new();
        SHARES.with(|s| s.borrow_mut().push(*e.share()));
        e
    })
}

/// Something that happens to admission.
enum Ev {
    /// A frame from the client.
    Frame(Frame),
    /// An AUTH with `secret`, answering the k-th challenge as client id
    /// `as_cid` would, for session `sid`.
    Auth {
        secret: Secret,
        as_cid: &'static str,
        sid: u64,
        k: usize,
    },
    /// A stream frame of this kind from the client, for its session `sid`,
    /// which the dispatcher hands on and then reports delivered.
    Spoke(u64, Kind),
    /// The session task sent ACCEPT.
    Accepted(u64),
    /// The session task ended; whether admission still had it.
    Ended(u64, bool),
}

fn open_frame(sid: u64) -> Frame {
    let mut f = Frame::control(Kind::Open, sid, Bytes::copy_from_slice(&client_share()));
    f.window = WINDOW;
    f
}

fn open(sid: u64) -> Ev {
    Ev::Frame(open_frame(sid))
}

/// An AUTH answering the k-th challenge with `secret`.
fn auth_with(secret: &Secret, cid: &'static str, sid: u64, k: usize) -> Ev {
    Ev::Auth {
        secret: secret.clone(),
        as_cid: cid,
        sid,
        k,
    }
}

/// The right answer to the k-th challenge.
fn auth(cid: &'static str, sid: u64, k: usize) -> Ev {
    auth_with(&password(), cid, sid, k)
}

/// The AUTH frame a client would send for [`Ev::Auth`].
fn auth_frame(secret: &Secret, cid: &str, sid: u64, k: usize) -> Frame {
    let share = share(k);
    let challenge = [&share[..], &[NEEDS_PASSWORD]].concat();
    let t = handshake::transcript(NODE, cid, sid, &client_share(), &challenge, &share);
    let mac = handshake::answer(secret, &t);
    Frame::control(Kind::Auth, sid, Bytes::copy_from_slice(&mac))
}

fn stream_frame(kind: Kind, sid: u64) -> Frame {
    Frame::control(kind, sid, Bytes::new())
}

/// An action as a script names it: challenges by number, sessions
/// without their keys.
#[derive(Debug, PartialEq)]
enum Seen {
    Deliver(Frame),
    Challenge {
        sid: u64,
        k: usize,
    },
    Accept {
        sid: u64,
    },
    Start {
        sid: u64,
        window: u32,
    },
    Evict {
        cid: String,
    },
    Refuse {
        sid: u64,
        code: RefuseCode,
        reason: Cow<'static, str>,
    },
    Drop(&'static str),
}

fn seen(actions: Vec<Action>) -> Vec<Seen> {
    let k_of = |payload: &Bytes| {
        SHARES
            .with(|s| s.borrow().iter().position(|x| x == &payload[..SHARE_LEN]))
            .expect("a share handed out")
            + 1
    };
    actions
        .into_iter()
        .map(|a| match a {
            Action::Deliver(f) => Seen::Deliver(f),
            Action::Challenge { sid, payload } => Seen::Challenge {
                sid,
                k: k_of(&payload),
            },
            Action::Accept { sid, payload } => {
                assert_eq!(payload.len(), SHARE_LEN + handshake::CONFIRM_LEN);
                Seen::Accept { sid }
            }
            Action::Start {
                sid,
                window,
                session,
            } => {
                assert_eq!(session.accept.len(), SHARE_LEN + handshake::CONFIRM_LEN);
                Seen::Start { sid, window }
            }
            Action::Evict { cid } => Seen::Evict { cid },
            Action::Refuse { sid, code, reason } => Seen::Refuse { sid, code, reason },
            Action::Drop(why) => Seen::Drop(why),
        })
        .collect()
}

fn start(sid: u64) -> Seen {
    Seen::Start {
        sid,
        window: WINDOW,
    }
}

fn challenge(sid: u64, k: usize) -> Seen {
    Seen::Challenge { sid, k }
}

fn evict(cid: &str) -> Seen {
    Seen::Evict {
        cid: cid.to_owned(),
    }
}

fn refused(sid: u64, code: RefuseCode, reason: &'static str) -> Seen {
    let reason = Cow::Borrowed(reason);
    Seen::Refuse { sid, code, reason }
}

fn busy(sid: u64) -> Seen {
    refused(sid, RefuseCode::Busy, "too many sessions")
}

fn auth_failed(sid: u64) -> Seen {
    refused(sid, RefuseCode::Auth, "authorization failed")
}

/// What the dispatcher does with a stream frame for a session.
fn delivered(kind: Kind, sid: u64) -> Vec<Seen> {
    vec![Seen::Deliver(stream_frame(kind, sid))]
}

const SOON: &str = "session table full of new sessions";
const UNKNOWN: &str = "frame for an unknown session";
const OTHER_SID: &str = "frame for another session of this client id";
const RATE: &str = "open rate limit";

/// One line of a script: at `ms` after the start, `ev` for client `cid`
/// must produce exactly `want`.
type Step = (u64, &'static str, Ev, Vec<Seen>);

fn play(a: &mut Admission, t0: Instant, script: Vec<Step>) {
    for (i, (ms, cid, ev, want)) in script.into_iter().enumerate() {
        let now = t0 + Duration::from_millis(ms);
        let got = match ev {
            Ev::Frame(f) => seen(a.frame(now, cid, f)),
            Ev::Auth {
                secret,
                as_cid,
                sid,
                k,
            } => seen(a.frame(now, cid, auth_frame(&secret, as_cid, sid, k))),
            Ev::Spoke(sid, kind) => {
                let f = stream_frame(kind, sid);
                let got = seen(a.frame(now, cid, f.clone()));
                if got == [Seen::Deliver(f)] {
                    a.delivered(cid, kind);
                }
                got
            }
            Ev::Accepted(sid) => {
                a.accepted(cid, sid);
                Vec::new()
            }
            Ev::Ended(sid, in_table) => {
                assert_eq!(a.ended(cid, sid), in_table, "step {i} ({ms} ms, {cid})");
                Vec::new()
            }
        };
        assert_eq!(got, want, "step {i} ({ms} ms, {cid})");
    }
}

#[test]
fn a_full_table_evicts_the_oldest_silent_session_once_it_is_old_enough() {
    let t0 = Instant::now();
    let mut a = admission(2, false, t0);
    play(
        &mut a,
        t0,
        vec![
            (0, "a", open(1), vec![start(1)]),
            (1000, "b", open(2), vec![start(2)]),
            // Both silent, neither EVICT_UNHEARD old: wait for the retry.
            (1500, "c", open(3), vec![Seen::Drop(SOON)]),
            (1999, "c", open(3), vec![Seen::Drop(SOON)]),
            // The oldest goes first, the moment it is old enough.
            (2000, "c", open(3), vec![evict("a"), start(3)]),
            (2500, "d", open(4), vec![Seen::Drop(SOON)]),
            (3000, "d", open(4), vec![evict("b"), start(4)]),
            // Evicted sessions are forgotten; their tasks' ends change nothing.
            (3100, "a", Ev::Ended(1, false), vec![]),
            (3100, "b", Ev::Ended(2, false), vec![]),
            (
                3100,
                "a",
                Ev::Spoke(1, Kind::Data),
                vec![Seen::Drop(UNKNOWN)],
            ),
        ],
    );
    let mut table: Vec<_> = a.sessions().collect();
    table.sort();
    assert_eq!(table, [("c", 3), ("d", 4)]);
}

#[test]
fn a_table_of_clients_that_spoke_refuses_too_many_sessions() {
    let t0 = Instant::now();
    let mut a = admission(3, false, t0);
    play(
        &mut a,
        t0,
        vec![
            (0, "a", open(1), vec![start(1)]),
            (0, "b", open(2), vec![start(2)]),
            (0, "c", open(3), vec![start(3)]),
            // DATA and ACK are the client speaking; RESET is not.
            (10, "a", Ev::Spoke(1, Kind::Data), delivered(Kind::Data, 1)),
            (10, "b", Ev::Spoke(2, Kind::Ack), delivered(Kind::Ack, 2)),
            (
                10,
                "c",
                Ev::Spoke(3, Kind::Reset),
                delivered(Kind::Reset, 3),
            ),
            // c is the youngest but the only silent one.
            (5000, "d", open(4), vec![evict("c"), start(4)]),
            (5010, "d", Ev::Spoke(4, Kind::Ack), delivered(Kind::Ack, 4)),
            // Everyone spoke: refuse, however old the sessions are.
            (60_000, "e", open(5), vec![busy(5)]),
            (60_000, "e", open(5), vec![busy(5)]),
            // A session that ends frees its slot.
            (60_100, "a", Ev::Ended(1, true), vec![]),
            (60_100, "a", Ev::Ended(1, false), vec![]),
            (60_200, "e", open(5), vec![start(5)]),
        ],
    );
    assert_eq!(a.len(), 3);
}

#[test]
fn open_requests_are_limited_to_a_burst_then_a_steady_rate() {
    // (ms after the start, opens then, how many of them are admitted)
    let table: &[(u64, usize, usize)] = &[
        (0, 65, 64),
        // 20 per second: 0.8 of a token after 40 ms, 1.2 after 60 ms.
        (40, 1, 0),
        (60, 2, 1),
        // 20.2 a second later.
        (1060, 21, 20),
        // Never more than the burst, however long the pause.
        (100_000, 65, 64),
    ];
    assert_eq!(
        (OPEN_BURST, OPEN_RATE),
        (64, 20.0),
        "the table assumes these"
    );
    let t0 = Instant::now();
    let mut a = admission(1000, false, t0);
    let mut n = 0u64;
    for &(ms, opens, admitted) in table {
        let now = t0 + Duration::from_millis(ms);
        let mut got = 0;
        for _ in 0..opens {
            n += 1;
            match a.frame(now, &format!("c{n}"), open_frame(n)).as_slice() {
                [Action::Start { sid, .. }] if *sid == n => got += 1,
                [Action::Drop(RATE)] => {}
                other => panic!("at {ms} ms: {other:?}"),
            }
        }
        assert_eq!(got, admitted, "at {ms} ms");
    }
}

#[test]
fn a_repeated_request_gets_the_same_answer() {
    let t0 = Instant::now();
    let mut a = admission(4, true, t0);
    let ttl = auth::CHALLENGE_TTL.as_millis() as u64;
    play(
        &mut a,
        t0,
        vec![
            (0, "a", open(1), vec![challenge(1, 1)]),
            // The same challenge, not a fresh nonce.
            (1000, "a", open(1), vec![challenge(1, 1)]),
            (1500, "a", auth("a", 1, 1), vec![start(1)]),
            // Admitted but not answered yet: the session task will.
            (1600, "a", open(1), vec![]),
            (1600, "a", auth("a", 1, 1), vec![]),
            (1700, "a", Ev::Accepted(1), vec![]),
            (1800, "a", open(1), vec![Seen::Accept { sid: 1 }]),
            (1800, "a", auth("a", 1, 1), vec![Seen::Accept { sid: 1 }]),
            // One session per client id.
            (
                1900,
                "a",
                open(2),
                vec![refused(
                    2,
                    RefuseCode::Protocol,
                    "client id already has a session",
                )],
            ),
            (
                1900,
                "a",
                Ev::Spoke(2, Kind::Data),
                vec![Seen::Drop(OTHER_SID)],
            ),
            // A repeated OPEN after the challenge expired gets a new one.
            (2000, "b", open(7), vec![challenge(7, 2)]),
            (2000 + ttl - 1, "b", open(7), vec![challenge(7, 2)]),
            (2000 + ttl, "b", open(7), vec![challenge(7, 3)]),
            // An OPEN with another session id is a new request; it replaces
            // the challenge.
            (2000 + ttl, "b", open(8), vec![challenge(8, 4)]),
            (2000 + ttl, "b", auth("b", 7, 3), vec![auth_failed(7)]),
        ],
    );
}

#[test]
fn repeated_open_takes_no_open_token() {
    let t0 = Instant::now();
    let mut a = admission(4, true, t0);
    assert!(matches!(
        a.frame(t0, "a", open_frame(1))[..],
        [Action::Challenge { .. }]
    ));
    for _ in 0..10 * OPEN_BURST {
        assert!(matches!(
            a.frame(t0, "a", open_frame(1))[..],
            [Action::Challenge { .. }]
        ));
    }
    // The bucket still holds all but one token.
    for sid in 2..=u64::from(OPEN_BURST) {
        assert!(matches!(
            a.frame(t0, &format!("c{sid}"), open_frame(sid))[..],
            [Action::Challenge { .. }]
        ));
    }
    assert_eq!(
        seen(a.frame(t0, "late", open_frame(99))),
        [Seen::Drop(RATE)]
    );
}

#[test]
fn an_answer_admits_once_and_only_for_its_challenge() {
    let t0 = Instant::now();
    let mut a = admission(4, true, t0);
    let ttl = auth::CHALLENGE_TTL.as_millis() as u64;
    let wrong = Secret::new("wrong".into());
    play(
        &mut a,
        t0,
        vec![
            (0, "a", open(1), vec![challenge(1, 1)]),
            (100, "a", auth("a", 1, 1), vec![start(1)]),
            (200, "a", Ev::Ended(1, true), vec![]),
            // Replayed after the session ended: the nonce is spent.
            (300, "a", auth("a", 1, 1), vec![auth_failed(1)]),
            // Replayed with the OPEN: a fresh challenge the old AUTH does not answer.
            (400, "a", open(1), vec![challenge(1, 2)]),
            (400, "a", auth("a", 1, 1), vec![auth_failed(1)]),
            // That spent challenge 2, so even its right answer fails now.
            (500, "a", auth("a", 1, 2), vec![auth_failed(1)]),
            // A wrong password spends the nonce too.
            (600, "b", open(2), vec![challenge(2, 3)]),
            (700, "b", auth_with(&wrong, "b", 2, 3), vec![auth_failed(2)]),
            (800, "b", auth("b", 2, 3), vec![auth_failed(2)]),
            // An answer for another client id or session id.
            (900, "c", open(3), vec![challenge(3, 4)]),
            (900, "c", auth("x", 3, 4), vec![auth_failed(3)]),
            (900, "d", open(4), vec![challenge(4, 5)]),
            (900, "d", auth("d", 5, 5), vec![auth_failed(5)]),
            // An AUTH after its challenge expired.
            (1000, "e", open(6), vec![challenge(6, 6)]),
            (1000 + ttl, "e", auth("e", 6, 6), vec![auth_failed(6)]),
            // An AUTH nobody asked for.
            (20_000, "f", auth("f", 7, 1), vec![auth_failed(7)]),
        ],
    );
    assert_eq!(a.len(), 0);
}

#[test]
fn auth_without_an_agent_password_is_dropped() {
    let t0 = Instant::now();
    let mut a = admission(4, false, t0);
    play(
        &mut a,
        t0,
        vec![(
            0,
            "a",
            auth("a", 1, 1),
            vec![Seen::Drop("AUTH but this agent asks for nothing")],
        )],
    );
}

#[test]
fn failed_authorizations_are_limited_for_everyone() {
    let t0 = Instant::now();
    let mut a = admission(4, true, t0);
    let wrong = Secret::new("wrong".into());
    let limited = || {
        refused(
            9,
            RefuseCode::Busy,
            "too many failed authorizations; try again later",
        )
    };
    assert_eq!(
        (AUTH_FAIL_BURST, AUTH_FAIL_RATE),
        (5, 0.5),
        "the script assumes these"
    );
    let mut script: Vec<Step> = Vec::new();
    let mut k = 0usize;
    let mut attempt = |script: &mut Vec<Step>, ms: u64, secret: &Secret, want: Seen| {
        k += 1;
        script.push((ms, "m", open(9), vec![challenge(9, k)]));
        script.push((ms, "m", auth_with(secret, "m", 9, k), vec![want]));
    };
    for _ in 0..AUTH_FAIL_BURST {
        attempt(&mut script, 0, &wrong, auth_failed(9));
    }
    // Limited: even the right answer is refused, and that costs nothing.
    attempt(&mut script, 0, &wrong, limited());
    attempt(&mut script, 0, &password(), limited());
    attempt(&mut script, 1900, &password(), limited());
    // One failure allowed every 2 s.
    attempt(&mut script, 2100, &wrong, auth_failed(9));
    attempt(&mut script, 2100, &password(), limited());
    attempt(&mut script, 4200, &password(), start(9));
    play(&mut a, t0, script);
}

#[test]
fn pending_challenges_are_capped() {
    let t0 = Instant::now();
    let mut a = admission(1000, true, t0);
    // Open requests come in bursts, each after the bucket refilled, all
    // within one challenge's lifetime.
    let refill =
        Duration::from_secs_f64(f64::from(OPEN_BURST) / OPEN_RATE) + Duration::from_millis(50);
    let bursts = MAX_PENDING / OPEN_BURST as usize;
    assert_eq!(bursts * OPEN_BURST as usize, MAX_PENDING);
    let last_burst = refill * (bursts as u32 - 1);
    assert!(last_burst + Duration::from_millis(200) < auth::CHALLENGE_TTL);
    let mut sid = 0u64;
    for b in 0..bursts {
        let now = t0 + refill * b as u32;
        for _ in 0..OPEN_BURST {
            sid += 1;
            let got = a.frame(now, &format!("c{sid}"), open_frame(sid));
            assert!(
                matches!(got[..], [Action::Challenge { sid: s, .. }] if s == sid),
                "{sid}: {got:?}"
            );
        }
    }
    let full = t0 + last_burst + Duration::from_millis(100);
    assert_eq!(
        seen(a.frame(full, "late", open_frame(1))),
        [refused(1, RefuseCode::Busy, "too many pending requests")]
    );
    // A pending client's repeated OPEN is still answered.
    assert!(matches!(
        a.frame(full, "c1", open_frame(1))[..],
        [Action::Challenge { sid: 1, .. }]
    ));
    // Once the first burst's challenges expire there is room again.
    let expired = t0 + auth::CHALLENGE_TTL;
    assert!(matches!(
        a.frame(expired, "late", open_frame(1))[..],
        [Action::Challenge { sid: 1, .. }]
    ));
}

#[test]
fn a_table_that_filled_while_the_client_answered_refuses_or_evicts() {
    let t0 = Instant::now();
    let mut a = admission(1, true, t0);
    play(
        &mut a,
        t0,
        vec![
            (0, "a", open(1), vec![challenge(1, 1)]),
            (0, "b", open(2), vec![challenge(2, 2)]),
            (100, "a", auth("a", 1, 1), vec![start(1)]),
            // a is silent but young: b's spent answer is refused, not kept waiting.
            (200, "b", auth("b", 2, 2), vec![busy(2)]),
            (300, "b", open(2), vec![Seen::Drop(SOON)]),
            (400, "c", open(3), vec![Seen::Drop(SOON)]),
            // a spoke: the table is full for good.
            (500, "a", Ev::Spoke(1, Kind::Ack), delivered(Kind::Ack, 1)),
            (600, "c", open(3), vec![busy(3)]),
            (700, "a", Ev::Ended(1, true), vec![]),
            // A silent session old enough at AUTH time is evicted then.
            (1000, "c", open(3), vec![challenge(3, 3)]),
            (1000, "d", open(4), vec![challenge(4, 4)]),
            (1000, "c", auth("c", 3, 3), vec![start(3)]),
            (3000, "d", auth("d", 4, 4), vec![evict("c"), start(4)]),
            // An OPEN may evict for a slot that another client then takes.
            (5000, "e", open(5), vec![evict("d"), challenge(5, 5)]),
            (5000, "f", open(6), vec![challenge(6, 6)]),
            (5100, "f", auth("f", 6, 6), vec![start(6)]),
            (5200, "e", auth("e", 5, 5), vec![busy(5)]),
        ],
    );
}

mod keys;
