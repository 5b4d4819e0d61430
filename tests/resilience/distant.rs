//! A distant broker: both broker connections go through a relay that
//! delays every byte, on a broker with default settings (what users of a
//! hosted broker have). ssh and scp both ways work, the copies are exact,
//! and small frames go out with a PAD behind them.

use super::*;

/// One-way delay on each broker link in the distant-broker test: a path
/// round trip of 4 × this (80 ms), like a broker in another region.
const FAR_ONE_WAY: Duration = Duration::from_millis(20);
/// Bytes each way through the distant broker: enough for many windows.
const FAR_BYTES: u64 = 16 << 20;

#[test]
fn scp_both_ways_through_a_distant_broker() {
    // Both the agent's and the proxy's broker connections go through a
    // relay that delays every byte, on a broker with default settings
    // (Nagle on): what users of a hosted broker have.
    let s = Setup::new("far_scp");
    let agent_link = Relay::start(s.broker.port());
    let client_link = Relay::start(s.broker.port());
    agent_link.set_latency(FAR_ONE_WAY);
    client_link.set_latency(FAR_ONE_WAY);
    let agent = s.agent(agent_link.port(), &[]);
    let ssh = s.ssh(client_link.port(), &[]);

    let out = run_with_timeout(&mut ssh.ssh("echo far && exit 7"), BIG_TIMEOUT);
    s.check(&agent, &out, 7, "ssh through the distant broker");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "far\n");

    let local = s.path("far.bin");
    let remote = s.path("far.remote");
    let back = s.path("far.back");
    write_random_file(&local, FAR_BYTES);
    let t = Instant::now();
    let out = run_with_timeout(&mut ssh.scp_upload(&local, &remote), BIG_TIMEOUT);
    s.check(&agent, &out, 0, "scp upload through the distant broker");
    let up = t.elapsed();
    assert_files_equal(&local, &remote);
    let t = Instant::now();
    let out = run_with_timeout(&mut ssh.scp_download(&remote, &back), BIG_TIMEOUT);
    s.check(&agent, &out, 0, "scp download through the distant broker");
    let down = t.elapsed();
    assert_files_equal(&local, &back);
    // On a path this far, small frames went with a PAD behind them (and
    // the proxy dropped them: the checksums above).
    let log = agent.log_text();
    let (_, pads) = session_counts(&log, "pads");
    assert!(
        pads > 0,
        "no PAD frames in the agent's session lines:\n{}",
        tail(&log, 10)
    );
    eprintln!(
        "16 MiB scp through a broker {FAR_ONE_WAY:?} away on each link: up {}, down {}",
        rate(FAR_BYTES, up),
        rate(FAR_BYTES, down)
    );
}
