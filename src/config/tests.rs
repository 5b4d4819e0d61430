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
                broker: Some("mqtt://u:1234".into()),
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
                broker: Some("mqtt://u:1234".into()),
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
            "line 2: unknown key 'hots' (known: broker, host, port, user, password-file, \
             topic-prefix, client-id-prefix, resume-timeout, tls, ca-file, cert-file, key-file, \
             agent-password-file)",
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
        agent_err.ends_with("agent-password-file, node-id, target, max-sessions)"),
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
                broker: Some("http://x".into()),
                ..Default::default()
            },
            "invalid broker URL",
        ),
        (
            BrokerArgs {
                broker: Some("mqtt://x:0".into()),
                ..Default::default()
            },
            "invalid broker URL",
        ),
        (
            BrokerArgs {
                resume_timeout: Some(0),
                ..Default::default()
            },
            "resume timeout",
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
        broker: Some("mqtts://h".into()),
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
fn secret_debug_is_masked() {
    let b = Broker {
        addr: BrokerAddr {
            host: "h".into(),
            port: 1,
            tls_trust: None,
            login: true,
        },
        tls: None,
        user: Some("u".into()),
        password: Some(Secret::new("hunter2".into())),
        topic_prefix: "p".into(),
        client_id_prefix: "c".into(),
        resume_timeout: std::time::Duration::from_secs(1),
    };
    let dbg = format!("{b:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
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
    assert_eq!(fields, [SHARED_KEYS, AGENT_KEYS].concat());
}
