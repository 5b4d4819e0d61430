//! A captured answer (AUTH) replayed into another session, on the same
//! client id and on another, is refused.

use super::*;

/// A captured AUTH is useless for any other session: replayed after its
/// OPEN on the same client id (the agent challenges afresh) and on
/// another client id, it is refused.
#[test]
fn an_answer_replayed_into_another_session_is_refused() {
    let dir = scratch_dir("access-replay");
    let alice = keygen(dir.path(), "alice", "ed25519");
    let node = Node::start("access_replay", dir.path(), &public(&alice), "");
    let port = node.broker.port();
    let spy = Raw::connect(port, &format!("spy-{}", node.node), None);
    spy.subscribe(&[&format!("{}/{}/s/+/up", node.prefix, node.node)]);
    node.echoes(&["--identity", path_arg(&alice)], "", "alice");
    let recorded = spy.collect(Duration::from_millis(500));
    let kind = |f: &[u8]| f.get(1).copied().unwrap_or(0);
    const OPEN: u8 = 1;
    const REFUSE: u8 = 3;
    const CHALLENGE: u8 = 4;
    const AUTH: u8 = 5;
    let (topic, auth) = recorded
        .iter()
        .find(|(_, f)| kind(f) == AUTH)
        .cloned()
        .expect("an AUTH was recorded");
    let (_, open) = recorded
        .iter()
        .find(|(t, f)| *t == topic && kind(f) == OPEN)
        .cloned()
        .expect("its OPEN was recorded");
    let header = mqtt_proxy::protocol::HEADER_LEN;
    let up_of = |cid: &str| format!("{}/{}/s/{cid}/up", node.prefix, node.node);
    let victim = topic
        .strip_suffix("/up")
        .and_then(|t| t.rsplit('/').next())
        .expect("client id")
        .to_owned();
    for (cid, what) in [
        (victim.as_str(), "same client id"),
        ("replayer-1", "another client id"),
    ] {
        let attacker = Raw::connect(port, &format!("attacker-{cid}"), None);
        attacker.subscribe(&[&format!("{}/{}/s/{cid}/down", node.prefix, node.node)]);
        attacker.publish(&up_of(cid), open.clone());
        let challenged = attacker.collect(Duration::from_secs(2));
        assert_eq!(
            challenged.iter().map(|(_, f)| kind(f)).collect::<Vec<_>>(),
            [CHALLENGE],
            "{what}: a fresh challenge"
        );
        attacker.publish(&up_of(cid), auth.clone());
        let answers = attacker.collect(Duration::from_secs(2));
        let kinds: Vec<u8> = answers.iter().map(|(_, f)| kind(f)).collect();
        assert_eq!(kinds, [REFUSE], "{what}: refused, never accepted");
        let f = &answers[0].1;
        assert_eq!(f[header], 5, "{what}: the access refusal code");
        assert_eq!(&f[header + 1..], b"no authorized key", "{what}");
    }
}
