//! Brokers that limit the size of a message: unconfigured, the tunnel
//! discovers the limit, whether the broker drops the connection over a
//! larger packet (mosquitto's `max_packet_size` with MQTT 3.1.1, which
//! cannot announce it) or drops the message silently (`message_size_limit`,
//! either version); `--max-message-size` sets it by hand. Each broker
//! setting gets one broker, sshd and agent for all its copies.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

/// How long one 8 MiB copy may take before the test fails instead of
/// hanging (without discovery it never finishes). Not a speed assertion:
/// 2 × the 60 s the copy should take at most, for a loaded machine.
const COPY_TIMEOUT: Duration = Duration::from_secs(120);

/// mosquitto's log line when it drops a connection over a large packet.
const OVERSIZE_TEXT: &str = "disconnected due to oversize packet";
/// mosquitto's log line (debug) when it drops a large message silently.
const DROPPED_TEXT: &str = "Dropped too large PUBLISH";

/// The discovered-size line each session's sender logs at info.
const SILENT_DROP_TEXT: &str = "the broker drops messages of";
/// The line a connection logs at info when disconnects lowered its packet
/// size to the largest step below mosquitto's 16384.
const DISCONNECT_FOUND_TEXT: &str = "; sending packets of at most 16128 bytes";

/// scp a random file of `len` bytes up and back down through `ssh`, and
/// check both copies byte for byte; prints how long each took.
fn copy_both_ways(ssh: &Ssh, dir: &Path, name: &str, len: u64, logs: &dyn Fn() -> String) {
    let local = dir.join(format!("{name}.bin"));
    let remote = dir.join(format!("{name}.remote"));
    let back = dir.join(format!("{name}.back"));
    write_random_file(&local, len);
    for (what, cmd, copy) in [
        ("upload", ssh.scp_upload(&local, &remote), &remote),
        ("download", ssh.scp_download(&remote, &back), &back),
    ] {
        let mut cmd = cmd;
        let t0 = Instant::now();
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_with_timeout(&mut cmd, COPY_TIMEOUT)
        }))
        .unwrap_or_else(|hang| {
            eprintln!("{name}: scp {what} did not finish\n{}", logs());
            std::panic::resume_unwind(hang)
        });
        eprintln!("{name}: {len}-byte scp {what} took {:?}", t0.elapsed());
        if !out.status.success() {
            eprintln!("{}", logs());
        }
        assert_success(&out, &format!("{name}: scp {what}"));
        assert_eq!(sha256(copy), sha256(&local), "{name}: {what} differs");
    }
}

/// mosquitto with `max_packet_size 16384` and MQTT 3.1.1: a larger packet
/// makes it close the connection, and 3.1.1 has no way to announce the
/// limit. Unconfigured, the agent and the proxy lower their packet size
/// after the drops; with `--max-message-size 16384` no packet is too large
/// and the connections stay up.
#[test]
fn a_3_1_1_broker_that_disconnects_over_large_packets() {
    let broker = Broker::start("max_packet_size 16384");
    let sshd = Sshd::start();
    let dir = scratch_dir("message-size");
    let v311 = ["--mqtt-version", "3.1.1"];

    let n = names("size-drop");
    let agent = Agent::start_with(&broker, &sshd.target(), &n.node, &n.prefix, &v311, &[]);
    let ssh = Ssh::via_proxy_at(broker.port(), &n.prefix, &n.node, &sshd, &v311);
    let logs = || {
        format!(
            "--- agent log ---\n{}\n--- mosquitto log (tail) ---\n{}",
            agent.log_text(),
            tail(&broker.log_text(), 40)
        )
    };
    copy_both_ways(&ssh, dir.path(), "discovered", 8 << 20, &logs);
    let drops_before = broker.log_text().matches(OVERSIZE_TEXT).count();
    assert!(drops_before > 0, "the limit was never hit:\n{}", logs());
    // The download's sender is the agent: it says what it found, at info.
    assert!(
        agent.log_text().contains(DISCONNECT_FOUND_TEXT),
        "no discovery line in the agent's log:\n{}",
        logs()
    );
    drop(agent);

    let n = names("size-flag");
    let by_hand = ["--mqtt-version", "3.1.1", "--max-message-size", "16384"];
    let mut agent = Agent::start_with(&broker, &sshd.target(), &n.node, &n.prefix, &by_hand, &[]);
    let ssh = Ssh::via_proxy_at(broker.port(), &n.prefix, &n.node, &sshd, &by_hand);
    let logs = || format!("--- agent log ---\n{}", agent.log_text());
    copy_both_ways(&ssh, dir.path(), "by-hand", 1 << 20, &logs);
    agent.wait_log(AGENT_ONLINE_TEXT, 1, Duration::from_secs(1));
    assert_eq!(
        agent.log_text().matches(AGENT_ONLINE_TEXT).count(),
        1,
        "the agent lost its broker connection:\n{}",
        agent.log_text()
    );
    assert_eq!(
        broker.log_text().matches(OVERSIZE_TEXT).count(),
        drops_before,
        "mosquitto dropped a connection with --max-message-size:\n{}",
        tail(&broker.log_text(), 40)
    );
}

/// mosquitto with `message_size_limit 16000`: a larger message is dropped
/// without a word (DATA goes at QoS 0), whatever the MQTT version. The
/// senders discover a size that passes and say so once.
#[test]
fn a_broker_that_silently_drops_large_messages() {
    let broker = Broker::start("message_size_limit 16000");
    let sshd = Sshd::start();
    let dir = scratch_dir("message-size");
    let n = names("size-silent");
    let agent = Agent::start_with(&broker, &sshd.target(), &n.node, &n.prefix, &[], &[]);
    let ssh = Ssh::via_proxy_at(broker.port(), &n.prefix, &n.node, &sshd, &[]);
    let logs = || {
        format!(
            "--- agent log ---\n{}\n--- mosquitto log (tail) ---\n{}",
            agent.log_text(),
            tail(&broker.log_text(), 40)
        )
    };
    copy_both_ways(&ssh, dir.path(), "silent", 8 << 20, &logs);
    assert!(
        broker.log_text().contains(DROPPED_TEXT),
        "the limit was never hit:\n{}",
        logs()
    );
    // The download's sender is the agent.
    let log = agent.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(SILENT_DROP_TEXT))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    // The size named passes the broker's 16000-byte limit, and is the step
    // below the one that failed (7936) or, if larger, the largest message
    // that did arrive (the segmenter never goes below that).
    let size: usize = lines[0]
        .rsplit("sending at most ")
        .next()
        .and_then(|rest| rest.strip_suffix(" bytes per message"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no size in: {}", lines[0]));
    assert!((7936..16000).contains(&size), "{}", lines[0]);
}
