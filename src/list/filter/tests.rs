use super::*;

/// Whether `pattern` matches all of `text`.
fn glob(pattern: &str, text: &str) -> bool {
    compile_glob(pattern)
        .unwrap_or_else(|e| panic!("{e:#}"))
        .is_match(text)
}

#[test]
fn glob_matches_like_a_shell() {
    let cases = [
        ("prod-*", "prod-db", true),
        ("prod-*", "prod-", true),
        ("prod-*", "web-prod-1", false),
        ("*", "", true),
        ("*-1", "web-1", true),
        ("*-1", "web-12", false),
        ("web-?", "web-1", true),
        ("web-?", "web-12", false),
        ("*db*", "prod-db-2", true),
        ("a*b*c", "aXbYbZc", true),
        ("a*b*c", "aXbYbZ", false),
        ("[pw]*", "prod", true),
        ("[pw]*", "db", false),
        ("node-[0-9][0-9]", "node-42", true),
        ("node-[0-9][0-9]", "node-4x", false),
        ("node-[!0-9]", "node-x", true),
        ("node-[^0-9]", "node-1", false),
        ("[]x]", "]", true),
        ("[-a]", "-", true),
        ("[a-]", "-", true),
        ("a[b", "a[b", true),
        ("a[b", "ab", false),
        ("exact", "exact", true),
        ("exact", "exactly", false),
        ("", "", true),
        ("", "a", false),
    ];
    for (pattern, text, want) in cases {
        assert_eq!(glob(pattern, text), want, "{pattern:?} vs {text:?}");
    }
}

#[test]
fn filter_by_pattern_and_status() {
    let n = |node: &str, status: &str| Node {
        node: node.into(),
        status: status.into(),
        version: "0.1.0".into(),
        since: 0,
        instance: "i".into(),
        sessions: None,
        broker: None,
    };
    let nodes = [
        n("prod-a", "online"),
        n("prod-b", "offline"),
        n("web-1", "online"),
    ];
    let kept = |f: Filter| -> Vec<String> {
        let keep = f.compile().expect("a valid pattern");
        nodes
            .iter()
            .filter(|x| keep.keeps(x))
            .map(|x| x.node.clone())
            .collect()
    };
    let pattern = |p: &str| Some(p.to_owned());
    assert_eq!(kept(Filter::default()), ["prod-a", "prod-b", "web-1"]);
    assert_eq!(
        kept(Filter {
            pattern: pattern("prod-*"),
            online: false
        }),
        ["prod-a", "prod-b"]
    );
    assert_eq!(
        kept(Filter {
            pattern: None,
            online: true
        }),
        ["prod-a", "web-1"]
    );
    assert_eq!(
        kept(Filter {
            pattern: pattern("prod-*"),
            online: true
        }),
        ["prod-a"]
    );
}

#[test]
fn braces_match_either_alternative() {
    let cases = [
        ("{prod,web}-*", "prod-db", true),
        ("{prod,web}-*", "web-1", true),
        ("{prod,web}-*", "db-1", false),
        ("node-{1,2[0-9]}", "node-25", true),
        ("node-{1,2[0-9]}", "node-3", false),
    ];
    for (pattern, text, want) in cases {
        assert_eq!(glob(pattern, text), want, "{pattern:?} vs {text:?}");
    }
}

#[test]
fn an_invalid_pattern_is_an_error_naming_it() {
    let cases = [
        (
            "prod-{db",
            "invalid pattern 'prod-{db': unclosed alternate group; missing '}' \
             (maybe escape '{' with '[{]'?)",
        ),
        (
            "web}",
            "invalid pattern 'web}': unopened alternate group; missing '{' \
             (maybe escape '}' with '[}]'?)",
        ),
        (
            "node-[9-0]",
            "invalid pattern 'node-[9-0]': invalid range; '9' > '0'",
        ),
    ];
    for (pattern, text) in cases {
        let filter = Filter {
            pattern: Some(pattern.to_owned()),
            online: false,
        };
        let e = filter.compile().expect_err(pattern);
        assert_eq!(format!("{e:#}"), text);
    }
}
