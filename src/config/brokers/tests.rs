use crate::config::{BrokerArgs, FileConfig, Role};

fn no_env(_: &str) -> Option<String> {
    None
}

fn file(text: &str) -> FileConfig {
    FileConfig::parse(text, Role::Proxy).expect("valid test config")
}

/// The resolved list's URLs, or the error's line.
type Urls = Result<Vec<String>, String>;
/// A per-call broker (`NODE@HOST[:PORT]`).
type Over<'a> = Option<(&'a str, Option<u16>)>;

fn flags(values: &[&str]) -> BrokerArgs {
    BrokerArgs {
        broker: values.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    }
}

/// The resolved list as URLs, or the error's one line.
fn urls(args: &BrokerArgs, file_text: &str, over: Over) -> Urls {
    args.resolve(
        &file(file_text),
        over.map(|(h, p)| (h.to_owned(), p)),
        &no_env,
    )
    .map(|b| b.endpoints().iter().map(|e| e.url()).collect())
    .map_err(|e| format!("{e:#}"))
}

#[test]
fn lists_from_every_source_keep_their_order_and_each_url_its_rules() {
    let want = |v: &[&str]| Ok(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let cases: Vec<(BrokerArgs, &str, Urls)> = vec![
        // One broker, as before lists.
        (flags(&["mqtt://a"]), "", want(&["mqtt://a:1883"])),
        (BrokerArgs::default(), "", want(&["mqtt://localhost:1883"])),
        // Commas (the flag or MQTT_BROKER), the flag repeated, or both.
        (
            flags(&["mqtt://a,mqtts://b"]),
            "",
            want(&["mqtt://a:1883", "mqtts://b:8883"]),
        ),
        (
            flags(&["mqtt://a", "ws://b:9/x", "wss://c"]),
            "",
            want(&["mqtt://a:1883", "ws://b:9/x", "wss://c:443/mqtt"]),
        ),
        (
            flags(&["mqtt://a, mqtt://b", "mqtt://c"]),
            "",
            want(&["mqtt://a:1883", "mqtt://b:1883", "mqtt://c:1883"]),
        ),
        // The config key: a string (commas allowed) or an array.
        (
            BrokerArgs::default(),
            "broker = \"mqtt://a,mqtt://b:2\"",
            want(&["mqtt://a:1883", "mqtt://b:2"]),
        ),
        (
            BrokerArgs::default(),
            "broker = [\"mqtt://a\", \"mqtts://b\"]",
            want(&["mqtt://a:1883", "mqtts://b:8883"]),
        ),
        // A list on the command line replaces the file's.
        (
            flags(&["mqtt://c"]),
            "broker = [\"mqtt://a\", \"mqtt://b\"]",
            want(&["mqtt://c:1883"]),
        ),
        // --tls applies to every mqtt:// entry, as it does to one.
        (
            BrokerArgs {
                tls: Some(true),
                ..flags(&["mqtt://a,mqtt://b"])
            },
            "",
            want(&["mqtts://a:8883", "mqtts://b:8883"]),
        ),
    ];
    for (args, text, expected) in cases {
        assert_eq!(
            urls(&args, text, None),
            expected,
            "{:?} / {text:?}",
            args.broker
        );
    }
}

#[test]
fn bad_lists_are_one_line_errors() {
    let cases: Vec<(BrokerArgs, &str, Over, &str)> = vec![
        (
            flags(&["mqtt://a,,mqtt://b"]),
            "",
            None,
            "--broker: empty entry in the broker list \"mqtt://a,,mqtt://b\"",
        ),
        (
            flags(&["mqtt://a,"]),
            "",
            None,
            "--broker: empty entry in the broker list \"mqtt://a,\"",
        ),
        (
            flags(&[""]),
            "",
            None,
            "--broker: empty entry in the broker list \"\"",
        ),
        (
            BrokerArgs::default(),
            "broker = [\"mqtt://a\", \"\"]",
            None,
            "key 'broker': empty entry in the broker list \"\"",
        ),
        (
            flags(&["mqtt://a,mqtt://a:1883"]),
            "",
            None,
            "broker mqtt://a:1883 is listed twice",
        ),
        (
            flags(&["mqtt://A", "mqtt://a"]),
            "",
            None,
            "broker mqtt://a:1883 is listed twice",
        ),
        (
            flags(&["mqtt://a,mqtt://b"]),
            "",
            Some(("n", None)),
            "NODE@HOST names one broker; it cannot be combined with a list of brokers \
             (--broker, MQTT_BROKER)",
        ),
        (
            BrokerArgs {
                port: Some(7),
                ..flags(&["mqtt://a,mqtt://b"])
            },
            "",
            None,
            "--host and --port (MQTT_HOST, MQTT_PORT, keys 'host' and 'port') name one broker: \
             with a list of brokers, give each its host and port in its URL",
        ),
        (
            BrokerArgs::default(),
            "broker = [\"mqtt://a\", \"mqtt://b\"]\nhost = \"h\"",
            None,
            "--host and --port (MQTT_HOST, MQTT_PORT, keys 'host' and 'port') name one broker: \
             with a list of brokers, give each its host and port in its URL",
        ),
        (
            flags(&["mqtt://a,http://b"]),
            "",
            None,
            "invalid broker URL \"http://b\": expected mqtt://HOST[:PORT], mqtts://HOST[:PORT], \
             ws://HOST[:PORT][/PATH] or wss://HOST[:PORT][/PATH]",
        ),
    ];
    for (args, text, over, msg) in cases {
        assert_eq!(
            urls(&args, text, over),
            Err(msg.to_owned()),
            "{:?}",
            args.broker
        );
        assert!(!msg.contains('\n'));
    }
}

#[test]
fn node_at_host_picks_one_broker() {
    // With one --broker: its scheme, the given host (as before lists).
    assert_eq!(
        urls(&flags(&["mqtts://a"]), "", Some(("n", Some(9)))),
        Ok(vec!["mqtts://n:9".to_owned()])
    );
    // With the config file's list: its first broker's scheme, one broker.
    assert_eq!(
        urls(
            &BrokerArgs::default(),
            "broker = [\"mqtt://a\", \"mqtt://b\"]",
            Some(("n", None))
        ),
        Ok(vec!["mqtt://n:1883".to_owned()])
    );
    // A host given at a lower level than the list is ignored, as it is
    // next to one URL.
    assert_eq!(
        urls(&flags(&["mqtt://a,mqtt://b"]), "host = \"h\"", None),
        Ok(vec!["mqtt://a:1883".to_owned(), "mqtt://b:1883".to_owned()])
    );
}

#[test]
fn starting_at_rotates_the_list() {
    let b = flags(&["mqtt://a,mqtt://b,mqtt://c"])
        .resolve(&file(""), None, &no_env)
        .unwrap();
    let order = |b: &crate::config::Broker| -> Vec<String> {
        b.endpoints().iter().map(|e| e.addr.host.clone()).collect()
    };
    assert_eq!(order(&b.starting_at(0)), ["a", "b", "c"]);
    assert_eq!(order(&b.starting_at(1)), ["b", "c", "a"]);
    assert_eq!(order(&b.starting_at(2)), ["c", "a", "b"]);
    let each: Vec<Vec<String>> = b.each().iter().map(order).collect();
    assert_eq!(each, [["a"], ["b"], ["c"]]);
}

#[test]
fn tls_files_serve_the_tls_brokers_of_a_list() {
    let ca = |broker: &[&str]| BrokerArgs {
        ca_file: Some("/ca.pem".into()),
        ..flags(broker)
    };
    // Plain and TLS brokers in one list: the CA file is for the TLS ones.
    let b = ca(&["mqtts://a,mqtt://b,ws://c,wss://d"])
        .resolve(&file(""), None, &no_env)
        .unwrap();
    let tls: Vec<bool> = b.endpoints().iter().map(|e| e.tls.is_some()).collect();
    assert_eq!(tls, [true, false, false, true]);
    assert_eq!(
        b.endpoints()[0]
            .tls
            .as_ref()
            .and_then(|t| t.ca_file.clone()),
        Some("/ca.pem".into())
    );
    // No TLS broker at all: the files are a mistake, as with one broker.
    assert_eq!(
        urls(&ca(&["mqtt://a,ws://b"]), "", None),
        Err(
            "--ca-file, --cert-file and --key-file need TLS, but no broker of the list uses \
             it: add --tls or use mqtts:// or wss:// broker URLs"
                .to_owned()
        )
    );
    assert_eq!(
        urls(&ca(&["mqtt://a"]), "", None),
        Err(
            "--ca-file, --cert-file and --key-file need TLS: add --tls or use an mqtts:// \
             broker URL"
                .to_owned()
        )
    );
    // An explicit --tls still contradicts a ws:// entry.
    let args = BrokerArgs {
        tls: Some(true),
        ..flags(&["mqtts://a,ws://b"])
    };
    assert_eq!(
        urls(&args, "", None),
        Err(
            "a ws:// broker URL has no TLS, but TLS options are set (--tls, --ca-file, \
             --cert-file, --key-file): use wss:// or drop them"
                .to_owned()
        )
    );
}
