//! End-to-end checks of `mqtt-proxy --list` and `--forget` against a real
//! mosquitto with its default limits (20 in flight, 1000 queued per client,
//! Nagle on): thousands of retained presence messages listed exactly, in the
//! table and in JSON; glob and `--online` filters; forgetting a node, and
//! the refusals (online, unknown, forbidden by the ACL) with their exact
//! lines and exit status 255.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::mqtt_wire::{mqtt_string, packet};
use crate::common::*;
use mqtt_proxy::list::{self, Node};
use mqtt_proxy::EXIT_PROXY_FAILURE;

/// Hang guard for one `mqtt-proxy` call (a listing of 5,000 nodes takes well
/// under a second); timings are printed, never asserted.
const CALL_BOUND: Duration = Duration::from_secs(30);
/// Nodes in the large listing: five times mosquitto's default queue for one
/// client, so a listing that trusted the broker's QoS 1 queue would show
/// about a fifth of them.
const MANY: usize = 5_000;

// ---------------------------------------------------------------------------
// Seeding retained presence messages with a minimal MQTT 3.1.1 client
// ---------------------------------------------------------------------------

/// Read one packet; returns its first byte.
fn read_packet(s: &mut TcpStream) -> u8 {
    let mut head = [0u8; 1];
    s.read_exact(&mut head)
        .expect("read a packet from the broker");
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).expect("read a remaining length");
        len |= usize::from(b[0] & 0x7f) << shift;
        shift += 7;
        if b[0] & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("read a packet body");
    head[0]
}

/// Publish `messages` (topic, payload) retained at QoS 1 in one go, as
/// `user` if given, and return once the broker has handled all of them (its
/// answer to a PINGREQ sent after them).
fn seed(port: u16, user: Option<(&str, &str)>, messages: &[(String, Vec<u8>)]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to mosquitto");
    let mut body = Vec::new();
    mqtt_string(b"MQTT", &mut body);
    body.push(4); // MQTT 3.1.1
    body.push(0x02 | if user.is_some() { 0xc0 } else { 0 });
    body.extend_from_slice(&60u16.to_be_bytes());
    mqtt_string(unique_id("seed").as_bytes(), &mut body);
    if let Some((u, p)) = user {
        mqtt_string(u.as_bytes(), &mut body);
        mqtt_string(p.as_bytes(), &mut body);
    }
    let mut out = Vec::new();
    packet(0x10, &body, &mut out);
    s.write_all(&out).expect("send CONNECT");
    assert_eq!(read_packet(&mut s), 0x20, "CONNACK");
    let mut out = Vec::new();
    for (i, (topic, payload)) in messages.iter().enumerate() {
        let mut body = Vec::new();
        mqtt_string(topic.as_bytes(), &mut body);
        body.extend_from_slice(&((i % 65_535) as u16 + 1).to_be_bytes());
        body.extend_from_slice(payload);
        packet(0x33, &body, &mut out); // PUBLISH, QoS 1, retained
    }
    out.extend_from_slice(&[0xc0, 0]); // PINGREQ
    s.write_all(&out).expect("send the presence messages");
    while read_packet(&mut s) != 0xd0 {}
    s.write_all(&[0xe0, 0]).expect("send DISCONNECT");
}

/// A presence message as an agent publishes it, and the row it lists as.
fn node(prefix: &str, id: &str, online: bool, since: u64) -> ((String, Vec<u8>), Node) {
    let status = if online { "online" } else { "offline" };
    let sessions = online.then_some((since % 5) as u32);
    let instance = format!("{:016x}", since);
    let mut json = format!(
        r#"{{"status":"{status}","version":"0.1.0","since":{since},"instance":"{instance}""#
    );
    if let Some(n) = sessions {
        json.push_str(&format!(r#","sessions":{n}"#));
    }
    json.push('}');
    let row = Node {
        node: id.to_owned(),
        status: status.to_owned(),
        version: "0.1.0".to_owned(),
        since,
        instance,
        sessions,
        broker: None,
    };
    ((format!("{prefix}/{id}/presence"), json.into_bytes()), row)
}

/// Seed `nodes` (id, online) under `prefix` and return their rows in the
/// order the listing prints them.
fn seed_nodes(
    port: u16,
    user: Option<(&str, &str)>,
    prefix: &str,
    nodes: &[(&str, bool)],
) -> Vec<Node> {
    let (messages, mut rows): (Vec<_>, Vec<_>) = nodes
        .iter()
        .enumerate()
        .map(|(i, (id, online))| node(prefix, id, *online, 1_790_000_000 + i as u64))
        .unzip();
    seed(port, user, &messages);
    rows.sort_by(|a, b| a.node.cmp(&b.node));
    rows
}

// ---------------------------------------------------------------------------
// Running mqtt-proxy
// ---------------------------------------------------------------------------

fn call(mut cmd: Command, what: &str) -> Output {
    let t = Instant::now();
    let out = run_with_timeout(&mut cmd, CALL_BOUND);
    eprintln!("{what} took {:.2?}", t.elapsed());
    out
}

/// `mqtt-proxy ARGS` against `port`/`prefix`: asserts exit 0 and a silent
/// stderr, returns stdout.
fn ok(port: u16, prefix: &str, args: &[&str]) -> String {
    let out = call(proxy_on(port, prefix, args), &format!("{args:?}"));
    assert_success(&out, &format!("mqtt-proxy {args:?}"));
    assert_eq!(stderr_text(&out), "", "{args:?} prints nothing on stderr");
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// `mqtt-proxy ARGS`: asserts exit 255, nothing on stdout and `line` as the
/// whole of stderr.
fn fails(cmd: Command, line: &str) {
    let what = format!("{cmd:?}");
    let out = call(cmd, &what);
    assert_exit_code(&out, i32::from(EXIT_PROXY_FAILURE), &what);
    assert_eq!(stderr_text(&out), line, "{what}");
    assert_eq!(out.stdout, b"", "{what}");
}

fn json_rows(json: &str) -> Vec<Node> {
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("--json output {json:?}: {e}"));
    rows.iter()
        .map(|r| Node {
            node: r["node"].as_str().expect("node").to_owned(),
            status: r["status"].as_str().expect("status").to_owned(),
            version: r["version"].as_str().expect("version").to_owned(),
            since: r["since"].as_u64().expect("since"),
            instance: r["instance"].as_str().expect("instance").to_owned(),
            sessions: r["sessions"].as_u64().map(|n| n as u32),
            broker: r["broker"].as_str().map(str::to_owned),
        })
        .collect()
}

fn ids(rows: &[Node]) -> Vec<&str> {
    rows.iter().map(|n| n.node.as_str()).collect()
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn list_shows_exactly_every_node_of_thousands_in_table_and_json() {
    let broker = Broker::start("");
    let prefix = names("list_many").prefix;
    let ids: Vec<String> = (0..MANY).map(|i| format!("node-{i:05}")).collect();
    let nodes: Vec<(&str, bool)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i % 3 != 0))
        .collect();
    let t = Instant::now();
    let expected = seed_nodes(broker.port(), None, &prefix, &nodes);
    eprintln!("seeded {MANY} retained messages in {:.2?}", t.elapsed());

    // Several runs: the broker's drops, if any, differ from run to run.
    for run in 0..3 {
        let json = ok(broker.port(), &prefix, &["--list", "--json"]);
        assert!(
            json_rows(&json) == expected,
            "run {run}: --json lists {} nodes, not exactly the {MANY} seeded",
            json_rows(&json).len()
        );
        let table = ok(broker.port(), &prefix, &["--list"]);
        assert!(
            table == list::table(&expected),
            "run {run}: the table has {} lines, not a header and exactly the {MANY} nodes",
            table.lines().count()
        );
    }
    // The format itself, independently of list::table: an online node with
    // its sessions, an offline one without.
    let table = ok(broker.port(), &prefix, &["--list", "node-0000[01]"]);
    assert_eq!(
        table,
        "NODE        STATUS   SESSIONS  VERSION  SINCE\n\
         node-00000  offline  -         0.1.0    2026-09-21 14:13:20 UTC\n\
         node-00001  online   1         0.1.0    2026-09-21 14:13:21 UTC\n"
    );
}

#[test]
fn list_filters_by_glob_and_online() {
    let broker = Broker::start("");
    let prefix = names("list_filter").prefix;
    let all = seed_nodes(
        broker.port(),
        None,
        &prefix,
        &[
            ("prod-db", true),
            ("prod-web", false),
            ("prod-web-2", true),
            ("web-1", true),
            ("web-12", false),
            ("db.backup", false),
        ],
    );
    let all_ids = ids(&all);
    let listed = |args: &[&str]| -> Vec<String> {
        let json = ok(broker.port(), &prefix, &[args, &["--json"]].concat());
        ids(&json_rows(&json))
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let cases: &[(&[&str], &[&str])] = &[
        (&["--list"], &all_ids),
        (
            &["--list", "prod-*"],
            &["prod-db", "prod-web", "prod-web-2"],
        ),
        (
            &["--list", "prod-*", "--online"],
            &["prod-db", "prod-web-2"],
        ),
        (&["--list", "--online"], &["prod-db", "prod-web-2", "web-1"]),
        (&["--list", "web-?"], &["web-1"]),
        (&["--list", "*-[0-9]*"], &["prod-web-2", "web-1", "web-12"]),
        (&["--list", "[!pw]*"], &["db.backup"]),
        (&["--list", "db.backup"], &["db.backup"]),
        (&["--list", "nothing*"], &[]),
    ];
    for (args, want) in cases {
        assert_eq!(listed(args), *want, "{args:?}");
    }
    assert_eq!(
        ok(broker.port(), &prefix, &["--list", "nothing*"]),
        "NODE  STATUS  SESSIONS  VERSION  SINCE\n(no nodes)\n"
    );
}

#[test]
fn forget_removes_an_offline_node_and_refuses_online_and_unknown_ones() {
    let broker = Broker::start("");
    let prefix = names("forget").prefix;
    seed_nodes(
        broker.port(),
        None,
        &prefix,
        &[("old-1", false), ("old-2", false), ("live-1", true)],
    );
    assert_eq!(ok(broker.port(), &prefix, &["--forget", "old-1"]), "");
    let left = json_rows(&ok(broker.port(), &prefix, &["--list", "--json"]));
    assert_eq!(ids(&left), ["live-1", "old-2"]);
    // The broker itself no longer has it: nothing retained on the topic.
    let out = run(broker.mosquitto_sub().args([
        "-t",
        &format!("{prefix}/old-1/presence"),
        "-W",
        "1",
        "-v",
    ]));
    assert_eq!(out.stdout, b"", "retained presence of a forgotten node");

    let forget = |node: &str| proxy_on(broker.port(), &prefix, &["--forget", node]);
    fails(
        forget("old-1"),
        "mqtt-proxy: could not forget node 'old-1': the broker has no presence message for it",
    );
    fails(
        forget("live-1"),
        "mqtt-proxy: could not forget node 'live-1': it is online (stop its agent first)",
    );
    fails(
        forget("bad/id"),
        "mqtt-proxy: invalid node id \"bad/id\": use 1-64 letters, digits, '.', '_' or '-'",
    );
    let left = json_rows(&ok(broker.port(), &prefix, &["--list", "--json"]));
    assert_eq!(ids(&left), ["live-1", "old-2"]);
}

/// A directory mosquitto can read after dropping root privileges.
fn readable_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("mqtt-proxy-list-acl.")
        .tempdir()
        .expect("tempdir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod dir");
    dir
}

/// A mosquitto password file for `users`, readable by mosquitto.
fn password_file(dir: &Path, users: &[(&str, &str)]) -> PathBuf {
    let path = dir.join("passwd");
    for (i, (user, password)) in users.iter().enumerate() {
        let mut cmd = Command::new(find_tool("mosquitto_passwd"));
        if i == 0 {
            cmd.arg("-c");
        }
        let out = run(cmd.arg("-b").arg(&path).args([user, password]));
        assert_success(&out, "mosquitto_passwd");
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod passwd");
    path
}

/// A broker with passwords and `acl` (the shipped ACL's text, plus a
/// `seeder` user who may write every presence topic).
fn acl_broker(dir: &Path, acl: &str, users: &[(&str, &str)]) -> Broker {
    let acl_path = dir.join("acl");
    fs::write(
        &acl_path,
        format!("{acl}\nuser seeder\ntopic write mqtt-proxy/+/presence\n"),
    )
    .expect("write acl");
    fs::set_permissions(&acl_path, fs::Permissions::from_mode(0o644)).expect("chmod acl");
    let users = [users, &[("seeder", "seeder secret")]].concat();
    let passwd = password_file(dir, &users);
    Broker::start_custom(|port| {
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\nacl_file {}\npersistence false\n",
            passwd.display(),
            acl_path.display()
        )
    })
}

fn shipped_acl() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mosquitto/acl");
    fs::read_to_string(path).expect("read the shipped ACL")
}

#[test]
fn under_the_shipped_acl_clients_list_and_only_a_node_user_may_forget() {
    const PREFIX: &str = "mqtt-proxy";
    let dir = readable_dir();
    let users = [("alice", "alice secret"), ("web-1", "web-1 secret")];
    let broker = acl_broker(dir.path(), &shipped_acl(), &users);
    let nodes: Vec<String> = (0..1500).map(|i| format!("n-{i:04}")).collect();
    let mut seeded: Vec<(&str, bool)> = nodes.iter().map(|n| (n.as_str(), false)).collect();
    seeded.push(("web-1", false));
    let expected = seed_nodes(
        broker.port(),
        Some(("seeder", "seeder secret")),
        PREFIX,
        &seeded,
    );
    let as_user = |user: &str, args: &[&str]| {
        let mut cmd = proxy_on(broker.port(), PREFIX, &[&["--user", user], args].concat());
        let password = users
            .iter()
            .find(|(u, _)| *u == user)
            .expect("a known user")
            .1;
        cmd.env("MQTT_PASSWORD", password);
        cmd
    };
    let out = call(as_user("alice", &["--list", "--json"]), "alice --list");
    assert_success(&out, "alice --list");
    assert_eq!(stderr_text(&out), "");
    assert!(
        json_rows(&String::from_utf8_lossy(&out.stdout)) == expected,
        "alice sees exactly the {} nodes",
        expected.len()
    );

    // A client may read presence but not write it: mosquitto acknowledges
    // the empty retained publish and drops it.
    fails(
        as_user("alice", &["--forget", "web-1"]),
        "mqtt-proxy: could not forget node 'web-1': the broker did not remove its presence \
         (check the ACL for this user)",
    );
    // The node's own user (its agent's credentials) may.
    let out = call(as_user("web-1", &["--forget", "web-1"]), "web-1 --forget");
    assert_success(&out, "web-1 --forget web-1");
    assert_eq!(
        (stderr_text(&out).as_str(), &out.stdout[..]),
        ("", &b""[..])
    );
    let out = call(as_user("alice", &["--list", "web-*", "--json"]), "alice");
    assert_success(&out, "alice --list web-*");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}

#[test]
fn list_without_the_acl_line_for_its_marker_fails_instead_of_guessing() {
    let dir = readable_dir();
    let old_acl: String = shipped_acl()
        .lines()
        .filter(|l| !l.contains("$list"))
        .map(|l| format!("{l}\n"))
        .collect();
    let users = [("alice", "alice secret")];
    let broker = acl_broker(dir.path(), &old_acl, &users);
    seed_nodes(
        broker.port(),
        Some(("seeder", "seeder secret")),
        "mqtt-proxy",
        &[("web-1", true)],
    );
    let mut cmd = proxy_on(broker.port(), "mqtt-proxy", &["--user", "alice", "--list"]);
    cmd.env("MQTT_PASSWORD", "alice secret");
    let what = "--list without the marker ACL line";
    let out = call(cmd, what);
    assert_exit_code(&out, i32::from(EXIT_PROXY_FAILURE), what);
    assert_eq!(out.stdout, b"", "{what}: no partial list");
    let line = stderr_text(&out);
    let (start, end) = (
        "mqtt-proxy: could not list the nodes completely: the broker did not deliver our end marker on \
         mqtt-proxy/$list/mqtt-proxy-list-",
        " (check the ACL for this user)",
    );
    assert!(
        line.starts_with(start)
            && line.ends_with(end)
            && line.len() == start.len() + 16 + end.len(),
        "{line}"
    );
}
