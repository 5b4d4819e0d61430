//! MQTT 5 by default, 3.1.1 when the broker refuses 5 (amqtt, a real
//! 3.1.1-only broker) or when told to (`--mqtt-version 3.1.1`), and the
//! MQTT 5 limits: the broker's Maximum Packet Size caps our chunks, ours
//! keeps oversized messages away from us, and the broker's reason codes
//! reach the user.

use std::fs;
use std::time::Duration;

use crate::common::*;

/// mosquitto's log lines for our clients' connections whose client id
/// starts with `id_prefix`: "New client connected from … as ID (p5, c1, k15)."
fn connections(broker: &Broker, id_prefix: &str) -> Vec<String> {
    broker
        .log_text()
        .lines()
        .filter(|l| l.contains("New client connected") && l.contains(&format!(" as {id_prefix}")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn both_binaries_speak_mqtt_5_to_mosquitto_and_3_1_1_when_told() {
    let broker = Broker::start("");
    let sshd = Sshd::start();
    // (extra arguments for both binaries, mosquitto's protocol tag)
    for (args, tag) in [
        (&[][..], "(p5, "),
        (&["--mqtt-version", "3.1.1"][..], "(p2, "),
    ] {
        let n = names("version");
        let target = sshd.target();
        let agent = Agent::start_with(&broker, &target, &n.node, &n.prefix, args, &[QUICKACK_LOG]);
        let ssh = Ssh::via_proxy_at(broker.port(), &n.prefix, &n.node, &sshd, args);
        let out = run(&mut ssh.ssh("echo hi"));
        assert_success(&out, "ssh through the tunnel");
        assert_eq!(out.stdout, b"hi\n");
        agent.assert_quick_acks(tag);
        let agent = connections(&broker, &format!("mqtt-proxy-agent-{}-", n.node));
        assert_eq!(agent.len(), 1, "{agent:?}");
        assert!(agent[0].contains(tag), "agent: {agent:?}");
        // The proxy's client id is the prefix and 16 hex digits: the line
        // logged last that is not an agent's.
        let all = connections(&broker, "mqtt-proxy-");
        let proxy = all
            .iter()
            .rfind(|l| !l.contains("mqtt-proxy-agent-"))
            .expect("the proxy connected");
        assert!(proxy.contains(tag), "proxy: {proxy}");
    }
}

#[test]
fn a_3_1_1_only_broker_carries_the_whole_tunnel_after_one_fallback() {
    let amqtt = Amqtt::start();
    let sshd = Sshd::start();
    let n = names("amqtt");
    let mut agent = Agent::spawn_at(
        amqtt.port(),
        &sshd.target(),
        &n.node,
        &n.prefix,
        &[],
        &[("RUST_LOG", "info,mqtt_proxy::mqtt=debug")],
    );
    agent.wait_online();
    let fallback = "the broker refused MQTT 5; falling back to MQTT 3.1.1";
    assert_eq!(
        agent.log_text().matches(fallback).count(),
        1,
        "--- agent log ---\n{}\n--- amqtt log ---\n{}",
        agent.log_text(),
        amqtt.log_text()
    );
    let ssh = Ssh::via_proxy_at(amqtt.port(), &n.prefix, &n.node, &sshd, &[]);
    let out = run(&mut ssh.ssh("echo hi"));
    if !out.status.success() {
        eprintln!(
            "--- agent log ---\n{}\n--- amqtt log ---\n{}",
            agent.log_text(),
            amqtt.log_text()
        );
    }
    assert_success(&out, "ssh through amqtt");
    assert_eq!(out.stdout, b"hi\n");

    let dir = scratch_dir("mqtt5");
    let local = dir.path().join("up.bin");
    let remote = dir.path().join("up.remote");
    let back = dir.path().join("up.back");
    write_random_file(&local, 4 << 20);
    let out = run(&mut ssh.scp_upload(&local, &remote));
    assert_success(&out, "scp upload through amqtt");
    assert_eq!(sha256(&remote), sha256(&local));
    let out = run(&mut ssh.scp_download(&remote, &back));
    assert_success(&out, "scp download through amqtt");
    assert_eq!(sha256(&back), sha256(&local));

    let out = run(&mut proxy_on(amqtt.port(), &n.prefix, &["--list"]));
    assert_success(&out, "--list through amqtt");
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{table}");
    let cols: Vec<&str> = rows[0].split_whitespace().collect();
    assert_eq!(&cols[..2], [n.node.as_str(), "online"], "{table}");
    assert!(agent.exit_status().is_none(), "the agent exited");
}

#[test]
fn forcing_mqtt_5_on_a_3_1_1_only_broker_is_a_one_line_error() {
    let amqtt = Amqtt::start();
    let n = names("amqtt-forced");
    let out = run_with_timeout(
        &mut proxy_on(amqtt.port(), &n.prefix, &["--mqtt-version", "5", &n.node]),
        FAILURE_REPORT_BOUND,
    );
    assert_exit_code(&out, PROXY_FAILURE_STATUS, "mqtt-proxy --mqtt-version 5");
    // amqtt 0.11 never answers an MQTT 5 CONNECT.
    assert_eq!(
        stderr_text(&out),
        format!(
            "mqtt-proxy: could not reach broker 127.0.0.1:{}: timed out",
            amqtt.port()
        )
    );
}

/// The broker's Maximum Packet Size (here 20,000 bytes) caps our chunks:
/// without that, the first 64 KiB chunk would make mosquitto drop the
/// connection, again on every retransmission, and the copy would never
/// finish.
#[test]
fn chunks_follow_the_brokers_maximum_packet_size() {
    let broker = Broker::start("max_packet_size 20000");
    let sshd = Sshd::start();
    let n = names("max-packet");
    let mut agent = Agent::start(&broker, sshd.port(), &n.node, &n.prefix);
    let ssh = Ssh::via_proxy(&broker, &n.prefix, &n.node, &sshd);
    let dir = scratch_dir("mqtt5");
    let local = dir.path().join("big.bin");
    let remote = dir.path().join("big.remote");
    let back = dir.path().join("big.back");
    write_random_file(&local, 8 << 20);
    let out = run(&mut ssh.scp_upload(&local, &remote));
    assert_success(&out, "scp upload under a 20,000-byte packet limit");
    assert_eq!(sha256(&remote), sha256(&local));
    let out = run(&mut ssh.scp_download(&remote, &back));
    assert_success(&out, "scp download under a 20,000-byte packet limit");
    assert_eq!(sha256(&back), sha256(&local));
    agent.wait_log(AGENT_ONLINE_TEXT, 1, Duration::from_secs(1));
    assert_eq!(
        agent.log_text().matches(AGENT_ONLINE_TEXT).count(),
        1,
        "the agent lost its broker connection:\n{}",
        agent.log_text()
    );
    assert!(
        !broker.log_text().contains("exceeded"),
        "mosquitto saw an oversized packet:\n{}",
        tail(&broker.log_text(), 40)
    );
}

/// A stand-in MQTT 5 broker on a free loopback port that reads one CONNECT
/// per connection and answers with `reply` (then closes), for reason codes
/// mosquitto has no setting to produce.
struct FakeBroker {
    port: u16,
}

impl FakeBroker {
    fn start(reply: &'static [u8]) -> FakeBroker {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = listener.local_addr().expect("local address").port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                // Fixed header, remaining length, then the rest of CONNECT.
                let mut byte = [0u8; 1];
                let (mut len, mut shift) = (0usize, 0);
                if conn.read_exact(&mut byte).is_err() {
                    continue;
                }
                loop {
                    if conn.read_exact(&mut byte).is_err() {
                        break;
                    }
                    len |= usize::from(byte[0] & 0x7f) << shift;
                    shift += 7;
                    if byte[0] & 0x80 == 0 {
                        break;
                    }
                }
                let mut rest = vec![0u8; len];
                // Errors: the client went away; serve the next one.
                if conn.read_exact(&mut rest).is_ok() {
                    let _ = conn.write_all(reply);
                    let _ = conn.flush();
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        FakeBroker { port }
    }
}

/// A refusal and a DISCONNECT from an MQTT 5 broker name their reason code
/// (and the broker's reason string) in the one-line error.
#[test]
fn refusals_and_disconnects_name_the_brokers_reason() {
    // CONNACK: no session, reason code 0x97 (quota exceeded), no properties.
    let refusing = FakeBroker::start(&[0x20, 0x03, 0x00, 0x97, 0x00]);
    // CONNACK success, then DISCONNECT 0x97 with reason string "over limit"
    // (property 0x1F).
    let disconnecting = FakeBroker::start(&[
        0x20, 0x03, 0x00, 0x00, 0x00, // CONNACK
        0xE0, 0x0F, 0x97, 0x0D, 0x1F, 0x00, 0x0A, b'o', b'v', b'e', b'r', b' ', b'l', b'i', b'm',
        b'i', b't',
    ]);
    for (port, line) in [
        (
            refusing.port,
            "mqtt-proxy: broker refused the connection: quota exceeded",
        ),
        (
            disconnecting.port,
            "mqtt-proxy: broker disconnected: quota exceeded (over limit)",
        ),
    ] {
        let out = run_with_timeout(&mut proxy_on(port, "p", &["n1"]), FAILURE_REPORT_BOUND);
        assert_exit_code(&out, PROXY_FAILURE_STATUS, line);
        assert_eq!(stderr_text(&out), line);
    }
}

/// Against a 3.1.1-only broker only the first call pays the MQTT 5 probe:
/// the version that worked is remembered in the user's cache directory, and
/// a corrupt cache is no cache.
#[test]
fn the_version_a_broker_speaks_is_remembered_per_broker() {
    let amqtt = Amqtt::start();
    let n = names("amqtt-remembered");
    let cache = scratch_dir("mqtt5");
    let no_node = format!(
        "mqtt-proxy: no node '{}' on broker 127.0.0.1:{} (never announced; mqtt-proxy --list \
         shows the nodes)",
        n.node,
        amqtt.port()
    );
    let fallback = "the broker refused MQTT 5; falling back to MQTT 3.1.1";
    let call = |what: &str| {
        let mut cmd = proxy_on(amqtt.port(), &n.prefix, &[&n.node]);
        cmd.env("XDG_CACHE_HOME", cache.path())
            .env("RUST_LOG", "mqtt_proxy::mqtt=debug");
        let out = run_with_timeout(&mut cmd, FAILURE_REPORT_BOUND * 2);
        assert_exit_code(&out, PROXY_FAILURE_STATUS, what);
        let text = stderr_text(&out);
        assert_eq!(
            text.lines().last(),
            Some(no_node.as_str()),
            "{what}: {text}"
        );
        text
    };
    assert!(
        call("first call").contains(fallback),
        "the first call probes"
    );
    let second = call("second call");
    assert!(!second.contains(fallback), "the second does not: {second}");
    assert!(second.contains("version=V311"), "{second}");
    let file = cache.path().join("mqtt-proxy/broker-versions");
    assert_eq!(
        fs::read_to_string(&file).expect("the cache file"),
        format!("mqtt://127.0.0.1:{} 3.1.1\n", amqtt.port())
    );
    fs::write(&file, "\u{0}\u{1}not a cache\n").expect("spoil the cache");
    assert!(call("corrupt cache").contains(fallback), "probes again");
}
