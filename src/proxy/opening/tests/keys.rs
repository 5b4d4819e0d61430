//! A node whose agent asks for ssh keys.

use super::*;

/// A node that asks for ssh keys: the driver is asked to sign the
/// transcript; AUTH carries the password's answer (when asked too), then
/// the proofs; a refusal for want of an authorized key says what we
/// offered; no key at all ends the opening with why.
#[test]
fn a_challenge_for_keys_is_signed_by_the_driver_then_answered() {
    let proofs = Bytes::from_static(b"proofs as access::encode makes them");
    for password in [None, Some("s3cret")] {
        let needs = NEEDS_KEYS
            | if password.is_some() {
                NEEDS_PASSWORD
            } else {
                0
            };
        let (mut op, t0) = start(password, EARLY_MIN_CONNECT);
        run(&mut op, t0, vec![(0.0, presence(Some(true))), (0.0, up())]);
        let (challenge, t, accept, agent_keys) = challenge_keys(&op, password, needs);
        match op.handle(challenge, at(t0, 0.1)) {
            Some(Action::Sign(signed)) => assert_eq!(signed, t, "the transcript is what is signed"),
            other => panic!("expected Sign, got {}", what(other)),
        }
        // Until signed, the OPEN is repeated (the agent repeats its challenge).
        assert_eq!(run(&mut op, t0, vec![(1.0, Event::Tick)]), ["Open"]);
        let signed = Event::Signed {
            proofs: Ok(proofs.clone()),
            tried: "2 from ssh-agent".into(),
        };
        let auth = match op.handle(signed, at(t0, 1.2)) {
            Some(Action::Send(wire)) => Frame::decode(wire).expect("valid"),
            other => panic!("expected AUTH, got {}", what(other)),
        };
        assert_eq!(auth.kind, Kind::Auth);
        let answer = password
            .map(|p| handshake::answer(&Secret::new(p.into()), &t).to_vec())
            .unwrap_or_default();
        let (mac, sealed) = auth.payload.split_at(answer.len());
        assert_eq!(mac, &answer[..]);
        assert_ne!(sealed, &proofs[..], "the proofs are sealed");
        assert_eq!(
            agent_keys.open_proofs(sealed).as_deref(),
            Some(&proofs[..]),
            "with the session's keys"
        );
        assert_eq!(run(&mut op, t0, vec![(1.3, accept)]), ["open"]);
    }

    let refused = |reason: &str| {
        frame(
            Kind::Refuse,
            0,
            &protocol::refuse_payload(RefuseCode::Access, reason),
        )
    };
    for (reason, text) in [
        (
            NO_AUTHORIZED_KEY,
            "n1 refused the session: no authorized key (tried 2 from ssh-agent)",
        ),
        ("access revoked", "n1 refused the session: access revoked"),
    ] {
        let (mut op, t0) = far();
        run(&mut op, t0, vec![(0.0, presence(Some(true))), (0.0, up())]);
        let (challenge, _, _) = challenge_for(&op, None, NEEDS_KEYS);
        let signed = Event::Signed {
            proofs: Ok(proofs.clone()),
            tried: "2 from ssh-agent".into(),
        };
        assert_eq!(
            run(
                &mut op,
                t0,
                vec![(0.1, challenge), (0.2, signed), (0.3, refused(reason))]
            ),
            ["sign", "Auth", text]
        );
    }

    let (mut op, t0) = far();
    run(&mut op, t0, vec![(0.0, presence(Some(true))), (0.0, up())]);
    let (challenge, _, _) = challenge_for(&op, None, NEEDS_KEYS);
    let none = Event::Signed {
        proofs: Err("none was found".into()),
        tried: String::new(),
    };
    assert_eq!(
        run(&mut op, t0, vec![(0.1, challenge), (0.2, none)]),
        [
            "sign",
            "n1 refused the session: it asks for an ssh key and none was found"
        ]
    );

    // With a password, a challenge that does not ask for it proves nothing
    // about who answers.
    let (mut op, t0) = start(Some("s3cret"), EARLY_MIN_CONNECT);
    run(&mut op, t0, vec![(0.0, presence(Some(true))), (0.0, up())]);
    let (challenge, _, _) = challenge_for(&op, None, NEEDS_KEYS);
    assert!(
        run(&mut op, t0, vec![(0.1, challenge)])[0].contains("did not ask for the agent password")
    );
}
