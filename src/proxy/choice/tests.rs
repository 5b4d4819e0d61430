use super::*;
use Answer::*;

fn on(since: u64) -> Answer {
    Online { since }
}

fn down() -> Answer {
    Unreachable("connection refused".into())
}

#[test]
fn choosing_the_broker_by_presence() {
    // (answers in list order, grace over, choice)
    let cases: Vec<(Vec<Answer>, bool, Choice)> = vec![
        // The first broker where the node is online.
        (vec![on(10), Unknown], false, Choice::Use(0)),
        (vec![Unknown, on(10)], false, Choice::Use(1)),
        (vec![Offline, down(), on(10)], false, Choice::Use(2)),
        // Several say online: the newest `since` is where the agent is
        // (a partition: A still holds the agent's old "online").
        (vec![on(10), on(50)], false, Choice::Use(1)),
        (vec![on(50), on(10)], false, Choice::Use(0)),
        // Equal: the earlier broker.
        (vec![on(10), on(10)], false, Choice::Use(0)),
        (vec![Unknown, on(7), on(7)], false, Choice::Use(1)),
        // An online answer waits for brokers still silent, until the
        // grace is over, then takes the newest so far.
        (vec![on(10), Pending], false, Choice::Wait),
        (vec![on(10), Pending], true, Choice::Use(0)),
        (vec![Pending, on(10), on(20)], true, Choice::Use(2)),
        // Nobody says online yet: wait for every answer (grace or not).
        (vec![Offline, Pending], false, Choice::Wait),
        (vec![Offline, Pending], true, Choice::Wait),
        (vec![Pending, Pending], true, Choice::Wait),
        // Nowhere.
        (vec![Offline, Unknown], false, Choice::Nowhere),
        (vec![down(), down()], false, Choice::Nowhere),
        (vec![Unknown], false, Choice::Nowhere),
    ];
    for (answers, grace_over, want) in cases {
        assert_eq!(
            choose(&answers, grace_over),
            want,
            "{answers:?} grace over: {grace_over}"
        );
    }
}

#[test]
fn nowhere_names_every_broker_tried() {
    let urls = ["mqtt://a:1883", "mqtts://b:8883", "mqtt://c:1"].map(String::from);
    assert_eq!(
        nowhere(&urls, &[Offline, Unknown, down()]),
        "mqtt://a:1883 offline, mqtts://b:8883 never announced, \
         mqtt://c:1 unreachable (connection refused)"
    );
}
