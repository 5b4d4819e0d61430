//! Broker availability and node ownership: an agent started before its
//! broker comes online, and the newest of two agents for one node id wins.

use super::*;

#[test]
fn agent_started_before_the_broker_comes_online() {
    let sshd = Sshd::start();
    let names = names("agent_before_broker");
    let port = free_port();
    let mut agent = Agent::spawn_at(port, &sshd.target(), &names.node, &names.prefix, &[], &[]);
    // Nothing listens yet: the agent keeps retrying with backoff.
    thread::sleep(OUTAGE);
    assert_eq!(
        agent.exit_status(),
        None,
        "agent gave up without a broker:\n{}",
        agent.log_text()
    );
    assert!(
        !agent.log_text().contains(AGENT_ONLINE_TEXT),
        "agent online without a broker:\n{}",
        agent.log_text()
    );

    let t = Instant::now();
    let broker = Broker::start_on(port, "");
    let bound = Duration::from_secs(8);
    agent.wait_log(AGENT_ONLINE_TEXT, 1, bound.saturating_sub(t.elapsed()));
    let online = t.elapsed();

    let ssh = Ssh::via_proxy(&broker, &names.prefix, &names.node, &sshd);
    let out = run(&mut ssh.ssh("echo hello"));
    if !out.status.success() {
        eprintln!("--- agent log ---\n{}", agent.log_text());
    }
    assert_success(&out, "ssh through an agent that started before its broker");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    eprintln!(
        "agent started {OUTAGE:?} before the broker: online {:.2} s after the broker started",
        online.as_secs_f64()
    );
}

/// The agent password both agents and the client use in
/// [`newest_agent_for_a_node_id_wins`]: an agent steps down only for an
/// announcement proven with it.
const TWO_AGENTS_PASSWORD: &str = "two agents, one password";

/// Two agents with one node id and an agent password: the newest wins, the
/// older exits with status 3. (Without a password both go on: anyone on the
/// broker could otherwise stop an agent with one forged presence message;
/// `tests/hostile.rs` publishes one.)
#[test]
fn newest_agent_for_a_node_id_wins() {
    let s = Setup::new("two_agents");
    let spawn = || {
        Agent::spawn_at(
            s.broker.port(),
            &s.sshd.target(),
            &s.names.node,
            &s.names.prefix,
            &[],
            &[("MQTT_AGENT_PASSWORD", TWO_AGENTS_PASSWORD)],
        )
    };
    let mut first = spawn();
    first.wait_online();
    let t = Instant::now();
    let mut second = spawn();
    second.wait_online();
    let bound = Duration::from_secs(5);
    let status = first.wait_exit(bound.saturating_sub(t.elapsed()));
    let elapsed = t.elapsed();
    assert_eq!(
        status.and_then(|st| st.code()),
        Some(AGENT_TAKEN_OVER_STATUS),
        "first agent's exit within {bound:?} of the second's start: {status:?}\n\
         --- first agent ---\n{}\n--- second agent ---\n{}",
        first.log_text(),
        second.log_text()
    );
    assert!(
        first.log_text().contains("another agent took over node"),
        "first agent's log:\n{}",
        first.log_text()
    );

    let ssh = s.ssh(s.broker.port(), &[]);
    let out = run(ssh
        .ssh("echo hello")
        .env("MQTT_AGENT_PASSWORD", TWO_AGENTS_PASSWORD));
    s.check(&second, &out, 0, "ssh through the surviving agent");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert_eq!(
        second.exit_status(),
        None,
        "second agent exited:\n{}",
        second.log_text()
    );
    assert!(
        !second.log_text().contains("took over"),
        "second agent stepped down:\n{}",
        second.log_text()
    );
    eprintln!(
        "two agents: the first exited with status {AGENT_TAKEN_OVER_STATUS} {:.2} s after the second started",
        elapsed.as_secs_f64()
    );
}
