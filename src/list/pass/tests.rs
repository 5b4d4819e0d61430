use std::collections::{BTreeMap, BTreeSet};

use super::*;

fn publish(topic: &str, retain: bool, payload: &str) -> Message {
    Message::new(topic, payload.as_bytes().to_vec(), retain)
}

fn presence(status: &str, sessions: Option<u32>) -> String {
    let p = Presence {
        status: status.into(),
        version: "0.1.0".into(),
        since: 7,
        instance: "i".into(),
        sessions,
        protocol: Some(crate::protocol::VERSION),
        proof: None,
    };
    String::from_utf8(p.encode().to_vec()).expect("JSON is UTF-8")
}

#[test]
fn a_pass_keeps_the_latest_state_and_tells_retained_from_live() {
    let mut pass = Pass::default();
    let on = presence("online", Some(2));
    let off = presence("offline", Some(5));
    for p in [
        publish("px/a/presence", true, &on),
        publish("px/b/presence", true, &off),
        publish("px/b/presence", false, &on),
        publish("px/c/presence", true, &on),
        publish("px/c/presence", false, ""),
        publish("px/d/presence", true, "junk"),
        publish("px/e/s/x/up", false, &on),
        publish("other/f/presence", true, &on),
    ] {
        pass.apply("px", &p);
    }
    let rows: Vec<(&str, &str, Option<u32>)> = pass
        .nodes
        .values()
        .map(|n| (n.node.as_str(), n.status.as_str(), n.sessions))
        .collect();
    // An offline node's session count is not shown; an emptied presence
    // removes the node; junk is no node but was delivered.
    assert_eq!(rows, [("a", "online", Some(2)), ("b", "online", Some(2))]);
    let set = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>();
    assert_eq!(set(&pass.retained), ["a", "b", "c", "d"]);
    assert_eq!(set(&pass.live), ["b", "c"]);
}

#[test]
fn passes_agree_unless_a_node_is_missing_without_having_changed() {
    let pass = |retained: &[&str], live: &[&str]| Pass {
        nodes: BTreeMap::new(),
        retained: retained.iter().map(|s| s.to_string()).collect(),
        live: live.iter().map(|s| s.to_string()).collect(),
    };
    let cases: &[(Pass, Pass, Option<usize>)] = &[
        (pass(&["a", "b"], &[]), pass(&["a", "b"], &[]), None),
        (pass(&[], &[]), pass(&[], &[]), None),
        // Dropped by the broker in one pass or the other.
        (pass(&["a", "b"], &[]), pass(&["a"], &[]), Some(1)),
        (pass(&["a"], &[]), pass(&["b", "c"], &[]), Some(3)),
        // Removed, or newly announced, between the passes: the change
        // itself arrived as a live message.
        (pass(&["a", "b"], &["b"]), pass(&["a"], &[]), None),
        (pass(&["a"], &[]), pass(&["a", "n"], &["n"]), None),
        (pass(&["a", "b"], &["a"]), pass(&["a"], &[]), Some(1)),
    ];
    for (i, (a, b, differ)) in cases.iter().enumerate() {
        assert_eq!(a.disagreement(b), *differ, "case {i}");
        assert_eq!(b.disagreement(a), *differ, "case {i} reversed");
    }
}

/// A pass with these retained nodes (each online or not) and live ones.
fn seen(retained: &[(&str, bool)], live: &[&str]) -> Pass {
    let mut pass = Pass::default();
    for (id, online) in retained {
        let status = if *online { "online" } else { "offline" };
        let p = publish(&format!("px/{id}/presence"), true, &presence(status, None));
        pass.apply("px", &p);
    }
    for id in live {
        pass.live.insert((*id).to_owned());
    }
    pass
}

#[test]
fn a_pass_ends_at_its_own_marker_only() {
    let marker = marker_payload(2, 0xab);
    assert_eq!(marker, "end of pass 2 00000000000000ab");
    let topic = marker_topic("px", "c1");
    let on = presence("online", Some(1));
    // (message, ends the pass)
    let cases = [
        (publish("px/a/presence", true, &on), false),
        // An earlier pass's marker, or another nonce: not ours.
        (
            publish(&topic, false, "end of pass 1 00000000000000ab"),
            false,
        ),
        (
            publish(&topic, false, "end of pass 2 00000000000000ac"),
            false,
        ),
        // Our marker under another client's marker topic.
        (
            publish("px/$list/c2", false, "end of pass 2 00000000000000ab"),
            false,
        ),
        (publish("px/b/presence", false, &on), false),
        (
            publish(&topic, false, "end of pass 2 00000000000000ab"),
            true,
        ),
    ];
    let mut c = Collecting::new("px", &topic, marker);
    for (i, (p, ends)) in cases.iter().enumerate() {
        assert_eq!(c.on_message(p), *ends, "message {i}: {}", p.topic);
    }
    let pass = c.finish();
    // Markers are never nodes.
    assert_eq!(pass.nodes.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(pass.retained.iter().collect::<Vec<_>>(), ["a"]);
    assert_eq!(pass.live.iter().collect::<Vec<_>>(), ["b"]);
}

#[test]
fn a_lost_marker_is_sent_again_until_the_tries_or_the_time_run_out() {
    let start = Instant::now();
    let deadline = start + LIST_MAX;
    let lost = OnSilence::Fail(ListError::MarkerLost {
        marker_topic: "px/$list/c1".into(),
    });
    let late = OnSilence::Fail(ListError::NoEndInSight);
    // Silences in one pass: (when, what to do).
    let cases: &[(&str, &[(Instant, OnSilence)])] = &[
        (
            "the ACL forbids the marker: two more tries, then an error",
            &[
                (start + MARKER_SILENCE, OnSilence::Resend),
                (start + 2 * MARKER_SILENCE, OnSilence::Resend),
                (start + 3 * MARKER_SILENCE, lost.clone()),
            ],
        ),
        (
            "the listing's deadline ends the pass whatever the tries",
            &[(deadline, late.clone())],
        ),
        (
            "a resent marker, then the deadline",
            &[
                (start + MARKER_SILENCE, OnSilence::Resend),
                (deadline + MARKER_SILENCE, late.clone()),
            ],
        ),
        (
            "just before the deadline a lost marker is still sent again",
            &[(deadline - MARKER_SILENCE, OnSilence::Resend)],
        ),
    ];
    for (what, silences) in cases {
        let mut c = Collecting::new("px", "px/$list/c1", marker_payload(1, 7));
        for (i, (now, want)) in silences.iter().enumerate() {
            assert_eq!(c.on_silence(*now, deadline), *want, "{what}: silence {i}");
        }
    }
}

#[test]
fn the_listing_is_the_first_pass_that_agrees_with_an_earlier_one() {
    let a = || seen(&[("a", true), ("b", false)], &[]);
    let dropped_b = || seen(&[("a", true)], &[]);
    let dropped_a = || seen(&[("b", false)], &[]);
    let b_removed = || seen(&[("a", true)], &["b"]);
    // (passes in order, the pass that completes the listing: its index, or
    // None when the passes run out).
    type Case = (&'static str, Vec<Pass>, Option<usize>);
    let cases: Vec<Case> = vec![
        ("two that agree", vec![a(), a()], Some(1)),
        ("a change between them", vec![a(), b_removed()], Some(1)),
        (
            "the third agrees with the first",
            vec![a(), dropped_b(), a()],
            Some(2),
        ),
        (
            "the fourth agrees with the second",
            vec![a(), dropped_b(), dropped_a(), dropped_b()],
            Some(3),
        ),
        (
            "four that differ",
            vec![a(), dropped_b(), dropped_a(), seen(&[], &[])],
            None,
        ),
    ];
    for (what, passes, complete) in cases {
        let count = passes.len();
        let mut all = Passes::default();
        let mut result = None;
        for (i, pass) in passes.into_iter().enumerate() {
            match all.add(pass) {
                Ok(None) => assert!(i + 1 < count, "{what}: pass {i} asked for another"),
                Ok(Some(listing)) => {
                    result = Some((i, Ok(listing.nodes.len())));
                    break;
                }
                Err(e) => {
                    result = Some((i, Err(e)));
                    break;
                }
            }
        }
        let (last, outcome) = result.unwrap_or_else(|| panic!("{what}: no outcome"));
        assert_eq!(last, count - 1, "{what}: decided at pass {last}");
        match complete {
            Some(i) => assert!(outcome.is_ok() && last == i, "{what}: {outcome:?}"),
            None => assert_eq!(outcome, Err(ListError::PassesDiffer { most: 2 }), "{what}"),
        }
    }
}

#[test]
fn forget_refuses_unknown_and_online_nodes_and_checks_the_broker_did() {
    let node = |online| {
        seen(&[("n", online)], &[])
            .nodes
            .remove("n")
            .expect("a node")
    };
    let n = || "n".to_owned();
    type Before = Result<Option<Node>, ListError>;
    let before: &[(&str, Pass, Before)] = &[
        ("offline", seen(&[("n", false)], &[]), Ok(Some(node(false)))),
        // A malformed presence is still forgettable.
        ("junk", junk("n"), Ok(None)),
        (
            "unknown",
            seen(&[("m", false)], &[]),
            Err(ListError::UnknownNode { node: n() }),
        ),
        (
            "online",
            seen(&[("n", true)], &[]),
            Err(ListError::Online { node: n() }),
        ),
    ];
    for (what, pass, want) in before {
        assert_eq!(may_forget(pass, "n"), *want, "before: {what}");
    }

    let old = node(false);
    let after: &[(&str, Pass, Result<(), ListError>)] = &[
        ("removed", seen(&[], &[]), Ok(())),
        (
            "announced again",
            seen(&[("n", true)], &[]),
            Err(ListError::AnnouncedAgain { node: n() }),
        ),
        (
            "still there",
            seen(&[("n", false)], &[]),
            Err(ListError::NotRemoved { node: n() }),
        ),
        (
            "still there, malformed",
            junk("n"),
            Err(ListError::NotRemoved { node: n() }),
        ),
    ];
    for (what, pass, want) in after {
        assert_eq!(forgotten(pass, "n", Some(&old)), *want, "after: {what}");
    }
}

/// A pass that delivered a malformed presence for `id`.
fn junk(id: &str) -> Pass {
    let mut pass = Pass::default();
    pass.apply("px", &publish(&format!("px/{id}/presence"), true, "junk"));
    pass
}

#[test]
fn errors_read_as_before() {
    let cases = [
        (
            ListError::PassesDiffer { most: 5000 },
            "could not list the nodes completely: the broker dropped presence messages in 4 \
             attempts (about 5000 nodes; see \"Broker notes\" in docs/brokers.md)",
        ),
        (
            ListError::NoEndInSight,
            "could not list the nodes completely: no end in sight after 60 s (presence \
             messages keep changing)",
        ),
        (
            ListError::MarkerLost {
                marker_topic: "px/$list/c1".into(),
            },
            "could not list the nodes completely: the broker did not deliver our end marker \
             on px/$list/c1 (check the ACL for this user)",
        ),
        (
            ListError::NotRemoved { node: "n".into() },
            "could not forget node 'n': the broker did not remove its presence (check the ACL \
             for this user)",
        ),
    ];
    for (e, text) in cases {
        assert_eq!(e.to_string(), text);
    }
}
