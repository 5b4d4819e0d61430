use super::*;

#[test]
fn topics() {
    let t = Topics::new("mqtt-proxy", "db-1");
    assert_eq!(t.up("c1"), "mqtt-proxy/db-1/s/c1/up");
    assert_eq!(t.down("c1"), "mqtt-proxy/db-1/s/c1/down");
    assert_eq!(t.parse_up("mqtt-proxy/db-1/s/c1/up"), Some("c1"));
    assert_eq!(t.parse_up("mqtt-proxy/db-1/s/c1/down"), None);
    assert_eq!(t.parse_up("mqtt-proxy/db-2/s/c1/up"), None);
    assert_eq!(t.parse_up("mqtt-proxy/db-1/s/a/b/up"), None);
    assert_eq!(t.parse_up("mqtt-proxy/db-1/s//up"), None);
}
