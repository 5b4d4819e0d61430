use super::*;
use clap::Parser;

#[test]
fn list_and_forget_flags() {
    let parse = |args: &[&str]| {
        ProxyArgs::try_parse_from([&["mqtt-proxy"], args].concat()).map(|a| {
            let node = a
                .resolve_with(&FileConfig::default(), &|_| None)
                .map(|c| c.node);
            (a.list, a.online, a.forget, node.map_err(|e| e.to_string()))
        })
    };
    let none = || Ok(String::new());
    assert_eq!(
        parse(&["--list"]).ok(),
        Some((Some(None), false, None, none()))
    );
    assert_eq!(
        parse(&["--list", "prod-*", "--online"]).ok(),
        Some((Some(Some("prod-*".into())), true, None, none()))
    );
    assert_eq!(
        parse(&["--forget", "web-1"]).ok(),
        Some((None, false, Some("web-1".into()), Ok("web-1".into())))
    );
    assert_eq!(
        parse(&["--forget", "a/b"]).ok().map(|r| r.3),
        Some(Err(
            "invalid node id \"a/b\": use 1-64 letters, digits, '.', '_' or '-'".into()
        ))
    );
    for bad in [
        &["--online"][..],
        &["--forget", "a", "--list"],
        &["--forget", "a", "b"],
        &["--list", "a", "b"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?} must be refused");
    }
}
