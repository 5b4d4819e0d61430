use super::*;
use crate::protocol::{Frame, Kind};
use bytes::Bytes;

fn secret(s: &str) -> Secret {
    Secret::new(s.to_owned())
}

/// A DATA frame sealed by `from`, opened by `to`.
fn crosses(from: &SessionKeys, to: &mut SessionKeys) -> bool {
    let mut f = Frame::control(Kind::Data, 1, Bytes::from_static(b"hello"));
    f.seq = 3;
    let wire = from.tx.seal(&f.encode());
    let got = Frame::decode(wire).expect("decodes");
    to.rx
        .open(got)
        .is_ok_and(|g| g.payload == Bytes::from_static(b"hello"))
}

/// Both ends of an opening; the agent's transcript may differ (`agent_t`).
fn open_with(
    client_pw: Option<&Secret>,
    agent_pw: Option<&Secret>,
    agent_t: impl FnOnce([u8; 32]) -> [u8; 32],
) -> (SessionKeys, SessionKeys) {
    let (c, a) = (Ephemeral::new(), Ephemeral::new());
    let t = transcript("node", "cid", 9, c.share(), &[], a.share());
    let a_share = *a.share();
    let agent = agree(a, c.share(), &agent_t(t), agent_pw, Role::Agent).expect("agent agrees");
    let client = agree(c, &a_share, &t, client_pw, Role::Client).expect("client agrees");
    (client, agent)
}

#[test]
fn both_ends_agree_and_each_direction_has_its_own_key() {
    for pw in [None, Some(secret("hunter2"))] {
        let (mut client, mut agent) = open_with(pw.as_ref(), pw.as_ref(), |t| t);
        assert!(client.confirms(&agent.confirmation()), "{pw:?}");
        assert!(crosses(&client, &mut agent));
        assert!(crosses(&agent, &mut client));
        // A frame reflected back to its sender does not open.
        let f = Frame::control(Kind::Ack, 1, Bytes::new());
        let wire = client.tx.seal(&f.encode());
        assert_eq!(
            client.rx.open(Frame::decode(wire).expect("decodes")).err(),
            Some(crate::seal::OpenError::Forged)
        );
    }
}

#[test]
fn a_wrong_password_or_transcript_gives_other_keys() {
    let (pw, other) = (secret("right"), secret("wrong"));
    let cases: [(&str, Option<&Secret>, Option<&Secret>, bool); 4] = [
        ("password on one side only", Some(&pw), None, false),
        ("different passwords", Some(&pw), Some(&other), false),
        ("same password", Some(&pw), Some(&pw), true),
        ("no password", None, None, true),
    ];
    for (what, c, a, agree_ok) in cases {
        let (client, mut agent) = open_with(c, a, |t| t);
        assert_eq!(client.confirms(&agent.confirmation()), agree_ok, "{what}");
        assert_eq!(crosses(&client, &mut agent), agree_ok, "{what}");
    }
    // The agent saw another opening (a share or nonce swapped on the way).
    let (client, mut agent) = open_with(None, None, |mut t| {
        t[0] ^= 1;
        t
    });
    assert!(!client.confirms(&agent.confirmation()));
    assert!(!crosses(&client, &mut agent));
}

#[test]
fn keys_of_another_session_open_nothing() {
    let (client, _agent) = pair_for_tests(None);
    let (_c2, mut agent2) = pair_for_tests(None);
    assert!(!crosses(&client, &mut agent2));
}

#[test]
fn the_transcript_covers_every_field() {
    let base = transcript("node", "cid", 1, b"open", b"challenge", b"share");
    let changed = [
        transcript("nodf", "cid", 1, b"open", b"challenge", b"share"),
        transcript("node", "cie", 1, b"open", b"challenge", b"share"),
        transcript("node", "cid", 2, b"open", b"challenge", b"share"),
        transcript("node", "cid", 1, b"opem", b"challenge", b"share"),
        transcript("node", "cid", 1, b"open", b"challengf", b"share"),
        transcript("node", "cid", 1, b"open", b"challenge", b"sharf"),
        // Bytes moved from one field to the next.
        transcript("nod", "ecid", 1, b"open", b"challenge", b"share"),
    ];
    for (i, t) in changed.iter().enumerate() {
        assert_ne!(&base, t, "case {i}");
    }
}

#[test]
fn an_answer_is_bound_to_its_transcript_and_password() {
    let pw = secret("hunter2");
    let t = transcript("node", "cid", 1, b"open", b"nonce", b"share");
    let mac = answer(&pw, &t);
    assert!(verify_answer(&pw, &t, &mac));
    assert!(!verify_answer(&secret("hunter3"), &t, &mac));
    // Captured and replayed into another session (another sid, nonce or share).
    let other = transcript("node", "cid", 2, b"open", b"nonce", b"share");
    assert!(!verify_answer(&pw, &other, &mac));
    assert!(!verify_answer(&pw, &t, &mac[..31]));
}

#[test]
fn a_malformed_or_low_order_share_is_refused() {
    let t = [0u8; 32];
    for share in [&[1u8; 31][..], &[0u8; 32][..]] {
        let r = agree(Ephemeral::new(), share, &t, None, Role::Agent);
        assert_eq!(r.err(), Some(HandshakeError::Share), "{share:?}");
    }
}

#[test]
fn a_presence_proof_holds_only_for_its_fields_and_password() {
    let pw = secret("fleet");
    let proof = presence_proof(&pw, "node", "online", 7, "abc");
    assert!(verify_presence_proof(
        &pw, "node", "online", 7, "abc", &proof
    ));
    for (node, status, since, instance, password) in [
        ("nodf", "online", 7, "abc", "fleet"),
        ("node", "offline", 7, "abc", "fleet"),
        ("node", "online", 8, "abc", "fleet"),
        ("node", "online", 7, "abd", "fleet"),
        ("node", "online", 7, "abc", "other"),
    ] {
        let ok = verify_presence_proof(&secret(password), node, status, since, instance, &proof);
        assert!(!ok, "{node} {status} {since} {instance} {password}");
    }
    for bad in ["", "zz", &proof[..10], "0"] {
        assert!(
            !verify_presence_proof(&pw, "node", "online", 7, "abc", bad),
            "{bad:?}"
        );
    }
}

/// The client's ssh-key proofs travel sealed: the agent of this session
/// opens them, nobody who only watches does, and another session's keys
/// (a replay) do not.
#[test]
fn proofs_open_only_with_the_session_s_keys() {
    let (client, agent) = pair_for_tests(None);
    let sealed = client.seal_proofs(b"proofs");
    assert!(!sealed.windows(6).any(|w| w == b"proofs"));
    assert_eq!(agent.open_proofs(&sealed).as_deref(), Some(&b"proofs"[..]));
    let (_, other_agent) = pair_for_tests(None);
    assert_eq!(other_agent.open_proofs(&sealed), None);
    let mut flipped = sealed.clone();
    flipped[0] ^= 1;
    assert_eq!(agent.open_proofs(&flipped), None);
}
