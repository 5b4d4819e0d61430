//! Every rule of the opening, on synthetic instants: `t(s)` is `s` seconds
//! after the opening started.

use super::*;

const SID: u64 = 42;

/// The ACCEPT an agent without a password sends for the OPEN this opening
/// sent, with window `window`.
fn accept(op: &Opening, window: u32) -> Event {
    let open = op.open_payload.clone().expect("OPEN sent");
    let ours = Ephemeral::new();
    let share = *ours.share();
    let t = handshake::transcript("n1", "cid", SID, &open, &[], &share);
    let keys =
        handshake::agree(ours, &open[..SHARE_LEN], &t, None, Role::Agent).expect("valid share");
    frame(
        Kind::Accept,
        window,
        &[&share[..], &keys.confirmation()].concat(),
    )
}

/// The CHALLENGE an agent with `password` sends for the OPEN this opening
/// sent, the AUTH it expects, and the ACCEPT it sends for that AUTH.
fn challenge(op: &Opening, password: &str) -> (Event, [u8; 32], Event) {
    let (challenge, t, accept) = challenge_for(op, Some(password), NEEDS_PASSWORD);
    (
        challenge,
        handshake::answer(&Secret::new(password.into()), &t),
        accept,
    )
}

/// The CHALLENGE asking for `needs` (with the agent password `password`),
/// the transcript hash both ends then hold, and the ACCEPT that follows a
/// right AUTH.
fn challenge_for(op: &Opening, password: Option<&str>, needs: u8) -> (Event, [u8; 32], Event) {
    let (challenge, t, accept, _) = challenge_keys(op, password, needs);
    (challenge, t, accept)
}

/// [`challenge_for`], and the agent's keys.
fn challenge_keys(
    op: &Opening,
    password: Option<&str>,
    needs: u8,
) -> (Event, [u8; 32], Event, SessionKeys) {
    let secret = password.map(|p| Secret::new(p.into()));
    let open = op.open_payload.clone().expect("OPEN sent");
    let ours = Ephemeral::new();
    let share = *ours.share();
    let payload = [&share[..], &[needs]].concat();
    let t = handshake::transcript("n1", "cid", SID, &open, &payload, &share);
    let keys = handshake::agree(ours, &open[..SHARE_LEN], &t, secret.as_ref(), Role::Agent)
        .expect("valid share");
    let accept = frame(
        Kind::Accept,
        1,
        &[&share[..], &keys.confirmation()].concat(),
    );
    (frame(Kind::Challenge, 0, &payload), t, accept, keys)
}

/// An opening of session 42 by client "cid" on node "n1" (broker
/// "b:1883"), started at `t(0)`, whose broker connection began
/// `connect_took` before that.
fn start(password: Option<&str>, connect_took: Duration) -> (Opening, Instant) {
    let t0 = Instant::now();
    let req = Request {
        node: "n1".into(),
        broker: "b:1883".into(),
        cid: "cid".into(),
        sid: SID,
        recv_window: 1 << 20,
        password: password.map(|p| Secret::new(p.into())),
    };
    (Opening::new(req, t0 - connect_took, t0), t0)
}

/// A far broker (early bytes allowed), no password.
fn far() -> (Opening, Instant) {
    start(None, EARLY_MIN_CONNECT)
}

fn at(t0: Instant, secs: f64) -> Instant {
    t0 + Duration::from_secs_f64(secs)
}

fn up() -> Event {
    Event::Link(LinkState::Up { generation: 1 })
}

fn presence(latest: Option<bool>) -> Event {
    Event::Presence {
        latest,
        ever_online: latest == Some(true),
        protocol: VERSION,
    }
}

fn frame(kind: Kind, window: u32, payload: &[u8]) -> Event {
    let mut f = Frame::control(kind, SID, Bytes::copy_from_slice(payload));
    f.window = window;
    Event::Frame(f)
}

/// The kind of frame an action sends, or the text of the error it ends
/// with, or "open" for a session opened.
fn what(action: Option<Action>) -> String {
    match action {
        None => "-".into(),
        Some(Action::Send(wire)) => format!("{:?}", Frame::decode(wire).expect("valid").kind),
        Some(Action::Sign(_)) => "sign".into(),
        Some(Action::Done(Ok(_))) => "open".into(),
        Some(Action::Done(Err(e))) => e.to_string(),
    }
}

/// Feed `events` (second, event) in order; what each one led to.
fn run(op: &mut Opening, t0: Instant, events: Vec<(f64, Event)>) -> Vec<String> {
    events
        .into_iter()
        .map(|(s, e)| what(op.handle(e, at(t0, s))))
        .collect()
}

/// Tick every half second from `from` until the opening ends: the sends
/// and the end, with their times.
fn tick_out(op: &mut Opening, t0: Instant, from: f64) -> Vec<(f64, String)> {
    let mut out = Vec::new();
    let mut s = from;
    while s <= 20.0 {
        let w = what(op.handle(Event::Tick, at(t0, s)));
        if w != "-" {
            let over = !matches!(w.as_str(), "Open" | "Auth");
            out.push((s, w));
            if over {
                break;
            }
        }
        s += 0.5;
    }
    out
}

#[test]
fn the_open_goes_once_the_link_is_up_or_subscribing_and_is_repeated_every_second() {
    for link in [LinkState::Subscribing, LinkState::Up { generation: 3 }] {
        let (mut op, t0) = far();
        assert_eq!(
            run(
                &mut op,
                t0,
                vec![(0.0, presence(Some(true))), (0.0, Event::Link(link))]
            ),
            ["-", "Open"]
        );
        let sends: Vec<_> = tick_out(&mut op, t0, 0.5);
        let times: Vec<f64> = sends.iter().map(|(s, _)| *s).collect();
        assert_eq!(times, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        assert_eq!(sends.last().expect("ended").1, "node 'n1' did not answer");
    }
}

#[test]
fn a_node_offline_from_the_start_fails_at_once_without_an_open() {
    let (mut op, t0) = far();
    assert_eq!(
        run(&mut op, t0, vec![(0.0, presence(Some(false))), (0.0, up())]),
        ["-", "node 'n1' is offline"]
    );
    assert_eq!(op.deadline(), None, "over");
    assert!(op.handle(Event::Tick, at(t0, 1.0)).is_none());
}

#[test]
fn a_node_that_goes_offline_while_opening_is_asked_until_the_deadline() {
    let (mut op, t0) = far();
    run(&mut op, t0, vec![(0.0, presence(Some(true))), (0.0, up())]);
    assert_eq!(
        run(&mut op, t0, vec![(0.5, presence(Some(false)))]),
        ["-"],
        "its last will fired: it may be reconnecting"
    );
    let end = tick_out(&mut op, t0, 1.0);
    assert_eq!(
        end.last().expect("ended"),
        &(9.0, "node 'n1' went offline".to_owned())
    );
}

#[test]
fn a_node_whose_last_will_overtook_its_online_presence_is_waited_for() {
    // The router saw "online", then the watch's latest is the last will.
    let (mut op, t0) = far();
    let seen = Event::Presence {
        latest: Some(false),
        ever_online: true,
        protocol: VERSION,
    };
    assert_eq!(
        run(&mut op, t0, vec![(0.0, seen), (0.0, up())]),
        ["-", "Open"]
    );
    let accepted = accept(&op, 9);
    assert_eq!(
        run(&mut op, t0, vec![(1.0, Event::Tick), (2.0, accepted)]),
        ["Open", "open"]
    );
}

#[test]
fn a_node_never_announced_is_unknown_after_the_presence_wait_from_the_suback() {
    let (mut op, t0) = far();
    // Subscribing: the SUBACK, behind which retained presence comes, is
    // still on its way, so no verdict yet however long it takes.
    run(
        &mut op,
        t0,
        vec![(0.0, Event::Link(LinkState::Subscribing))],
    );
    assert_eq!(run(&mut op, t0, vec![(3.0, Event::Tick)]), ["Open"]);
    assert_eq!(op.deadline(), Some(at(t0, 4.0)), "the next OPEN");
    run(&mut op, t0, vec![(3.5, up())]);
    assert_eq!(op.deadline(), Some(at(t0, 4.0)));
    assert_eq!(
        tick_out(&mut op, t0, 4.0),
        [
            (4.0, "Open".to_owned()),
            (5.0, "Open".to_owned()),
            (
                5.5,
                "no node 'n1' on broker b:1883 (never announced; mqtt-proxy --list shows the nodes)"
                    .to_owned()
            )
        ]
    );
}

#[test]
fn a_node_that_never_answers_times_out_as_no_answer() {
    let (mut op, t0) = far();
    run(&mut op, t0, vec![(0.0, presence(Some(true))), (0.0, up())]);
    assert_eq!(op.deadline(), Some(at(t0, 1.0)));
    assert_eq!(
        tick_out(&mut op, t0, 8.5).last().expect("ended"),
        &(9.0, "node 'n1' did not answer".to_owned())
    );
}

#[test]
fn a_broker_that_never_connects_times_out() {
    let (mut op, t0) = far();
    assert_eq!(
        run(&mut op, t0, vec![(0.0, Event::Link(LinkState::Connecting))]),
        ["-"]
    );
    assert_eq!(op.deadline(), Some(at(t0, 9.0)));
    assert!(op.early_wanted(), "ssh's first bytes may be read meanwhile");
    assert_eq!(
        run(&mut op, t0, vec![(8.9, Event::Tick), (9.0, Event::Tick)]),
        ["-", "could not reach broker b:1883: timed out"]
    );
}

#[test]
fn link_failures_end_the_opening_with_the_link_s_words() {
    let down = LinkState::Down {
        reason: "could not reach broker b:1883: connection refused".into(),
        attempt: 1,
        retry_in: Duration::from_secs(1),
    };
    let denied = LinkState::SubscribeDenied {
        topics: vec!["p/n1/presence".into(), "p/n1/s/cid/down".into()],
    };
    for (stage_up, link, text) in [
        (false, down.clone(), "could not reach broker b:1883: connection refused"),
        (true, down, "could not reach broker b:1883: connection refused"),
        (false, denied.clone(), "broker refused subscription to p/n1/presence, p/n1/s/cid/down (check the ACL for this user)"),
        (true, denied, "broker refused subscription to p/n1/presence, p/n1/s/cid/down (check the ACL for this user)"),
    ] {
        let (mut op, t0) = far();
        if stage_up {
            run(&mut op, t0, vec![(0.0, presence(Some(true))), (0.0, up())]);
        }
        assert_eq!(run(&mut op, t0, vec![(0.5, Event::Link(link))]), [text]);
    }
}

#[test]
fn answers_end_the_opening() {
    let refuse = {
        let mut p = vec![1u8];
        p.extend_from_slice(b"sshd at 127.0.0.1:22 refused the connection");
        p
    };
    type Answer<'a> = &'a dyn Fn(&Opening) -> Event;
    let answers: [(Answer, &str); 6] = [
        (&|op| accept(op, 77), "open"),
        (
            &|_| frame(Kind::Refuse, 0, &refuse),
            "node 'n1' refused: sshd at 127.0.0.1:22 refused the connection",
        ),
        (
            &|_| frame(Kind::Refuse, 0, b""),
            "node 'n1' refused: no reason given",
        ),
        (
            &|_| frame(Kind::Challenge, 0, &[[7; SHARE_LEN].as_slice(), &[NEEDS_PASSWORD]].concat()),
            "node 'n1' refused: it asks for the agent password and none is set (MQTT_AGENT_PASSWORD)",
        ),
        (
            &|_| frame(Kind::Challenge, 0, &[[7; SHARE_LEN].as_slice(), &[4]].concat()),
            "node 'n1' refused: it asks for an authorization this mqtt-proxy does not know (0x04): upgrade mqtt-proxy",
        ),
        (
            &|_| frame(Kind::Refuse, 0, &protocol::refuse_payload(RefuseCode::Access, "certificate expired")),
            "n1 refused the session: certificate expired",
        ),
    ];
    for (answer, text) in answers {
        let (mut op, t0) = far();
        run(&mut op, t0, vec![(0.0, presence(Some(true))), (0.0, up())]);
        let answer = answer(&op);
        assert_eq!(run(&mut op, t0, vec![(0.1, answer)]), [text]);
        assert_eq!(op.deadline(), None);
    }
}

#[test]
fn the_accept_carries_the_agent_s_window_and_keys_that_match_the_agent_s() {
    for answered_at in [0.9, 1.5] {
        let (mut op, t0) = far();
        run(&mut op, t0, vec![(0.0, presence(Some(true))), (0.0, up())]);
        if answered_at > 1.0 {
            assert_eq!(run(&mut op, t0, vec![(1.0, Event::Tick)]), ["Open"]);
        }
        let accepted = accept(&op, 77);
        let Some(Action::Done(Ok(opened))) = op.handle(accepted, at(t0, answered_at)) else {
            panic!("accepted");
        };
        assert_eq!((opened.window, opened.early), (77, None));
    }
}

#[test]
fn an_accept_made_with_other_keys_fails_without_a_password_and_is_dropped_with_one() {
    // Someone on the broker answers first with a share of its own: it
    // cannot make the agent's confirmation.
    let (mut op, t0) = far();
    run(&mut op, t0, vec![(0.0, presence(Some(true))), (0.0, up())]);
    let mut forged = vec![0u8; SHARE_LEN + CONFIRM_LEN];
    forged[..SHARE_LEN].copy_from_slice(Ephemeral::new().share());
    assert_eq!(
        run(&mut op, t0, vec![(0.1, frame(Kind::Accept, 1, &forged))]),
        ["node 'n1' answered with keys that do not match (someone else on the broker answering for it?)"]
    );
    // With a password, a forged ACCEPT (or a malformed one) is dropped
    // and the real one still opens.
    let (mut op, t0) = start(Some("s3cret"), EARLY_MIN_CONNECT);
    run(&mut op, t0, vec![(0.0, presence(Some(true))), (0.0, up())]);
    let (challenge, _, accepted) = challenge(&op, "s3cret");
    assert_eq!(run(&mut op, t0, vec![(0.1, challenge)]), ["Auth"]);
    let (_, _, other) = self::challenge(&op, "s3cret");
    assert_eq!(
        run(
            &mut op,
            t0,
            vec![
                (0.2, frame(Kind::Accept, 1, &forged)),
                (0.2, frame(Kind::Accept, 1, b"short")),
                (0.2, other),
                (0.3, accepted),
            ]
        ),
        ["-", "-", "-", "open"]
    );
}

#[test]
fn with_a_password_an_accept_without_a_challenge_fails() {
    let (mut op, t0) = start(Some("s3cret"), EARLY_MIN_CONNECT);
    run(&mut op, t0, vec![(0.0, presence(Some(true))), (0.0, up())]);
    let accepted = accept(&op, 1);
    assert_eq!(
        run(&mut op, t0, vec![(0.1, accepted)]),
        ["node 'n1' did not ask for the agent password, so it could not prove it knows it (its agent has none set?)"]
    );
}

#[test]
fn an_agent_of_another_protocol_version_fails_at_once_naming_both() {
    for (agent, text) in [
        (1, "node 'n1' runs an agent of protocol 1 and this mqtt-proxy speaks protocol 2: upgrade the agent"),
        (3, "node 'n1' runs an agent of protocol 3 and this mqtt-proxy speaks protocol 2: upgrade mqtt-proxy"),
    ] {
        let (mut op, t0) = far();
        let old = Event::Presence {
            latest: Some(true),
            ever_online: true,
            protocol: agent,
        };
        assert_eq!(run(&mut op, t0, vec![(0.0, old), (0.0, up())]), ["-", text]);
    }
}

#[test]
fn stream_frames_before_the_accept_are_ignored() {
    let (mut op, t0) = far();
    run(&mut op, t0, vec![(0.0, presence(Some(true))), (0.0, up())]);
    let mut data = Frame::control(Kind::Data, SID, Bytes::from_static(b"SSH-2.0-x\r\n"));
    data.window = 5000;
    assert_eq!(
        run(
            &mut op,
            t0,
            vec![
                (0.2, Event::Frame(data)),
                (0.2, frame(Kind::Reset, 0, b"")),
                (0.2, frame(Kind::Ack, 0, b"")),
            ]
        ),
        ["-", "-", "-"],
        "sealed: the agent sends them again once we have the keys"
    );
}

#[test]
fn a_challenge_is_answered_at_once_with_auth_bound_to_the_transcript() {
    let (mut op, t0) = start(Some("s3cret"), EARLY_MIN_CONNECT);
    run(&mut op, t0, vec![(0.0, presence(Some(true))), (0.0, up())]);
    let (challenge, expected, accepted) = challenge(&op, "s3cret");
    let Some(Action::Send(wire)) = op.handle(challenge, at(t0, 0.3)) else {
        panic!("AUTH sent");
    };
    let auth_frame = Frame::decode(wire).expect("valid");
    assert_eq!(
        (auth_frame.kind, &auth_frame.payload[..]),
        (Kind::Auth, &expected[..])
    );
    // A second challenge is ignored: our share agrees once.
    let (again, _, _) = self::challenge(&op, "s3cret");
    // Repeated every second until answered, then the ACCEPT opens.
    assert_eq!(
        run(
            &mut op,
            t0,
            vec![
                (0.4, again),
                (1.0, Event::Tick),
                (1.3, Event::Tick),
                (1.5, accepted)
            ]
        ),
        ["-", "-", "Auth", "open"]
    );
}

#[test]
fn a_malformed_challenge_and_unexpected_frames_are_ignored() {
    let (mut op, t0) = start(Some("s3cret"), EARLY_MIN_CONNECT);
    run(&mut op, t0, vec![(0.0, presence(Some(true))), (0.0, up())]);
    assert_eq!(
        run(
            &mut op,
            t0,
            vec![
                (0.1, frame(Kind::Challenge, 0, b"short")),
                (0.2, frame(Kind::Open, 0, b"")),
                (0.3, frame(Kind::Auth, 0, b"")),
                (1.0, Event::Tick),
            ]
        ),
        ["-", "-", "-", "Open"],
        "still asking with OPEN"
    );
}

#[test]
fn the_early_bytes_ride_in_the_open_only_on_a_far_broker_without_a_password() {
    let near = Duration::from_millis(2);
    let banner = Bytes::from_static(b"SSH-2.0-OpenSSH_9.2\r\n");
    // (password, connecting took, read before the link is up, in the OPEN)
    for (password, connect_took, read_first, in_open) in [
        (None, EARLY_MIN_CONNECT, true, true),
        (None, Duration::from_millis(300), true, true),
        (None, near, true, false),
        (None, EARLY_MIN_CONNECT, false, false),
    ] {
        let (mut op, t0) = start(password, connect_took);
        assert!(op.early_wanted(), "wanted while connecting");
        if read_first {
            op.early_read(Some(banner.clone()));
            assert!(!op.early_wanted(), "once only");
        }
        assert_eq!(
            run(&mut op, t0, vec![(0.0, presence(Some(true))), (0.0, up())]),
            ["-", "Open"]
        );
        assert!(!op.early_wanted(), "not after the OPEN went");
        let open = op.open_payload.clone().expect("sent");
        let want_len = SHARE_LEN + if in_open { banner.len() } else { 0 };
        assert_eq!(open.len(), want_len, "{connect_took:?} {read_first}");
        let accepted = accept(&op, 1);
        let Some(Action::Done(Ok(opened))) = op.handle(accepted, at(t0, 0.1)) else {
            panic!("opened");
        };
        assert_eq!(opened.in_open, in_open);
        assert_eq!(opened.early, read_first.then(|| banner.clone()));
    }
    let (op, _) = start(Some("s3cret"), EARLY_MIN_CONNECT);
    assert!(
        !op.early_wanted(),
        "a challenge comes first: nothing to gain"
    );
}

#[test]
fn nothing_happens_after_the_end() {
    let (mut op, t0) = far();
    run(&mut op, t0, vec![(0.0, presence(Some(true))), (0.0, up())]);
    let accepted = accept(&op, 1);
    assert_eq!(run(&mut op, t0, vec![(0.1, accepted)]), ["open"]);
    assert_eq!(
        run(
            &mut op,
            t0,
            vec![
                (0.2, frame(Kind::Reset, 0, b"")),
                (20.0, Event::Tick),
                (20.0, presence(Some(false))),
            ]
        ),
        ["-", "-", "-"]
    );
    assert!(!op.early_wanted());
}

mod keys;
