//! A hostile client on the same broker, without ACLs: it subscribes to
//! everything, replays what it captured into live sessions, and forges
//! RESET, DATA at the right sequence number, FIN, ACK and ACCEPT into them,
//! both ways, and a presence message saying the agent restarted. The sessions go on intact, and both ends count what they
//! dropped. Also what a peer of protocol version 1 is told. Real
//! mosquitto, sshd and ssh.

use std::collections::BTreeMap;
use std::fs::File;
use std::time::Duration;

use crate::common::*;
use mqtt_proxy::protocol::{HEADER_LEN, VERSION};

const DATA: u8 = 16;
const ACK: u8 = 17;
const RESET: u8 = 18;
const ACCEPT: u8 = 2;
const OPEN: u8 = 1;
const REFUSE: u8 = 3;
const FIN: u8 = 0x01;
const PEER_LOST: u8 = 0x04;
/// A sealed frame's tag, as a forger who lacks the key must guess it.
const TAG: [u8; 16] = [0x5a; 16];
/// Lines the remote side prints, one every 20 ms: the session lives about
/// three seconds, long enough to be captured and attacked.
const LINES: usize = 150;

fn counter(f: &[u8]) -> u64 {
    u64::from_be_bytes(f[40..48].try_into().expect("8 bytes"))
}

/// A forgery built on `template` (a real frame of the session): its header
/// with `kind`, `flags` and a counter the session has not used yet, then
/// `body`.
fn forge(template: &[u8], kind: u8, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut f = template[..HEADER_LEN].to_vec();
    f[1] = kind;
    f[2] = flags;
    f[40..48].copy_from_slice(&(counter(template) + 50).to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// `name=N` from a log line (the field's last occurrence).
fn field(line: &str, name: &str) -> u64 {
    line.rsplit(&format!("{name}="))
        .next()
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
}

#[test]
fn forged_and_replayed_frames_are_dropped_and_the_session_goes_on() {
    let broker = Broker::start("");
    let sshd = Sshd::start();
    let n = names("hostile");
    let mut agent = Agent::start(&broker, sshd.port(), &n.node, &n.prefix);
    agent.wait_online();
    let spy = Raw::connect(broker.port(), "hostile-spy", None);
    spy.subscribe(&["#"]);

    // Bytes both ways: 256 KiB up (hashed by the remote side at the end),
    // lines down.
    let dir = tempfile::tempdir().expect("temp dir");
    let up = dir.path().join("up.bin");
    write_random_file(&up, 256 << 10);
    let ssh = Ssh::via_proxy(&broker, &n.prefix, &n.node, &sshd);
    let mut cmd = ssh.ssh(&format!(
        "for i in $(seq 1 {LINES}); do echo line $i; sleep 0.02; done; sha256sum"
    ));
    cmd.stdin(File::open(&up).expect("open the upload"))
        .env("RUST_LOG", "info");
    let session = Background::start(&mut cmd);

    // Capture for a second, then attack with everything at once.
    let captured = spy.collect(Duration::from_millis(1200));
    let mut last: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (topic, f) in &captured {
        let data = f.len() >= HEADER_LEN && f[0] == VERSION && f[1] == DATA;
        if topic.contains("/s/") && data {
            last.insert(topic.clone(), f.clone());
        }
    }
    let up_topic = last.keys().find(|t| t.ends_with("/up")).cloned();
    let down_topic = last.keys().find(|t| t.ends_with("/down")).cloned();
    let (Some(up_topic), Some(down_topic)) = (up_topic, down_topic) else {
        panic!(
            "no DATA captured both ways among {} messages",
            captured.len()
        );
    };
    let attacker = Raw::connect(broker.port(), "hostile-attacker", None);
    let mut replays = 0;
    for (topic, f) in &captured {
        if topic.contains("/s/") {
            attacker.publish(topic, f.clone());
            replays += 1;
        }
    }
    let mut sealed_forgeries = 0u64;
    for topic in [&up_topic, &down_topic] {
        let t = &last[topic];
        let mut ack = forge(t, ACK, 0, &TAG);
        // Acknowledge more than was sent: it would stall or end the peer.
        ack[20..28].copy_from_slice(
            &(u64::from_be_bytes(t[12..20].try_into().unwrap()) + 5).to_be_bytes(),
        );
        let mut garbage = b"SSH garbage at the right sequence number".to_vec();
        garbage.extend_from_slice(&TAG);
        let sealed = [
            forge(t, RESET, 0, &TAG),
            forge(t, DATA, 0, &garbage),
            forge(t, DATA, FIN, &TAG),
            ack,
        ];
        for f in sealed {
            attacker.publish(topic, f);
            sealed_forgeries += 1;
        }
        // Frames without a tag: an ACCEPT with a share of the attacker's,
        // and a last will.
        attacker.publish(topic, forge(t, ACCEPT, 0, &[7; 64]));
        attacker.publish(topic, forge(t, RESET, PEER_LOST, &[]));
    }
    // A presence message saying the agent restarted (a new instance): the
    // client does not take it for the end of its session while the agent
    // still answers.
    attacker.publish(
        &format!("{}/{}/presence", n.prefix, n.node),
        br#"{"status":"online","version":"0.1.0","since":1,"instance":"forged","sessions":0,"protocol":2}"#.to_vec(),
    );
    assert!(
        attacker.wait_acked(replays + sealed_forgeries + 5, Duration::from_secs(10)),
        "the broker took every forgery"
    );

    let out = session.finish(Duration::from_secs(60));
    assert_success(&out, "ssh under attack");
    let mut want: String = (1..=LINES).map(|i| format!("line {i}\n")).collect();
    want.push_str(&format!("{}  -\n", sha256(&up)));
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);

    // Both ends counted the forgeries aimed at them (4 sealed ones each)
    // and the replays.
    agent.wait_log("session closed", 1, Duration::from_secs(10));
    let log = agent.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("session closed"))
        .expect("the agent's closing line");
    eprintln!("agent: {line}");
    assert!(field(line, "forged") >= 4, "{line}");
    assert!(field(line, "replayed") >= 1, "{line}");
    let stderr = stderr_text(&out);
    let line = stderr
        .lines()
        .find(|l| l.contains("session closed"))
        .unwrap_or_else(|| panic!("no closing line from mqtt-proxy:\n{stderr}"));
    eprintln!("mqtt-proxy: {line}");
    assert!(field(line, "forged") >= 4, "{line}");
    assert!(field(line, "replayed") >= 1, "{line}");
    assert!(
        stderr.contains("dropped a frame that fails authentication"),
        "{stderr}"
    );
    // The forged presence did not stop the agent either: it warned.
    assert_eq!(agent.exit_status(), None, "the agent exited:\n{log}");
    assert!(
        log.contains("without proof of the agent password"),
        "no warning about the forged presence:\n{log}"
    );
}

/// A version-1 client's OPEN, as the last release sent it: a 40-byte
/// header, no key share.
fn v1_open(sid: u64) -> Vec<u8> {
    let mut f = vec![0u8; 40];
    f[0] = 1;
    f[1] = OPEN;
    f[4..12].copy_from_slice(&sid.to_be_bytes());
    f[36..40].copy_from_slice(&(1u32 << 20).to_be_bytes());
    f
}

#[test]
fn peers_of_protocol_version_1_are_told_at_once_naming_both_versions() {
    let broker = Broker::start("");
    let sshd = Sshd::start();
    let n = names("v1_peers");
    let mut agent = Agent::start(&broker, sshd.port(), &n.node, &n.prefix);
    agent.wait_online();

    // An old client: its OPEN gets a version-1 REFUSE it can read.
    let old = Raw::connect(broker.port(), "old-client", None);
    let down = format!("{}/{}/s/old-client/down", n.prefix, n.node);
    old.subscribe(&[&down]);
    old.publish(
        &format!("{}/{}/s/old-client/up", n.prefix, n.node),
        v1_open(77),
    );
    let answers = old.collect(Duration::from_secs(2));
    let refuse = answers
        .iter()
        .map(|(_, f)| f)
        .find(|f| f.len() > 41 && f[0] == 1 && f[1] == REFUSE)
        .unwrap_or_else(|| panic!("no version-1 REFUSE among {answers:?}"));
    assert_eq!(u64::from_be_bytes(refuse[4..12].try_into().unwrap()), 77);
    assert_eq!(
        String::from_utf8_lossy(&refuse[41..]),
        "the agent speaks protocol 2 and this mqtt-proxy protocol 1: upgrade mqtt-proxy"
    );

    // An old agent: its presence does not name a protocol. A new client
    // fails at once, before it opens.
    let old_node = format!("{}-old", n.node);
    let presence = r#"{"status":"online","version":"0.1.0","since":1,"instance":"x","sessions":0}"#;
    let mut publish = broker.mosquitto_pub();
    publish.args([
        "-t",
        &format!("{}/{old_node}/presence", n.prefix),
        "-r",
        "-m",
        presence,
    ]);
    assert_success(&run(&mut publish), "retained presence of an old agent");
    let mut cmd = proxy_command(&broker, &n.prefix, &old_node);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(10));
    assert_exit_code(&out, 255, "mqtt-proxy against an old agent");
    assert_eq!(
        stderr_text(&out).trim_end(),
        format!(
            "mqtt-proxy: node '{old_node}' runs an agent of protocol 1 and this mqtt-proxy speaks protocol 2: upgrade the agent"
        )
    );
    // Clean up the retained message.
    let mut clear = broker.mosquitto_pub();
    clear.args([
        "-t",
        &format!("{}/{old_node}/presence", n.prefix),
        "-r",
        "-n",
    ]);
    assert_success(&run(&mut clear), "clear the retained presence");
}
