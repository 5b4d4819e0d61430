//! An agent with authorized keys (issue 24): what a challenge asks
//! for, and which AUTH admits whom.
use super::*;
use crate::access::testkeys::{self, at, NOW};
use ssh_key::PrivateKey;

/// An agent whose `authorized_keys` is `lines`, at [`NOW`].
fn with_keys(lines: &str, with_password: bool, t0: Instant) -> Admission {
    let mut a = admission(4, with_password, t0);
    let lists = Access::parse(lines, "").expect("parses");
    let (tx, rx) = watch::channel(Arc::new(lists));
    std::mem::forget(tx);
    a.policy.access = Some(rx);
    a.policy.clock = || at(NOW);
    a
}

/// One client's opening: its OPEN, then (once challenged) its keys.
struct Client {
    cid: &'static str,
    sid: u64,
    share: [u8; SHARE_LEN],
    ours: Option<Ephemeral>,
}

impl Client {
    fn new(cid: &'static str, sid: u64) -> Client {
        let ours = Ephemeral::new();
        Client {
            cid,
            sid,
            share: *ours.share(),
            ours: Some(ours),
        }
    }

    fn open(&self) -> Frame {
        let mut f = Frame::control(Kind::Open, self.sid, Bytes::copy_from_slice(&self.share));
        f.window = WINDOW;
        f
    }

    /// The transcript of the k-th challenge (asking for `needs`) and
    /// our keys agreed with it.
    fn answer(
        &mut self,
        k: usize,
        needs: u8,
        password: Option<&Secret>,
    ) -> ([u8; 32], SessionKeys) {
        let agent = share(k);
        let challenge = [&agent[..], &[needs]].concat();
        let t = handshake::transcript(NODE, self.cid, self.sid, &self.share, &challenge, &agent);
        let ours = self.ours.take().expect("answered once");
        let keys = handshake::agree(ours, &agent, &t, password, Role::Client).expect("valid");
        (t, keys)
    }

    /// AUTH for the k-th challenge: the answer to `password` when
    /// given, then proofs by `signers` sealed with our keys.
    fn auth(
        &mut self,
        k: usize,
        needs: u8,
        password: Option<&Secret>,
        signers: &[&PrivateKey],
    ) -> Frame {
        let (t, keys) = self.answer(k, needs, password);
        let mut payload = password
            .map(|p| handshake::answer(p, &t).to_vec())
            .unwrap_or_default();
        let proofs: Vec<_> = signers
            .iter()
            .map(|s| testkeys::prove(s, None, &t))
            .collect();
        if !proofs.is_empty() {
            payload.extend(keys.seal_proofs(&access::encode(&proofs).expect("encodes")));
        }
        Frame::control(Kind::Auth, self.sid, payload.into())
    }
}

/// What admission did with an AUTH: the fingerprint admitted, or the
/// refusal's code and reason.
fn outcome(actions: Vec<Action>) -> Result<String, (RefuseCode, String)> {
    match actions.into_iter().last() {
        Some(Action::Start { session, .. }) => {
            Ok(session.identity.expect("admitted on a key").fingerprint)
        }
        Some(Action::Refuse { code, reason, .. }) => Err((code, reason.into_owned())),
        other => panic!("unexpected {other:?}"),
    }
}

fn no_key() -> Result<String, (RefuseCode, String)> {
    Err((RefuseCode::Access, access::NO_AUTHORIZED_KEY.to_owned()))
}

#[test]
fn the_challenge_asks_for_keys_and_an_authorized_key_opens() {
    let t0 = Instant::now();
    let (alice, mallory) = (testkeys::ed25519(), testkeys::ed25519());
    let mut a = with_keys(&testkeys::line(&alice), false, t0);
    // No ACCEPT without a challenge: it asks for keys only.
    let mut c = Client::new("a", 1);
    let actions = a.frame(t0, "a", c.open());
    let [Action::Challenge { payload, .. }] = &actions[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(payload.len(), SHARE_LEN + 1);
    assert_eq!(payload[SHARE_LEN], NEEDS_KEYS);
    // An unlisted key first, then the listed one: the listed one opens.
    let auth = c.auth(1, NEEDS_KEYS, None, &[&mallory, &alice]);
    assert_eq!(
        outcome(a.frame(t0, "a", auth)),
        Ok(access::fingerprint(alice.public_key().key_data()))
    );

    // Mallory alone is refused, and told it is for want of a key.
    let mut m = Client::new("m", 2);
    a.frame(t0, "m", m.open());
    let auth = m.auth(2, NEEDS_KEYS, None, &[&mallory]);
    assert_eq!(outcome(a.frame(t0, "m", auth)), no_key());
    // Garbage, or proofs in the clear (not sealed for the session), are
    // no proof at all.
    let mut n = Client::new("n", 3);
    a.frame(t0, "n", n.open());
    let (t, _) = n.answer(3, NEEDS_KEYS, None);
    let clear = access::encode(&[testkeys::prove(&alice, None, &t)]).expect("encodes");
    assert_eq!(
        outcome(a.frame(t0, "n", Frame::control(Kind::Auth, 3, clear.into()))),
        no_key()
    );
}

/// A captured AUTH is useless for any other session: another client
/// id, another session id, or a later challenge of the same client.
#[test]
fn an_answer_replayed_into_another_session_is_refused() {
    let t0 = Instant::now();
    let alice = testkeys::ed25519();
    let mut a = with_keys(&testkeys::line(&alice), false, t0);
    let mut c = Client::new("a", 1);
    a.frame(t0, "a", c.open());
    let captured = c.auth(1, NEEDS_KEYS, None, &[&alice]);
    // The same OPEN from another client id: its own challenge (2).
    a.frame(t0, "b", c.open());
    assert_eq!(outcome(a.frame(t0, "b", captured.clone())), no_key());
    // The same client id, another session: a fresh challenge (3).
    let other = Client::new("a", 9);
    a.frame(t0, "a", other.open());
    let mut replay = captured.clone();
    replay.sid = 9;
    assert_eq!(outcome(a.frame(t0, "a", replay)), no_key());
    // Client `a`'s pending challenge was session 9's: the answer for
    // session 1 has nothing left to answer.
    assert_eq!(
        outcome(a.frame(t0, "a", captured)),
        Err((RefuseCode::Auth, "authorization failed".to_owned()))
    );
}

#[test]
fn with_a_password_both_are_required() {
    let t0 = Instant::now();
    let alice = testkeys::ed25519();
    let needs = NEEDS_PASSWORD | NEEDS_KEYS;
    // (case, the password answered with, whether a key is proven, outcome)
    type Case<'a> = (&'a str, Option<&'a Secret>, bool, Result<(), RefuseCode>);
    let (right, wrong) = (password(), Secret::new("wrong".into()));
    let cases: [Case; 4] = [
        ("both", Some(&right), true, Ok(())),
        ("key only", None, true, Err(RefuseCode::Auth)),
        ("wrong password", Some(&wrong), true, Err(RefuseCode::Auth)),
        (
            "password, no key",
            Some(&right),
            false,
            Err(RefuseCode::Access),
        ),
    ];
    for (what, secret, with_key, expected) in cases {
        let mut a = with_keys(&testkeys::line(&alice), true, t0);
        let mut c = Client::new("a", 1);
        let actions = a.frame(t0, "a", c.open());
        let [Action::Challenge { payload, .. }] = &actions[..] else {
            panic!("{actions:?}")
        };
        assert_eq!(payload[SHARE_LEN], needs);
        let signers: Vec<&PrivateKey> = if with_key { vec![&alice] } else { vec![] };
        let auth = c.auth(1, needs, secret, &signers);
        let got = outcome(a.frame(t0, "a", auth))
            .map(|_| ())
            .map_err(|(c, _)| c);
        assert_eq!(got, expected, "{what}");
    }
}

#[test]
fn certificates_are_checked_at_the_agent_s_clock() {
    let t0 = Instant::now();
    let (ca, alice) = (testkeys::ed25519(), testkeys::ed25519());
    let lines = format!("cert-authority,principals=\"ops\" {}", testkeys::line(&ca));
    let good = testkeys::user_cert(&ca, &alice, &["ops"]);
    let expired = testkeys::cert_of(
        &ca,
        &alice,
        ssh_key::certificate::CertType::User,
        &["ops"],
        (NOW - 7200, NOW - 3600),
    );
    for (cert, expected) in [
        (good, Ok(access::fingerprint(alice.public_key().key_data()))),
        (
            expired,
            Err((RefuseCode::Access, "certificate expired".to_owned())),
        ),
    ] {
        let mut a = with_keys(&lines, false, t0);
        let mut c = Client::new("a", 1);
        a.frame(t0, "a", c.open());
        let (t, keys) = c.answer(1, NEEDS_KEYS, None);
        let proof = testkeys::prove(&alice, Some(cert), &t);
        let sealed = keys.seal_proofs(&access::encode(&[proof]).expect("encodes"));
        let frame = Frame::control(Kind::Auth, 1, sealed.into());
        assert_eq!(outcome(a.frame(t0, "a", frame)), expected);
    }
}
