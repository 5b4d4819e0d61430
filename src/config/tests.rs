use super::*;
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;

fn no_env(_: &str) -> Option<String> {
    None
}

fn file(text: &str) -> FileConfig {
    FileConfig::parse(text, Role::Proxy).expect("valid test config")
}

#[test]
fn precedence_flag_env_over_file_over_default() {
    // (flags/env as clap merged them, file text, expected host, port, prefix)
    let cases: Vec<(BrokerArgs, &str, &str, u16, &str)> = vec![
        (BrokerArgs::default(), "", "localhost", 1883, "mqtt-proxy"),
        (
            BrokerArgs::default(),
            "host = \"f\"\nport = 1\ntopic-prefix = \"fp\"",
            "f",
            1,
            "fp",
        ),
        (
            BrokerArgs {
                host: Some("c".into()),
                ..Default::default()
            },
            "host = \"f\"\nport = 2",
            "c",
            2,
            "mqtt-proxy",
        ),
        (
            BrokerArgs {
                broker: vec!["mqtt://u:1234".into()],
                ..Default::default()
            },
            "host = \"f\"\nport = 2",
            "u",
            1234,
            "mqtt-proxy",
        ),
        (
            // A specific flag beats the URL at the same level.
            BrokerArgs {
                broker: vec!["mqtt://u:1234".into()],
                port: Some(99),
                ..Default::default()
            },
            "",
            "u",
            99,
            "mqtt-proxy",
        ),
        (
            // The file's specific key beats the file's URL.
            BrokerArgs::default(),
            "broker = \"mqtt://fu:7\"\nport = 8",
            "fu",
            8,
            "mqtt-proxy",
        ),
    ];
    for (i, (args, text, host, port, prefix)) in cases.into_iter().enumerate() {
        let b = args.resolve(&file(text), None, &no_env).unwrap();
        assert_eq!(
            (b.addr.host.as_str(), b.addr.port, b.topic_prefix.as_str()),
            (host, port, prefix),
            "case {i}"
        );
    }
}

#[test]
fn per_call_broker_overrides_everything() {
    let args = BrokerArgs {
        host: Some("c".into()),
        port: Some(5),
        ..Default::default()
    };
    let b = args
        .resolve(&file(""), Some(("n".into(), Some(6))), &no_env)
        .unwrap();
    assert_eq!((b.addr.host.as_str(), b.addr.port), ("n", 6));
    let b = args
        .resolve(&file(""), Some(("n".into(), None)), &no_env)
        .unwrap();
    assert_eq!((b.addr.host.as_str(), b.addr.port), ("n", 5));
}

#[test]
fn user_and_password_sources() {
    let env: HashMap<&str, &str> =
        [("MQTT_USERNAME", "envuser"), ("MQTT_PASSWORD", "envpw")].into();
    let lookup = |k: &str| env.get(k).map(|v| v.to_string());
    let b = BrokerArgs::default()
        .resolve(&file("user = \"fileuser\""), None, &lookup)
        .unwrap();
    assert_eq!(b.user.as_deref(), Some("envuser"));
    assert_eq!(b.password.as_ref().map(Secret::expose), Some("envpw"));
    let b = BrokerArgs {
        user: Some("flag".into()),
        ..Default::default()
    }
    .resolve(&file(""), None, &lookup)
    .unwrap();
    assert_eq!(b.credentials(), Some(("flag", "envpw")));
    let b = BrokerArgs::default()
        .resolve(&file("user = \"fileuser\""), None, &no_env)
        .unwrap();
    assert_eq!(b.credentials(), Some(("fileuser", "")));
}

#[test]
fn file_errors_name_the_key() {
    let cases = [
        (
            "host = \"h\"\nhots = \"x\"",
            "line 2: unknown key 'hots' (known: broker, mqtt-version, max-message-size, http-proxy, \
             host, port, user, password-file, topic-prefix, client-id-prefix, resume-timeout, \
             probe-interval, link-timeout, max-publish-rate, max-bandwidth, tls, ca-file, cert-file, key-file, \
             agent-password-file, identity)",
        ),
        (
            "port = \"x\"",
            "line 1: key 'port': invalid type: string \"x\", expected u16",
        ),
        ("port = 70000", "line 1: key 'port': "),
        (
            "target = \"a:1\"",
            "key 'target' is only valid in the agent's config file",
        ),
        (
            "node-id = \"a\"",
            "key 'node-id' is only valid in the agent's config file",
        ),
    ];
    for (text, want) in cases {
        let err = format!("{:#}", FileConfig::parse(text, Role::Proxy).unwrap_err());
        assert!(err.contains(want), "{text:?}: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
    assert!(FileConfig::parse("target = \"a:1\"", Role::Agent).is_ok());
    let agent_err = format!("{:#}", FileConfig::parse("x = 1", Role::Agent).unwrap_err());
    assert!(
        agent_err.ends_with(
            "agent-password-file, node-id, target, max-sessions, authorized-keys, revoked-keys)"
        ),
        "{agent_err}"
    );
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, "bogus = 1\n").unwrap();
    let err = format!("{:#}", FileConfig::load(Some(&p), Role::Proxy).unwrap_err());
    assert!(
        err.starts_with(&format!("config file {}: ", p.display())),
        "{err}"
    );
    assert!(err.contains("bogus"), "{err}");
    let missing = dir.path().join("missing.toml");
    let err = format!(
        "{:#}",
        FileConfig::load(Some(&missing), Role::Proxy).unwrap_err()
    );
    assert!(err.starts_with("cannot read config file"), "{err}");
}

#[test]
fn invalid_values_are_refused() {
    let cases: Vec<(BrokerArgs, &str)> = vec![
        (
            BrokerArgs {
                topic_prefix: Some("a/+".into()),
                ..Default::default()
            },
            "invalid topic prefix",
        ),
        (
            BrokerArgs {
                broker: vec!["http://x".into()],
                ..Default::default()
            },
            "invalid broker URL",
        ),
        (
            BrokerArgs {
                broker: vec!["mqtt://x:0".into()],
                ..Default::default()
            },
            "invalid broker URL",
        ),
        (
            BrokerArgs {
                resume_timeout: Some(0),
                ..Default::default()
            },
            "--resume-timeout must be at least 1 second",
        ),
    ];
    for (args, want) in cases {
        let err = format!("{:#}", args.resolve(&file(""), None, &no_env).unwrap_err());
        assert!(err.contains(want), "{err}");
    }
}

#[test]
fn tls_settings() {
    let b = BrokerArgs {
        broker: vec!["mqtts://h".into()],
        ..Default::default()
    }
    .resolve(&file(""), None, &no_env)
    .unwrap();
    assert_eq!(b.addr.port, PORT_TLS);
    assert_eq!(b.tls, Some(TlsFiles::default()));
    let b = BrokerArgs {
        tls: Some(true),
        ..Default::default()
    }
    .resolve(&file("ca-file = \"/ca.pem\""), None, &no_env)
    .unwrap();
    assert_eq!(
        (b.addr.port, b.tls.unwrap().ca_file),
        (PORT_TLS, Some("/ca.pem".into()))
    );
    let b = BrokerArgs {
        tls: Some(false),
        ..Default::default()
    }
    .resolve(&file("broker = \"mqtts://h\""), None, &no_env)
    .unwrap();
    assert_eq!((b.addr.port, b.tls), (PORT_PLAIN, None));
    let err = BrokerArgs {
        ca_file: Some("/x".into()),
        ..Default::default()
    }
    .resolve(&file(""), None, &no_env)
    .unwrap_err();
    assert!(err.to_string().contains("need TLS"), "{err}");
}

#[test]
fn broker_urls() {
    let cases = [
        ("mqtt://h", ("h", None, false)),
        ("mqtt://h:1", ("h", Some(1), false)),
        ("mqtts://h:8884/", ("h", Some(8884), true)),
        ("mqtt://[::1]:5", ("::1", Some(5), false)),
    ];
    for (url, (host, port, tls)) in cases {
        let u = BrokerUrl::parse(url).unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), (host, port, tls), "{url}");
    }
}

#[test]
fn websocket_urls() {
    let ws = |p: &str| Carrier::WebSocket { path: p.into() };
    let cases = [
        ("ws://h", ("h", None, false, ws("/mqtt"))),
        ("ws://h:8080/", ("h", Some(8080), false, ws("/"))),
        ("wss://h/a/b", ("h", None, true, ws("/a/b"))),
        ("wss://[::1]:9/x", ("::1", Some(9), true, ws("/x"))),
    ];
    for (url, (host, port, tls, carrier)) in cases {
        let u = BrokerUrl::parse(url).unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.tls, u.carrier),
            (host, port, tls, carrier),
            "{url}"
        );
    }
    let err = BrokerUrl::parse("mqtt://h/x").unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid broker URL \"mqtt://h/x\": only ws:// and wss:// URLs have a path"
    );
    // Default ports, and what the rest of the program sees.
    let resolve = |args: BrokerArgs| args.resolve(&file(""), None, &no_env);
    let b = resolve(BrokerArgs {
        broker: vec!["ws://h".into()],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        (b.addr.port, b.tls.is_none(), b.carrier),
        (80, true, ws("/mqtt"))
    );
    let b = resolve(BrokerArgs {
        broker: vec!["wss://h/p".into()],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        (b.addr.port, b.tls.is_some(), b.carrier),
        (443, true, ws("/p"))
    );
}

#[test]
fn ws_with_tls_options_is_a_contradiction() {
    let resolve = |args: BrokerArgs| {
        args.resolve(&file(""), None, &no_env)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let ws_msg = "a ws:// broker URL has no TLS, but TLS options are set (--tls, --ca-file, \
                  --cert-file, --key-file): use wss:// or drop them";
    for args in [
        BrokerArgs {
            tls: Some(true),
            ..Default::default()
        },
        BrokerArgs {
            ca_file: Some("ca.pem".into()),
            ..Default::default()
        },
    ] {
        let args = BrokerArgs {
            broker: vec!["ws://h".into()],
            ..args
        };
        assert_eq!(resolve(args), Err(ws_msg.to_owned()));
    }
    let args = BrokerArgs {
        broker: vec!["wss://h".into()],
        tls: Some(false),
        ..Default::default()
    };
    assert_eq!(
        resolve(args),
        Err("a wss:// broker URL needs TLS, but TLS is turned off (--tls=false)".to_owned())
    );
}

#[test]
fn max_message_size_sources_and_floor() {
    let size = |args: BrokerArgs, text: &str| {
        args.resolve(&file(text), None, &no_env)
            .map(|b| b.max_message_size)
            .map_err(|e| format!("{e:#}"))
    };
    assert_eq!(size(BrokerArgs::default(), ""), Ok(None));
    assert_eq!(
        size(BrokerArgs::default(), "max-message-size = 16000"),
        Ok(Some(16000))
    );
    let flag = BrokerArgs {
        max_message_size: Some(9000),
        ..Default::default()
    };
    assert_eq!(size(flag, "max-message-size = 16000"), Ok(Some(9000)));
    let tiny = BrokerArgs {
        max_message_size: Some(100),
        ..Default::default()
    };
    assert_eq!(
        size(tiny, ""),
        Err("max message size 100 is too small: the least that works is 768 bytes".to_owned())
    );
}

#[test]
fn mqtt_version_sources() {
    assert_eq!(MqttVersion::parse("5").unwrap(), MqttVersion::V5);
    assert_eq!(MqttVersion::parse("3.1.1").unwrap(), MqttVersion::V311);
    assert_eq!(
        MqttVersion::parse("4").unwrap_err().to_string(),
        "invalid MQTT version \"4\": use 5 or 3.1.1"
    );
    let version = |args: BrokerArgs, text: &str| {
        args.resolve(&file(text), None, &no_env)
            .unwrap()
            .mqtt_version
    };
    assert_eq!(version(BrokerArgs::default(), ""), MqttVersion::Auto);
    assert_eq!(
        version(BrokerArgs::default(), "mqtt-version = 5"),
        MqttVersion::V5
    );
    assert_eq!(
        version(BrokerArgs::default(), "mqtt-version = \"3.1.1\""),
        MqttVersion::V311
    );
    let flag = BrokerArgs {
        mqtt_version: Some(MqttVersion::V5),
        ..Default::default()
    };
    assert_eq!(version(flag, "mqtt-version = \"3.1.1\""), MqttVersion::V5);
    let err = format!(
        "{:#}",
        FileConfig::parse("mqtt-version = \"3\"", Role::Proxy).unwrap_err()
    );
    assert!(
        err.contains("line 1: key 'mqtt-version': invalid MQTT version \"3\""),
        "{err}"
    );
}

#[test]
fn http_proxy_credentials_never_come_from_a_flag() {
    let p = HttpProxy::parse("http://proxy.corp:3128").unwrap();
    assert_eq!(
        (p.to_string(), p.credentials.is_none()),
        ("proxy.corp:3128".into(), true)
    );
    let p = HttpProxy::parse("http://al%40ice:p%3Ass@10.0.0.1:8080/").unwrap();
    let (user, password) = p.credentials.clone().unwrap();
    assert_eq!((user.as_str(), password.expose()), ("al@ice", "p:ss"));
    assert_eq!(
        HttpProxy::parse("http://u:secret@h")
            .unwrap_err()
            .to_string(),
        "invalid HTTP proxy URL http://***@h: expected http://HOST:PORT"
    );
    let env = |name: &str| (name == "MQTT_HTTP_PROXY").then(|| "http://u:pw@e:1".to_owned());
    let resolve = |args: BrokerArgs, text: &str, env: &dyn Fn(&str) -> Option<String>| {
        args.resolve(&file(text), None, env)
            .map(|b| {
                b.http_proxy
                    .map(|p| (p.to_string(), p.credentials.map(|c| c.0)))
            })
            .map_err(|e| format!("{e:#}"))
    };
    let flag = |url: &str| BrokerArgs {
        http_proxy: Some(url.into()),
        ..Default::default()
    };
    // Flag > environment > file.
    assert_eq!(
        resolve(flag("http://f:2"), "http-proxy = \"http://c:3\"", &env),
        Ok(Some(("f:2".into(), None)))
    );
    assert_eq!(
        resolve(BrokerArgs::default(), "http-proxy = \"http://c:3\"", &env),
        Ok(Some(("e:1".into(), Some("u".into()))))
    );
    assert_eq!(
        resolve(
            BrokerArgs::default(),
            "http-proxy = \"http://cu:cp@c:3\"",
            &no_env
        ),
        Ok(Some(("c:3".into(), Some("cu".into()))))
    );
    let err = resolve(flag("http://u:pw@f:2"), "", &no_env).unwrap_err();
    assert!(!err.contains("pw"), "{err}");
    assert_eq!(
        err,
        "--http-proxy: proxy credentials are not accepted on the command line (others can read \
         it); put the URL in MQTT_HTTP_PROXY or the config file's http-proxy"
    );
}

#[test]
fn secret_debug_is_masked() {
    let b = Broker {
        addr: BrokerAddr {
            host: "h".into(),
            port: 1,
            tls_trust: None,
            login: true,
        },
        failover: Vec::new(),
        tls: None,
        carrier: Carrier::Tcp,
        http_proxy: Some(HttpProxy::parse("http://pu:pw%21secret@proxy:3128").unwrap()),
        mqtt_version: MqttVersion::Auto,
        max_message_size: None,
        user: Some("u".into()),
        password: Some(Secret::new("hunter2".into())),
        topic_prefix: "p".into(),
        client_id_prefix: "c".into(),
        resume_timeout: std::time::Duration::from_secs(1),
        probe_interval: std::time::Duration::from_secs(1),
        link_timeout: std::time::Duration::from_secs(1),
        max_publish_rate: None,
        max_bandwidth: None,
    };
    let dbg = format!("{b:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(
        !dbg.contains("pw!secret") && !dbg.contains("pw%21"),
        "{dbg}"
    );
    assert!(dbg.contains("***"));
}

#[test]
fn password_file_rules() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pw");
    std::fs::write(&p, "s3cret\nignored\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(read_password_file(&p).unwrap().expose(), "s3cret");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = read_password_file(&p).unwrap_err().to_string();
    assert!(err.contains("readable by others"), "{err}");
    let missing = dir.path().join("nope");
    let err = format!("{:#}", read_password_file(&missing).unwrap_err());
    assert!(err.starts_with("cannot read password file"), "{err}");
}

#[test]
fn key_lists_match_the_config_struct() {
    // serde names every field of FileConfig in its unknown-field error; the
    // lists behind our own message must be exactly those.
    let err = toml::from_str::<FileConfig>("x = 1").unwrap_err();
    let msg = err.message();
    let expected = msg
        .split_once("expected one of ")
        .unwrap_or_else(|| panic!("serde's message changed: {msg}"))
        .1;
    let fields: Vec<&str> = expected
        .split(", ")
        .map(|k| k.trim().trim_matches('`'))
        .collect();
    assert_eq!(fields, [SHARED_KEYS, AGENT_KEYS, PROXY_KEYS].concat());
}

#[test]
fn rate_caps_sources_and_errors() {
    assert_eq!(parse_bandwidth("524288"), Ok(524_288));
    assert_eq!(parse_bandwidth("512K"), Ok(524_288));
    assert_eq!(parse_bandwidth("512k"), Ok(524_288));
    assert_eq!(parse_bandwidth("1M"), Ok(1 << 20));
    let bad = "use BYTES, or with K (KiB) or M (MiB), e.g. 512K";
    for s in ["", "K", "1.5M", "-1", "12 K", "1G", "lots"] {
        assert_eq!(
            parse_bandwidth(s),
            Err(format!("invalid bandwidth {s:?}: {bad}")),
            "{s:?}"
        );
    }
    assert_eq!(
        parse_bandwidth("99999999999999999999M"),
        Err("bandwidth \"99999999999999999999M\" is too large".to_owned())
    );
    assert_eq!(
        parse_bandwidth("17592186044416M"),
        Err("bandwidth \"17592186044416M\" is too large".to_owned())
    );
    let low = "bandwidth 0 B/s is below the minimum of 65536 (64K): one largest frame must go \
               within a second";
    assert_eq!(parse_bandwidth("0"), Err(low.to_owned()));
    assert_eq!(parse_bandwidth("0K"), Err(low.to_owned()));

    let caps = |args: BrokerArgs, text: &str| {
        args.resolve(&file(text), None, &no_env)
            .map(|b| (b.max_publish_rate, b.max_bandwidth))
            .map_err(|e| format!("{e:#}"))
    };
    assert_eq!(caps(BrokerArgs::default(), ""), Ok((None, None)));
    assert_eq!(
        caps(
            BrokerArgs::default(),
            "max-publish-rate = 100\nmax-bandwidth = \"512K\""
        ),
        Ok((Some(100), Some(524_288)))
    );
    assert_eq!(
        caps(BrokerArgs::default(), "max-bandwidth = 1048576"),
        Ok((None, Some(1 << 20)))
    );
    // The flag wins over the file.
    let flags = BrokerArgs {
        max_publish_rate: Some(10),
        max_bandwidth: Some(1 << 20),
        ..Default::default()
    };
    assert_eq!(
        caps(flags, "max-publish-rate = 100\nmax-bandwidth = \"512K\""),
        Ok((Some(10), Some(1 << 20)))
    );
    assert_eq!(
        caps(BrokerArgs::default(), "max-publish-rate = 0"),
        Err("key 'max-publish-rate': must be at least 1".to_owned())
    );
    assert_eq!(
        caps(BrokerArgs::default(), "max-bandwidth = \"fast\""),
        Err(format!(
            "key 'max-bandwidth': invalid bandwidth \"fast\": {bad}"
        ))
    );
    assert_eq!(
        caps(BrokerArgs::default(), "max-bandwidth = 0"),
        Err(format!("key 'max-bandwidth': {low}"))
    );
}
