use super::*;

fn node(id: &str, status: &str, since: u64) -> Node {
    Node {
        node: id.into(),
        status: status.into(),
        version: "0.1.0".into(),
        since,
        instance: "i".into(),
        sessions: None,
        broker: None,
    }
}

/// (node, status, broker) of each row.
fn rows(nodes: &[Node]) -> Vec<(String, String, String)> {
    nodes
        .iter()
        .map(|n| {
            (
                n.node.clone(),
                n.status.clone(),
                n.broker.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn one_row_per_node_the_newest_presence_wins() {
    let a = "mqtt://a:1883".to_owned();
    let b = "mqtt://b:1883".to_owned();
    let merged = merge(vec![
        (
            a.clone(),
            vec![
                // Left A for B: A's stale "online" is older.
                node("moved", "online", 10),
                // Its will on A (since: the agent's start) against B's
                // fresh online.
                node("willed", "offline", 5),
                node("only-a", "online", 3),
                node("tie", "online", 7),
            ],
        ),
        (
            b.clone(),
            vec![
                node("moved", "online", 20),
                node("willed", "online", 9),
                node("only-b", "offline", 4),
                node("tie", "online", 7),
            ],
        ),
    ]);
    let s = |x: &str| x.to_owned();
    assert_eq!(
        rows(&merged),
        vec![
            (s("moved"), s("online"), b.clone()),
            (s("only-a"), s("online"), a.clone()),
            (s("only-b"), s("offline"), b.clone()),
            (s("tie"), s("online"), a.clone()),
            (s("willed"), s("online"), b.clone()),
        ]
    );
}

#[test]
fn no_listings_no_rows() {
    assert!(merge(Vec::new()).is_empty());
    assert!(merge(vec![("mqtt://a:1".into(), Vec::new())]).is_empty());
}
