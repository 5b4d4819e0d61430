use super::*;

#[test]
fn ids_and_prefixes() {
    for ok in ["a", "prod-db.eu_1", "X9"] {
        assert!(valid_id(ok), "{ok}");
    }
    for bad in ["", "a/b", "a+b", "#", "a b", "ü", &"x".repeat(65)] {
        assert!(!valid_id(bad), "{bad}");
    }
    assert!(valid_prefix("mqtt-proxy"));
    assert!(valid_prefix("org/fleet"));
    for bad in ["", "/a", "a/", "a//b", "a/+", "#"] {
        assert!(!valid_prefix(bad), "{bad}");
    }
}
