use super::*;
use crate::config::{BrokerArgs, FileConfig};

fn broker(url: &str) -> Broker {
    BrokerArgs {
        broker: vec![url.into()],
        ..Default::default()
    }
    .resolve(&FileConfig::default(), None, &|_| None)
    .expect("valid settings")
}

#[test]
fn a_broker_is_known_by_its_url_and_route() {
    assert_eq!(key(&broker("mqtt://b.example")), "mqtt://b.example:1883");
    assert_eq!(key(&broker("mqtts://b.example")), "mqtts://b.example:8883");
    assert_eq!(key(&broker("wss://b.example/ws")), "wss://b.example:443/ws");
    let mut via = broker("mqtt://b.example:1884");
    via.http_proxy = Some(crate::config::HttpProxy::parse("http://p:3128").unwrap());
    assert_eq!(key(&via), "mqtt://b.example:1884+via+p:3128");
}

#[test]
fn remembers_per_broker_and_the_latest_wins() {
    let dir = tempfile::tempdir().unwrap();
    let r = Remembered::at(&dir.path().join("cache"));
    let (a, b) = (broker("mqtt://a.example"), broker("mqtt://b.example"));
    assert_eq!(r.get(&a), None, "nothing yet, and no directory yet");
    r.put(&a, Version::V311);
    r.put(&b, Version::V5);
    assert_eq!(
        (r.get(&a), r.get(&b)),
        (Some(Version::V311), Some(Version::V5))
    );
    r.put(&a, Version::V5);
    assert_eq!(r.get(&a), Some(Version::V5));
    let text = std::fs::read_to_string(dir.path().join("cache").join(FILE)).unwrap();
    assert_eq!(text, "mqtt://b.example:1883 5\nmqtt://a.example:1883 5\n");
}

#[test]
fn a_corrupt_or_unwritable_file_is_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = broker("mqtt://a.example");
    std::fs::write(
        dir.path().join(FILE),
        "\u{0}garbage\nmqtt://a.example:1883 7\n\nmqtt://a.example:1883 3.1.1\n ???",
    )
    .unwrap();
    let r = Remembered::at(dir.path());
    assert_eq!(r.get(&a), Some(Version::V311), "the good line counts");
    // A directory where the file should be: reads and writes fail quietly.
    let blocked = tempfile::tempdir().unwrap();
    std::fs::create_dir(blocked.path().join(FILE)).unwrap();
    let r = Remembered::at(blocked.path());
    r.put(&a, Version::V311);
    assert_eq!(r.get(&a), None);
}

#[test]
fn it_keeps_at_most_so_many_brokers() {
    let dir = tempfile::tempdir().unwrap();
    let r = Remembered::at(dir.path());
    for i in 0..MAX_ENTRIES + 5 {
        r.put(&broker(&format!("mqtt://b{i}.example")), Version::V311);
    }
    let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
    assert_eq!(text.lines().count(), MAX_ENTRIES);
    assert_eq!(r.get(&broker("mqtt://b0.example")), None, "the oldest went");
    assert_eq!(
        r.get(&broker(&format!("mqtt://b{}.example", MAX_ENTRIES + 4))),
        Some(Version::V311)
    );
}
