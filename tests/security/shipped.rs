//! The shipped broker setup (`examples/mosquitto/`): broker passwords, the
//! least-privilege ACL role by role, and the shipped mosquitto.conf with
//! TLS, passwords, the ACL and its packet size limit.

use rumqttc::SubscribeReasonCode;

use super::*;

/// A file shipped in examples/mosquitto.
fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/mosquitto")
        .join(name)
}

/// The topic prefix the shipped ACL is written for (the default one); the
/// tests that use it have a broker of their own, so no other test shares it.
const SHIPPED_PREFIX: &str = "mqtt-proxy";

/// A password file made with `mosquitto_passwd -c -b` / `-b`, as
/// examples/mosquitto/README.md says, in `pki`'s world-readable directory.
fn password_file(pki: &Pki, users: &[(&str, &str)]) -> PathBuf {
    let path = pki.path("passwd");
    for (i, (user, password)) in users.iter().enumerate() {
        let mut cmd = Command::new(find_tool("mosquitto_passwd"));
        if i == 0 {
            cmd.arg("-c");
        }
        let out = cmd
            .arg("-b")
            .arg(&path)
            .args([user, password])
            .stdin(Stdio::null())
            .output()
            .expect("run mosquitto_passwd");
        assert!(
            out.status.success(),
            "mosquitto_passwd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    pki.share();
    path
}

/// The broker's answer to a wrong password, as mqtt-proxy prints it.
/// mosquitto 2.0 (MQTT 3.1.1) refuses a bad user name or password with
/// CONNACK code 5 "not authorized", never code 4; mqtt-proxy, having sent a
/// user name, reports it as a credentials problem.
const WRONG_PASSWORD_LINE: &str =
    "mqtt-proxy: broker refused the connection: bad user name or password";
/// The same refusal when no user name was sent.
const ANONYMOUS_REFUSED_LINE: &str = "mqtt-proxy: broker refused the connection: not authorized \
     (the broker wants a user name and password: --user, MQTT_PASSWORD)";

#[test]
fn shipped_acl_gives_each_role_only_what_it_needs() {
    let _lock = shared();
    let pki = Pki::new();
    let acl = pki.path("acl");
    fs::copy(shipped("acl"), &acl).expect("copy the shipped ACL verbatim");
    let passwd = password_file(
        &pki,
        &[
            ("prod-db", "prod-db agent secret"),
            ("web-1", "web-1 agent secret"),
            ("alice", "alice secret"),
            ("bob", "bob secret"),
            ("intern", "intern secret"),
        ],
    );
    let broker = Broker::start_custom(|port| {
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\nacl_file {}\npersistence false\n",
            passwd.display(),
            acl.display()
        )
    });
    assert!(
        broker
            .log_text()
            .contains("ACL pattern 'mqtt-proxy/+/presence' does not contain '%c' or '%u'"),
        "mosquitto 2.0 warns about the presence pattern (documented in the ACL)"
    );
    let sshd = Sshd::start();
    let port = broker.port().to_string();
    // Agents log in with their node id as user name.
    let mut agents = Vec::new();
    for (node, password) in [
        ("prod-db", "prod-db agent secret"),
        ("web-1", "web-1 agent secret"),
    ] {
        agents.push(Agent::start_with(
            &broker,
            &sshd.target(),
            node,
            SHIPPED_PREFIX,
            &["--user", node],
            &[("MQTT_PASSWORD", password)],
        ));
    }
    let dir = scratch_dir("acl");
    let alice_password = private_file(dir.path(), "alice.password", "alice secret\n");
    let via = |user: &str, node: &str, password_file: &Path| {
        Ssh::via_proxy_args(
            &sshd,
            node,
            &[
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "--user",
                user,
                "--password-file",
                path_arg(password_file),
            ],
        )
    };

    // Alice reaches both nodes. Meanwhile bob, another client, subscribed
    // to every session topic, receives presence messages only.
    let bob = Raw::connect(broker.port(), "bob-raw-1", Some(("bob", "bob secret")));
    let granted = bob.subscribe(&[
        "mqtt-proxy/+/s/+/down",
        "mqtt-proxy/+/s/+/up",
        "mqtt-proxy/#",
    ]);
    // mosquitto 2.0 grants every subscription and applies the read ACL to
    // each message it would deliver.
    assert!(
        granted
            .iter()
            .all(|c| matches!(c, SubscribeReasonCode::Success(_))),
        "{granted:?}"
    );
    for node in ["prod-db", "web-1"] {
        let ssh = via("alice", node, &alice_password);
        // Enough output for many frames the spy could see.
        let mut cmd = clean(ssh.ssh("head -c 200000 /dev/zero | od | tail -1; echo done"));
        let out = run(&mut cmd);
        assert_success(&out, &format!("alice: ssh to {node}"));
        assert!(String::from_utf8_lossy(&out.stdout).ends_with("done\n"));
    }
    let mut topics: Vec<String> = bob
        .collect(Duration::from_millis(500))
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    // Presence, retained and the live session-count updates, is public;
    // session traffic is not.
    topics.sort();
    topics.dedup();
    assert_eq!(
        topics,
        ["mqtt-proxy/prod-db/presence", "mqtt-proxy/web-1/presence"],
        "bob read presence messages only, no session traffic"
    );

    // A client writes to session topics under its own client id only: an
    // OPEN under someone else's id is dropped, one under its own is served.
    bob.publish(
        "mqtt-proxy/web-1/s/not-bobs-client-id/up",
        frame(OPEN, 1, 1 << 20, &SHARE),
    );
    bob.publish(
        "mqtt-proxy/web-1/s/bob-raw-1/up",
        frame(OPEN, 2, 1 << 20, &SHARE),
    );
    agents[1].wait_log("client=\"bob-raw-1\"", 1, Duration::from_secs(10));
    assert!(
        !agents[1].log_text().contains("not-bobs-client-id"),
        "an OPEN under another client id reached the agent"
    );

    // A client cannot impersonate an agent: its presence publish is
    // acknowledged and dropped, the agent's retained presence stays.
    let mallory = Raw::connect(broker.port(), "mallory-1", Some(("alice", "alice secret")));
    mallory.publish(
        "mqtt-proxy/prod-db/presence",
        br#"{"status":"offline","version":"0.1.0","since":0,"instance":"00"}"#.to_vec(),
    );
    assert!(mallory.wait_acked(1, Duration::from_secs(5)));
    let reader = Raw::connect(broker.port(), "reader-1", Some(("alice", "alice secret")));
    reader.subscribe(&["mqtt-proxy/prod-db/presence"]);
    let presence = reader.collect(Duration::from_millis(500));
    assert_eq!(presence.len(), 1, "one retained presence message");
    assert!(
        String::from_utf8_lossy(&presence[0].1).contains(r#""status":"online""#),
        "a client overwrote an agent's presence: {:?}",
        String::from_utf8_lossy(&presence[0].1)
    );

    // A wrong password.
    let wrong = private_file(dir.path(), "wrong.password", "not alice's\n");
    assert_fails_with(
        proxy_args(&[
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--user",
            "alice",
            "--password-file",
            path_arg(&wrong),
            "prod-db",
        ]),
        WRONG_PASSWORD_LINE,
        "wrong password",
    );
    // No user at all (allow_anonymous false).
    assert_fails_with(
        proxy_args(&["--host", "127.0.0.1", "--port", &port, "prod-db"]),
        ANONYMOUS_REFUSED_LINE,
        "anonymous",
    );

    // The intern reaches web-1 but not prod-db. mosquitto grants the
    // subscriptions and silently drops what the deny rule covers (prod-db's
    // presence towards the intern, the intern's OPEN towards prod-db), so
    // to the intern prod-db looks like a node that does not exist.
    let intern_password = private_file(dir.path(), "intern.password", "intern secret\n");
    check_ssh_echo(
        &via("intern", "web-1", &intern_password),
        &[],
        "intern: ssh to web-1",
    );
    assert_fails_with(
        proxy_args(&[
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--user",
            "intern",
            "--password-file",
            path_arg(&intern_password),
            "prod-db",
        ]),
        &format!(
            "mqtt-proxy: no node 'prod-db' on broker 127.0.0.1:{port} (never announced; \
             mqtt-proxy --list shows the nodes)"
        ),
        "intern: prod-db",
    );
    assert_eq!(
        agents[0].log_text().matches("session opened").count(),
        1,
        "prod-db served alice's session only, not the intern's"
    );
}

#[test]
fn shipped_mosquitto_conf_runs_tls_passwords_acl_and_packet_limit() {
    let _lock = shared();
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let (cert, key) = pki.server("broker", "ca", ServerCert::Localhost);
    let acl = pki.path("acl");
    fs::copy(shipped("acl"), &acl).expect("copy the shipped ACL verbatim");
    let passwd = password_file(
        &pki,
        &[("prod-db", "agent secret"), ("alice", "alice secret")],
    );
    let shipped_conf = fs::read_to_string(shipped("mosquitto.conf")).expect("read mosquitto.conf");
    // Substitute only the port (and bind to loopback) and the file paths.
    let substitutions = [
        ("/etc/mosquitto/certs/ca.pem", path_arg(&ca)),
        ("/etc/mosquitto/certs/broker.pem", path_arg(&cert)),
        ("/etc/mosquitto/certs/broker.key", path_arg(&key)),
        ("/etc/mosquitto/passwd", path_arg(&passwd)),
        ("/etc/mosquitto/acl", path_arg(&acl)),
    ];
    for (placeholder, _) in substitutions {
        assert!(
            shipped_conf.contains(placeholder),
            "{placeholder} in mosquitto.conf"
        );
    }
    assert!(shipped_conf.contains("\nlistener 8883\n"));
    let broker = Broker::start_custom(|port| {
        let mut text = shipped_conf.replace(
            "\nlistener 8883\n",
            &format!("\nlistener {port} 127.0.0.1\n"),
        );
        for (placeholder, path) in substitutions {
            text = text.replace(placeholder, path);
        }
        text
    });
    let sshd = Sshd::start();
    let agent = Agent::start_with(
        &broker,
        &sshd.target(),
        "prod-db",
        SHIPPED_PREFIX,
        &["--tls", "--ca-file", path_arg(&ca), "--user", "prod-db"],
        &[("MQTT_PASSWORD", "agent secret")],
    );
    let url = format!("mqtts://localhost:{}", broker.port());
    let ssh = Ssh::via_proxy_args(
        &sshd,
        "prod-db",
        &[
            "--broker",
            &url,
            "--ca-file",
            path_arg(&ca),
            "--user",
            "alice",
        ],
    );
    check_ssh_echo(
        &ssh,
        &[("MQTT_PASSWORD", "alice secret")],
        "ssh through the shipped config",
    );

    // One publish above the packet limit (any client allowed to open
    // sessions can send it to an agent's topic) disconnects the publisher,
    // not the agent; a maximal frame still passes.
    let big = dir_file(&pki, "big.bin", MAX_PACKET + 1);
    let max_frame = dir_file(&pki, "max.bin", MAX_FRAME);
    let pub_file = |file: &Path| {
        let mut cmd = Command::new(find_tool("mosquitto_pub"));
        cmd.args(["-h", "localhost", "-p", &broker.port().to_string()])
            .args([
                "--cafile",
                path_arg(&ca),
                "-u",
                "alice",
                "-P",
                "alice secret",
            ])
            .args(["-i", "alice-raw", "-q", "1"])
            .args([
                "-t",
                "mqtt-proxy/prod-db/s/alice-raw/up",
                "-f",
                path_arg(file),
            ])
            .stdin(Stdio::null());
        run_with_timeout(&mut cmd, Duration::from_secs(20))
    };
    let out = pub_file(&big);
    assert_ne!(
        out.status.code(),
        Some(0),
        "the broker refused the publish above the packet limit"
    );
    let out = pub_file(&max_frame);
    assert_success(&out, "mosquitto_pub of a maximal frame");
    // A dropped connection would show as a second "agent is online" by the
    // time another session has run.
    check_ssh_echo(
        &ssh,
        &[("MQTT_PASSWORD", "alice secret")],
        "ssh after the oversized publish",
    );
    assert_eq!(
        agent.log_text().matches("agent is online").count(),
        1,
        "the agent kept its one broker connection\n{}",
        agent.log_text()
    );
}

/// `len` random bytes in a file of `pki`'s directory.
fn dir_file(pki: &Pki, name: &str, len: usize) -> PathBuf {
    let path = pki.path(name);
    write_random_file(&path, len as u64);
    path
}
