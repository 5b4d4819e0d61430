//! End-to-end checks of what an operator and a user see: `mqtt-proxy --list`
//! (table and JSON), picking a broker per call (`--broker`, `MQTT_BROKER`,
//! the config file's `broker`, `NODE@HOST:PORT`), the exact one-line errors
//! with exit status 255, and the agent's per-session log lines. Real
//! mosquitto, sshd, ssh and agents, each test with its own names.

use std::fs;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::*;

/// Bound for `--list` (docs/listing.md has measured times) and for every failure
/// report (10 s, [`FAILURE_REPORT_BOUND`]). Only a hang guard: the figures
/// are printed, not asserted against a tighter budget.
const REPORT_BOUND: Duration = Duration::from_secs(10);
/// The agent's version as it announces it.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Run `cmd` within [`REPORT_BOUND`] and return its output and duration.
fn timed(mut cmd: Command) -> (Output, Duration) {
    let t = Instant::now();
    let out = run_with_timeout(&mut cmd, REPORT_BOUND);
    (out, t.elapsed())
}

/// `mqtt-proxy --list [--json]` against `broker`; asserts success.
fn list(broker: &Broker, prefix: &str, json: bool) -> String {
    let mut args = vec!["--list"];
    if json {
        args.push("--json");
    }
    let (out, took) = timed(proxy_on(broker.port(), prefix, &args));
    assert_success(&out, "mqtt-proxy --list");
    assert_eq!(stderr_text(&out), "", "--list prints nothing on stderr");
    eprintln!(
        "--list{} took {took:.2?}",
        if json { " --json" } else { "" }
    );
    String::from_utf8(out.stdout).expect("--list prints UTF-8")
}

#[test]
fn list_shows_online_and_offline_nodes_as_table_and_json() {
    let broker = Broker::start("");
    let names = names("list");
    // The agents never open a session, so their target need not exist.
    let target = format!("127.0.0.1:{}", free_port());
    let node = |s: &str| format!("{}-{s}", names.node);
    let (a, b, gone) = (node("a"), node("b"), node("gone"));
    let _agent_a = Agent::start_with(&broker, &target, &a, &names.prefix, &[], &[]);
    let _agent_b = Agent::start_with(&broker, &target, &b, &names.prefix, &[], &[]);
    let mut agent_gone = Agent::start_with(&broker, &target, &gone, &names.prefix, &[], &[]);
    // SIGKILL: no goodbye, so the broker publishes the agent's last will.
    agent_gone.kill();

    let rows = |json: &str| -> Vec<serde_json::Value> {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("--json output {json:?}: {e}"))
    };
    let mut json = String::new();
    let offline = wait_until(REPORT_BOUND, || {
        json = list(&broker, &names.prefix, true);
        rows(&json)
            .iter()
            .any(|r| r["node"] == gone.as_str() && r["status"] == "offline")
    });
    assert!(offline, "the killed agent never showed offline: {json}");

    let rows = rows(&json);
    let summary: Vec<(String, String, String, String)> = rows
        .iter()
        .map(|r| {
            let field = |k: &str| {
                r[k].as_str()
                    .unwrap_or_else(|| panic!("{k} in {r}"))
                    .to_owned()
            };
            (
                field("node"),
                field("status"),
                r["sessions"].to_string(),
                field("version"),
            )
        })
        .collect();
    let expect = |n: &str, s: &str, sessions: &str| {
        (
            n.to_owned(),
            s.to_owned(),
            sessions.to_owned(),
            VERSION.to_owned(),
        )
    };
    // An online agent announces its session count; a last will has none.
    assert_eq!(
        summary,
        [
            expect(&a, "online", "0"),
            expect(&b, "online", "0"),
            expect(&gone, "offline", "null")
        ],
        "{json}"
    );
    for r in &rows {
        assert!(r["since"].as_u64().is_some_and(|s| s > 0), "since in {r}");
        assert!(
            r["instance"].as_str().is_some_and(|i| i.len() == 16),
            "instance in {r}"
        );
    }

    let table = list(&broker, &names.prefix, false);
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["NODE", "STATUS", "SESSIONS", "VERSION", "SINCE"],
        "{table}"
    );
    assert_eq!(lines.len(), 4, "a header and three nodes:\n{table}");
    for (cols, (node, status, sessions, version)) in lines[1..].iter().zip(&summary) {
        // NODE STATUS SESSIONS VERSION YYYY-MM-DD HH:MM:SS UTC
        assert_eq!(cols.len(), 7, "{table}");
        let sessions = if sessions == "null" { "-" } else { sessions };
        assert_eq!(
            (cols[0], cols[1], cols[2], cols[3]),
            (&**node, &**status, sessions, &**version)
        );
        assert!(
            cols[4].len() == 10 && cols[5].len() == 8 && cols[6] == "UTC",
            "{table}"
        );
    }
}

#[test]
fn list_of_an_empty_prefix_says_so() {
    let broker = Broker::start("");
    let prefix = names("list_empty").prefix;
    assert_eq!(list(&broker, &prefix, true).trim(), "[]");
    assert_eq!(
        list(&broker, &prefix, false),
        "NODE  STATUS  SESSIONS  VERSION  SINCE\n(no nodes)\n"
    );
}

/// Everything needed to reach one node on the second of two brokers.
struct TwoBrokers {
    /// Has no agent: a proxy that ends up here finds the node offline.
    first: Broker,
    second: Broker,
    sshd: Sshd,
    names: Names,
    agent: Agent,
}

impl TwoBrokers {
    fn new(test: &str) -> TwoBrokers {
        let first = Broker::start("");
        let second = Broker::start("");
        let sshd = Sshd::start();
        let names = names(test);
        let agent = Agent::start(&second, sshd.port(), &names.node, &names.prefix);
        TwoBrokers {
            first,
            second,
            sshd,
            names,
            agent,
        }
    }

    /// ssh `echo ok` with `ProxyCommand=mqtt-proxy PROXY_ARGS` (`%n` is the
    /// node) and `env` in ssh's environment, which the proxy inherits.
    fn ssh_echo(&self, proxy_args: &str, env: &[(&str, &str)], what: &str) {
        let ssh = Ssh {
            proxy_command: format!("{} {proxy_args}", shell_quote(proxy_bin())),
            host: self.names.node.clone(),
            user: current_user().to_owned(),
            key: self.sshd.client_key().to_owned(),
        };
        let mut cmd = ssh.ssh("echo ok");
        cmd.envs(env.iter().copied());
        let out = run(&mut cmd);
        if !out.status.success() {
            eprintln!("--- agent log ---\n{}", self.agent.log_text());
        }
        assert_success(&out, what);
        assert_eq!(out.stdout, b"ok\n", "{what}");
    }
}

#[test]
fn broker_urls_and_node_at_host_reach_the_right_broker() {
    let t = TwoBrokers::new("broker_select");
    let (first, second) = (t.first.port(), t.second.port());
    let prefix = &t.names.prefix;
    let node = &t.names.node;
    let base = format!("--host 127.0.0.1 --port {first} --topic-prefix {prefix}");

    // The baseline: the first broker has no such node.
    let (out, _) = timed(proxy_on(first, prefix, &[node]));
    assert_exit_code(&out, PROXY_FAILURE_STATUS, "proxy on the first broker");
    assert_eq!(
        stderr_text(&out),
        format!(
            "mqtt-proxy: no node '{node}' on broker 127.0.0.1:{first} (never announced; \
             mqtt-proxy --list shows the nodes)"
        )
    );

    // NODE@HOST:PORT wins over --host/--port, so one ssh config can reach
    // nodes on several brokers.
    t.ssh_echo(
        &format!("{base} %n@127.0.0.1:{second}"),
        &[],
        "ssh with NODE@HOST:PORT",
    );
    // A broker URL as a flag, and in the environment.
    let url = format!("mqtt://127.0.0.1:{second}");
    t.ssh_echo(
        &format!("--broker {url} --topic-prefix {prefix} %n"),
        &[],
        "ssh with --broker",
    );
    t.ssh_echo(
        &format!("--topic-prefix {prefix} %n"),
        &[("MQTT_BROKER", &url)],
        "ssh with MQTT_BROKER",
    );
    // A broker URL in the config file, below a flag and an environment
    // variable: MQTT_PORT (environment) beats the file, --port beats both.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    fs::write(
        &config,
        format!("broker = \"{url}\"\ntopic-prefix = \"{prefix}\"\n"),
    )
    .expect("write config");
    let config = config.to_str().expect("UTF-8 path");
    t.ssh_echo(
        &format!("--config {config} %n"),
        &[],
        "ssh with the config file's broker",
    );
    let first_port = first.to_string();
    for (args, env) in [
        (
            vec!["--config", config],
            vec![("MQTT_PORT", first_port.as_str())],
        ),
        (vec!["--config", config, "--port", &first_port], vec![]),
    ] {
        let mut cmd = proxy_args(&[&args[..], &[node.as_str()]].concat());
        cmd.envs(env.iter().copied());
        let (out, _) = timed(cmd);
        assert_exit_code(&out, PROXY_FAILURE_STATUS, &format!("{args:?} {env:?}"));
        assert_eq!(
            stderr_text(&out),
            format!(
                "mqtt-proxy: no node '{node}' on broker 127.0.0.1:{first} (never announced; \
                 mqtt-proxy --list shows the nodes)"
            ),
            "{args:?} {env:?} must reach the first broker"
        );
    }
}

#[test]
fn user_facing_errors_are_exact_one_liners_with_status_255() {
    let broker = Broker::start("");
    let names = names("errors");
    let closed = free_port();
    let refusing = format!("{}-refusing", names.node);
    let _agent = Agent::start_with(
        &broker,
        &format!("127.0.0.1:{closed}"),
        &refusing,
        &names.prefix,
        &[],
        &[],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let bad_config = dir.path().join("config.toml");
    fs::write(&bad_config, "hots = \"typo\"\n").expect("write config");
    let bad_config = bad_config.to_str().expect("UTF-8 path");
    let nobody = free_port();
    let p = &names.prefix;
    let cases: Vec<(Command, String)> = vec![
        (
            proxy_on(nobody, p, &["node-x"]),
            format!("mqtt-proxy: could not reach broker 127.0.0.1:{nobody}: connection refused"),
        ),
        (
            proxy_on(broker.port(), p, &["no-such-node"]),
            format!(
                "mqtt-proxy: no node 'no-such-node' on broker 127.0.0.1:{} (never announced; \
                 mqtt-proxy --list shows the nodes)",
                broker.port()
            ),
        ),
        (
            proxy_on(broker.port(), p, &[&refusing]),
            format!("mqtt-proxy: node '{refusing}' refused: sshd at 127.0.0.1:{closed} refused the connection"),
        ),
        (
            proxy_on(broker.port(), p, &["bad/node"]),
            "mqtt-proxy: invalid node id \"bad/node\": use 1-64 letters, digits, '.', '_' or '-'".to_owned(),
        ),
        (
            proxy_args(&["--config", bad_config, "node-x"]),
            format!(
                "mqtt-proxy: config file {bad_config}: line 1: unknown key 'hots' (known: broker, mqtt-version, \
                 max-message-size, http-proxy, host, port, user, password-file, topic-prefix, \
                 client-id-prefix, resume-timeout, probe-interval, link-timeout, max-publish-rate, \
                 max-bandwidth, tls, ca-file, \
                 cert-file, key-file, agent-password-file, identity)"
            ),
        ),
    ];
    for (cmd, line) in cases {
        let what = format!("{cmd:?}");
        let (out, took) = timed(cmd);
        assert_exit_code(&out, PROXY_FAILURE_STATUS, &what);
        assert_eq!(stderr_text(&out), line, "{what}");
        assert_eq!(out.stdout, b"", "{what}: nothing may reach ssh on stdout");
        eprintln!("{line:?} after {took:.2?}");
    }
}

#[test]
fn agent_logs_one_plain_line_per_session_and_lists_open_sessions() {
    let broker = Broker::start("");
    let sshd = Sshd::start();
    let names = names("session_log");
    let mut agent = Agent::start(&broker, sshd.port(), &names.node, &names.prefix);
    let ssh = Ssh::via_proxy(&broker, &names.prefix, &names.node, &sshd);

    // While a session is open, --list counts it.
    let mut stdin_held = ssh.ssh("head -c 100000 /dev/zero; cat");
    stdin_held.stdin(std::process::Stdio::piped());
    let mut session = Background::start(&mut stdin_held);
    agent.wait_log("session opened", 1, REPORT_BOUND);
    let sessions = |json: &str| -> String {
        let rows: serde_json::Value = serde_json::from_str(json).expect("--json is JSON");
        rows[0]["sessions"].to_string()
    };
    let mut json = String::new();
    let counted = wait_until(REPORT_BOUND, || {
        json = list(&broker, &names.prefix, true);
        sessions(&json) == "1"
    });
    assert!(counted, "--list never showed the open session: {json}");
    drop(session.take_stdin());
    let out = session.finish(REPORT_BOUND);
    assert_success(&out, "ssh head; cat");
    assert_eq!(out.stdout.len(), 100_000);
    let back_to_zero = wait_until(REPORT_BOUND, || {
        json = list(&broker, &names.prefix, true);
        sessions(&json) == "0"
    });
    assert!(back_to_zero, "--list still counts a closed session: {json}");

    let log = agent.log_text();
    assert!(
        !log.contains('\x1b'),
        "colour codes in a log that is not a terminal:\n{log}"
    );
    let line = |what: &str| -> String {
        let found: Vec<&str> = log.lines().filter(|l| l.contains(what)).collect();
        assert_eq!(found.len(), 1, "one {what:?} line:\n{log}");
        found[0].to_owned()
    };
    let online = line("agent is online");
    assert!(online.contains(&format!("node={}", names.node)), "{online}");
    let opened = line("session opened");
    let closed = line("session closed");
    for l in [&opened, &closed] {
        for field in [
            format!("node={}", names.node),
            "sid=".into(),
            "client=".into(),
        ] {
            assert!(l.contains(&field), "{field:?} missing in {l}");
        }
    }
    let number = |key: &str| -> u64 {
        let rest = closed
            .split(&format!(" {key}="))
            .nth(1)
            .unwrap_or_else(|| panic!("{key} missing in {closed}"));
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits
            .parse()
            .unwrap_or_else(|_| panic!("{key} in {closed}"))
    };
    assert!(number("bytes_to_client") > 100_000, "{closed}");
    assert!(number("bytes_from_client") > 0, "{closed}");
    number("duration_ms");
    assert!(closed.contains("reason=\"closed\""), "{closed}");
}

/// A user who gives up while the session is still opening (Ctrl-C, or ssh
/// hanging up) ends `mqtt-proxy` at once and silently, not at the opening's
/// 9 s deadline with "did not answer". The node here looks online (its
/// retained presence) but no agent answers.
#[test]
fn interrupting_an_opening_ends_it_at_once_and_silently() {
    let broker = Broker::start("");
    let names = names("interrupt_open");
    let presence = format!("{}/{}/presence", names.prefix, names.node);
    let online = r#"{"status":"online","version":"0","since":1,"instance":"x","protocol":2}"#;
    let out = run(broker
        .mosquitto_pub()
        .args(["-r", "-q", "1", "-t", &presence, "-m", online]));
    assert_success(&out, "retained presence");
    let proxy = Background::start(&mut proxy_on(broker.port(), &names.prefix, &[&names.node]));
    std::thread::sleep(Duration::from_secs(1));
    let signalled = Instant::now();
    let pid = proxy.pid().to_string();
    assert_success(&run(Command::new("kill").args(["-INT", &pid])), "kill -INT");
    let out = proxy.finish(REPORT_BOUND);
    eprintln!("ended {:.2?} after SIGINT", signalled.elapsed());
    assert_exit_code(&out, PROXY_FAILURE_STATUS, "interrupted while opening");
    // Before, it went on to the deadline and said "did not answer".
    assert_eq!(
        stderr_text(&out),
        "",
        "nobody to tell: ssh hung up or the user gave up"
    );
}

/// The state letter of process `pid` (`Z` once it exited and waits to be
/// reaped), or `None` when it is gone.
fn process_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(") ").next()?.chars().next()
}

/// ssh killed outright (no SIGHUP for its ProxyCommand, as when it
/// crashes or gets SIGKILL) while the broker is unreachable: `mqtt-proxy`
/// sees that nobody reads its stdout any more and exits. Before, the EOF
/// on its stdin became a FIN that could not be delivered, and the proxy
/// waited for the broker until the resume timeout (10 min). (With the
/// broker up, that FIN ends the session at once, as sshd closes.)
#[test]
fn a_proxy_whose_ssh_was_killed_exits_while_the_broker_is_down() {
    let mut broker = Broker::start("");
    let sshd = Sshd::start();
    let n = names("ssh_killed");
    let mut agent = Agent::start(&broker, sshd.port(), &n.node, &n.prefix);
    agent.wait_online();
    let ssh = Ssh::via_proxy(&broker, &n.prefix, &n.node, &sshd);
    let mut session = Background::start(&mut ssh.ssh("sleep 120"));
    agent.wait_log("session opened", 1, REPORT_BOUND);
    let ssh_pid = session.pid();
    let children = fs::read_to_string(format!("/proc/{ssh_pid}/task/{ssh_pid}/children"))
        .expect("ssh's children");
    let proxy_pid: u32 = children
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .find(|p: &u32| {
            fs::read_to_string(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.contains("mqtt-proxy"))
        })
        .unwrap_or_else(|| panic!("no mqtt-proxy among ssh's children {children:?}"));
    broker.stop();
    session.kill();
    let killed = Instant::now();
    // Generous: the proxy looks once a second and lingers 2 s for the
    // agent's FIN; without the watch it stayed for the resume timeout.
    let ended = wait_until(Duration::from_secs(20), || {
        matches!(process_state(proxy_pid), None | Some('Z'))
    });
    if !ended {
        // Not left behind for the rest of the run.
        let _ = Command::new("kill")
            .args(["-9", &proxy_pid.to_string()])
            .status();
        panic!("mqtt-proxy {proxy_pid} still runs 20 s after its ssh was killed");
    }
    eprintln!(
        "mqtt-proxy ended {:.1?} after ssh was killed",
        killed.elapsed()
    );
}
