use super::*;

#[test]
fn utc_dates() {
    assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    assert_eq!(utc(1_795_340_901), "2026-11-22 09:48:21 UTC");
}

#[test]
fn table_aligns_columns() {
    let n = |node: &str, status: &str, sessions| Node {
        node: node.into(),
        status: status.into(),
        version: "0.1.0".into(),
        since: 0,
        instance: "i".into(),
        sessions,
        broker: None,
    };
    let t = table(&[n("a", "online", Some(12)), n("long-name", "offline", None)]);
    assert_eq!(
        t,
        "NODE       STATUS   SESSIONS  VERSION  SINCE\n\
         a          online   12        0.1.0    1970-01-01 00:00:00 UTC\n\
         long-name  offline  -         0.1.0    1970-01-01 00:00:00 UTC\n"
    );
    assert_eq!(
        table(&[]),
        "NODE  STATUS  SESSIONS  VERSION  SINCE\n(no nodes)\n"
    );
}

#[test]
fn a_list_of_brokers_adds_the_broker_column() {
    let n = |node: &str, broker: &str| Node {
        node: node.into(),
        status: "online".into(),
        version: "0.1.0".into(),
        since: 0,
        instance: "i".into(),
        sessions: Some(0),
        broker: Some(broker.into()),
    };
    assert_eq!(
        table(&[n("a", "mqtt://b1:1883"), n("b", "mqtts://b2:8883")]),
        "NODE  STATUS  SESSIONS  VERSION  SINCE                    BROKER\n\
         a     online  0         0.1.0    1970-01-01 00:00:00 UTC  mqtt://b1:1883\n\
         b     online  0         0.1.0    1970-01-01 00:00:00 UTC  mqtts://b2:8883\n"
    );
}
