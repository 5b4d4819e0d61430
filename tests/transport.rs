//! MQTT over WebSocket (ws, wss with a private CA and mutual TLS) against
//! mosquitto's `protocol websockets` listener, every transport through a
//! real HTTP CONNECT proxy (tinyproxy), and the one-line errors for bad
//! input: a proxy that refuses or is not there, a WebSocket path the server
//! answers with 404, a server that does not speak WebSocket, a ws:// URL
//! with TLS options.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use crate::common::*;

/// An agent on `url` (plus `args`), and the [`Ssh`] that reaches it
/// through `mqtt-proxy` on the same URL.
fn agent_and_ssh(url: &str, port: u16, sshd: &Sshd, args: &[&str], tag: &str) -> (Agent, Ssh) {
    let n = names(tag);
    let agent_args = [&["--broker", url][..], args].concat();
    let env = [QUICKACK_LOG];
    let mut agent = Agent::spawn_at(port, &sshd.target(), &n.node, &n.prefix, &agent_args, &env);
    agent.wait_online();
    let proxy_args = [&["--broker", url, "--topic-prefix", &n.prefix][..], args].concat();
    let ssh = Ssh::via_proxy_args(sshd, &n.node, &proxy_args);
    (agent, ssh)
}

fn echo(ssh: &Ssh, what: &str) {
    let out = run(&mut ssh.ssh("echo through-the-tunnel"));
    assert_success(&out, what);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through-the-tunnel\n");
}

fn scp_both_ways(ssh: &Ssh, dir: &Path, len: u64, what: &str) {
    let local = dir.join("f.bin");
    let remote = dir.join("f.remote");
    let back = dir.join("f.back");
    write_random_file(&local, len);
    let out = run(&mut ssh.scp_upload(&local, &remote));
    assert_success(&out, &format!("scp upload ({what})"));
    assert_eq!(sha256(&remote), sha256(&local), "{what}");
    let out = run(&mut ssh.scp_download(&remote, &back));
    assert_success(&out, &format!("scp download ({what})"));
    assert_eq!(sha256(&back), sha256(&local), "{what}");
}

/// `mqtt-proxy ARGS --list` lists exactly `node`, online.
fn list_shows(args: &[&str], node: &str) {
    let out = run(&mut proxy_args(&[args, &["--list"]].concat()));
    assert_success(&out, "--list");
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 1, "{table}");
    assert_eq!(&rows[0][..2], [node, "online"], "{table}");
}

/// Size of the copies over mosquitto's WebSocket listeners: many windows'
/// worth of the tunnel's small WebSocket packets, a second or two each way.
const WS_COPY: u64 = 4 << 20;

/// Size of the copies with one end on WebSocket and the other on the plain
/// listener (before the ends told each other their limits, 1 MiB took
/// 113 s one way).
const MIXED_COPY: u64 = 1 << 20;

/// The largest MQTT packet Debian 12's mosquitto 2.0.11 sends to a
/// WebSocket client in one piece; a larger one goes out 4 KiB per pass of
/// its main loop, up to 100 ms apart (measured with paho-mqtt;
/// docs/brokers.md, "Broker notes"). The tunnel's publishes must stay within it.
const MOSQUITTO_WS_ONE_PIECE: usize = 4112;

/// Bytes of a PUBLISH packet besides topic and payload as mosquitto sends
/// it to an MQTT 5 client of a packet this size: fixed header (1), remaining
/// length (2), topic length (2), packet id (2), property length (1).
const PUBLISH_FRAMING: usize = 8;

/// Every message a tunnel session published under `prefix` (seen by
/// `observer`, subscribed to `prefix/#`) fits in one piece of mosquitto's
/// WebSocket writes, and there were at least `min` of them.
fn assert_ws_sized(observer: &Raw, prefix: &str, min: usize) {
    let seen = observer.drain();
    let sessions: Vec<_> = seen
        .iter()
        .filter(|(topic, _)| topic.starts_with(&format!("{prefix}/")))
        .collect();
    assert!(sessions.len() >= min, "{} messages seen", sessions.len());
    let largest = sessions
        .iter()
        .map(|(topic, payload)| topic.len() + payload.len() + PUBLISH_FRAMING)
        .max()
        .expect("messages seen");
    assert!(
        largest <= MOSQUITTO_WS_ONE_PIECE,
        "a {largest}-byte packet over WebSocket"
    );
}

/// A broker restart in the middle of a session (after the echo and the two
/// copies, the agent's fourth): both ends reconnect, and output written
/// after the restart arrives intact.
fn output_survives_a_broker_restart(
    broker: &mut Broker,
    agent: &mut Agent,
    sshd: &Sshd,
    ssh: &Ssh,
    what: &str,
) {
    let logins = || sshd.log_text().matches("Accepted publickey").count();
    let before = logins();
    let in_flight = Background::start(&mut ssh.ssh("sleep 3; head -c 300000 /dev/zero"));
    agent.wait_log("session opened", 4, Duration::from_secs(10));
    // Restart only once ssh has logged in: the agent logs "session opened"
    // before its ACCEPT reaches the proxy, and a broker that goes away
    // while a session is still opening ends mqtt-proxy with an error, by
    // design (seen in CI: the restart came 1.5 ms after "session opened").
    let logged_in = wait_until(Duration::from_secs(10), || logins() > before);
    assert!(logged_in, "ssh did not log in:\n{}", sshd.log_text());
    broker.restart();
    let out = in_flight.finish(Duration::from_secs(60));
    if !out.status.success() {
        eprintln!("--- agent log ---\n{}", agent.log_text());
    }
    assert_success(&out, &format!("{what} across a broker restart"));
    assert_eq!(out.stdout.len(), 300_000);
}

#[test]
fn websocket_carries_ssh_scp_and_the_listing_across_a_broker_restart() {
    let (mut broker, ws) = Broker::start_ws("");
    let sshd = Sshd::start();
    let url = format!("ws://127.0.0.1:{ws}/mqtt");
    let (mut agent, ssh) = agent_and_ssh(&url, ws, &sshd, &[], "ws");
    echo(&ssh, "ssh over ws");
    agent.assert_quick_acks("ws");
    let dir = scratch_dir("transport");
    // On the broker's plain listener: sees what both ends publish.
    let observer = Raw::connect(broker.port(), "ws-observer", None);
    observer.subscribe(&[&format!("{}/#", agent.prefix)]);
    scp_both_ways(&ssh, dir.path(), WS_COPY, "ws");
    assert_ws_sized(&observer, &agent.prefix, WS_COPY as usize / 4096);
    drop(observer);

    // One end on WebSocket, the other on the plain listener: the plain end
    // must keep to what the WebSocket end receives well (it says so in its
    // frames), in both arrangements.
    let tcp = format!("mqtt://127.0.0.1:{}", broker.port());
    for (agent_url, proxy_url, tag) in [(&tcp, &url, "ws-proxy"), (&url, &tcp, "ws-agent")] {
        let n = names(tag);
        let port = if agent_url == &url { ws } else { broker.port() };
        let mixed = Agent::start_at(
            port,
            &sshd.target(),
            &n.node,
            &n.prefix,
            &["--broker", agent_url],
        );
        let ssh = Ssh::via_proxy_args(
            &sshd,
            &n.node,
            &["--broker", proxy_url, "--topic-prefix", &n.prefix],
        );
        let observer = Raw::connect(broker.port(), &format!("{tag}-observer"), None);
        observer.subscribe(&[&format!("{}/#", n.prefix)]);
        scp_both_ways(&ssh, dir.path(), MIXED_COPY, tag);
        assert_ws_sized(&observer, &n.prefix, MIXED_COPY as usize / 4096);
        drop(mixed);
    }
    list_shows(
        &["--broker", &url, "--topic-prefix", &agent.prefix],
        &agent.node,
    );

    // Both ends reconnect over WebSocket.
    output_survives_a_broker_restart(&mut broker, &mut agent, &sshd, &ssh, "ssh over ws");
    agent.wait_log(AGENT_ONLINE_TEXT, 2, Duration::from_secs(20));
    echo(&ssh, "ssh over ws after the restart");
}

#[test]
fn secure_websocket_verifies_like_mqtts_with_a_private_ca_and_mutual_tls() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let other_ca = pki.ca("other-ca");
    let (cert, key) = pki.server("broker", "ca", ServerCert::Localhost);
    let (client_cert, client_key) = pki.client("alice", "ca", KeyFormat::EcPkcs8);
    let (mut broker, wss) = Broker::start_ws(&tls_listener(&ca, &cert, &key));
    let sshd = Sshd::start();
    let url = format!("wss://localhost:{wss}/mqtt");
    let (mut agent, ssh) = agent_and_ssh(&url, wss, &sshd, &["--ca-file", path_arg(&ca)], "wss");
    echo(&ssh, "ssh over wss");
    agent.assert_quick_acks("wss");
    let dir = scratch_dir("transport");
    scp_both_ways(&ssh, dir.path(), WS_COPY, "wss");
    list_shows(
        &[
            "--broker",
            &url,
            "--ca-file",
            path_arg(&ca),
            "--topic-prefix",
            &agent.prefix,
        ],
        &agent.node,
    );
    // Both ends reconnect over wss.
    output_survives_a_broker_restart(&mut broker, &mut agent, &sshd, &ssh, "ssh over wss");
    // The same errors as mqtts.
    let out = run_with_timeout(
        &mut proxy_args(&["--broker", &url, "--ca-file", path_arg(&other_ca), "n1"]),
        FAILURE_REPORT_BOUND,
    );
    assert_exit_code(&out, PROXY_FAILURE_STATUS, "wss with the wrong CA");
    assert_eq!(
        stderr_text(&out),
        format!(
            "mqtt-proxy: could not connect to broker localhost:{wss}: TLS: the broker's certificate is not \
             signed by CA file {}",
            other_ca.display()
        )
    );

    // Mutual TLS on a wss listener of its own.
    let mtls_conf = format!(
        "{}require_certificate true\n",
        tls_listener(&ca, &cert, &key)
    );
    let (_mtls_broker, mtls) = Broker::start_ws(&mtls_conf);
    let url = format!("wss://localhost:{mtls}/mqtt");
    let auth = [
        "--ca-file",
        path_arg(&ca),
        "--cert-file",
        path_arg(&client_cert),
        "--key-file",
        path_arg(&client_key),
    ];
    let (_agent, ssh) = agent_and_ssh(&url, mtls, &sshd, &auth, "wss-mtls");
    echo(&ssh, "ssh over wss with a client certificate");
    let out = run_with_timeout(
        &mut proxy_args(&["--broker", &url, "--ca-file", path_arg(&ca), "n1"]),
        FAILURE_REPORT_BOUND,
    );
    assert_exit_code(
        &out,
        PROXY_FAILURE_STATUS,
        "wss without a client certificate",
    );
    assert_eq!(
        stderr_text(&out),
        format!(
            "mqtt-proxy: could not connect to broker localhost:{mtls}: TLS: the broker requires a client \
             certificate (--cert-file/--key-file)"
        )
    );
}

#[test]
fn every_transport_works_through_an_http_connect_proxy() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let (cert, key) = pki.server("broker", "ca", ServerCert::Localhost);
    let tls = tls_listener(&ca, &cert, &key);
    let ports = std::cell::Cell::new((0, 0, 0));
    let broker = Broker::start_custom(|port| {
        ports.set((free_port(), free_port(), free_port()));
        let (mqtts, ws, wss) = ports.get();
        format!(
            "allow_anonymous true\npersistence false\nlistener {port} 127.0.0.1\n\
             listener {mqtts} 127.0.0.1\n{tls}\nlistener {ws} 127.0.0.1\nprotocol websockets\n\
             listener {wss} 127.0.0.1\nprotocol websockets\n{tls}\n"
        )
    });
    let (mqtts, ws, wss) = ports.get();
    assert!(wait_until(Duration::from_secs(10), || [mqtts, ws, wss]
        .iter()
        .all(|&p| port_accepts(p))));
    let sshd = Sshd::start();
    let proxy = Tinyproxy::start("");
    let dir = scratch_dir("transport");
    let cases = [
        (
            format!("mqtt://127.0.0.1:{}", broker.port()),
            broker.port(),
            false,
        ),
        (format!("mqtts://localhost:{mqtts}"), mqtts, true),
        (format!("ws://127.0.0.1:{ws}/mqtt"), ws, false),
        (format!("wss://localhost:{wss}/mqtt"), wss, true),
    ];
    let proxy_url = proxy.url();
    for (url, port, with_ca) in &cases {
        let mut args = vec!["--http-proxy", proxy_url.as_str()];
        if *with_ca {
            args.extend(["--ca-file", path_arg(&ca)]);
        }
        let (agent, ssh) = agent_and_ssh(url, *port, &sshd, &args, "via-proxy");
        echo(&ssh, &format!("ssh to {url} through tinyproxy"));
        agent.assert_quick_acks(&format!("{url} through tinyproxy"));
        // The agent's connection and the proxy's, both through tinyproxy.
        let connects = proxy.connects_to(*port);
        assert!(
            connects >= 2,
            "{url}: {connects} CONNECTs in tinyproxy's log\n{}",
            tail(&proxy.log_text(), 20)
        );
    }
    // The tunnel's bytes cross the proxy intact.
    let (url, port, _) = &cases[0];
    let (_agent, ssh) = agent_and_ssh(
        url,
        *port,
        &sshd,
        &["--http-proxy", &proxy.url()],
        "via-proxy-scp",
    );
    scp_both_ways(&ssh, dir.path(), 8 << 20, "through tinyproxy");
}

/// Proxy credentials from the environment (never a flag) reach the proxy
/// as Basic authentication, and a refusal names the status.
#[test]
fn proxy_credentials_come_from_the_environment_and_refusals_name_the_status() {
    let broker = Broker::start("");
    let sshd = Sshd::start();
    let proxy = Tinyproxy::start("BasicAuth alice s3cret\n");
    let n = names("proxy-auth");
    let url = format!("http://alice:s3cret@127.0.0.1:{}", proxy.port());
    let agent = Agent::start_with(
        &broker,
        &sshd.target(),
        &n.node,
        &n.prefix,
        &[],
        &[("MQTT_HTTP_PROXY", &url)],
    );
    assert!(proxy.connects_to(broker.port()) >= 1);
    assert!(!agent.log_text().contains("s3cret"), "{}", agent.log_text());
    let out = run_with_timeout(
        &mut proxy_on(
            broker.port(),
            &n.prefix,
            &["--http-proxy", &proxy.url(), &n.node],
        ),
        FAILURE_REPORT_BOUND,
    );
    assert_exit_code(&out, PROXY_FAILURE_STATUS, "a proxy that wants credentials");
    assert_eq!(
        stderr_text(&out),
        format!(
            "mqtt-proxy: HTTP proxy 127.0.0.1:{} refused to connect to broker 127.0.0.1:{}: HTTP 407 (proxy \
             credentials missing or wrong: MQTT_HTTP_PROXY=http://USER:PASSWORD@…)",
            proxy.port(),
            broker.port()
        )
    );
    let out = run_with_timeout(
        &mut proxy_on(broker.port(), &n.prefix, &["--http-proxy", &url, &n.node]),
        FAILURE_REPORT_BOUND,
    );
    assert_exit_code(&out, PROXY_FAILURE_STATUS, "credentials in a flag");
    assert!(!stderr_text(&out).contains("s3cret"));
    assert_eq!(
        stderr_text(&out),
        "mqtt-proxy: --http-proxy: proxy credentials are not accepted on the command line (others can read \
         it); put the URL in MQTT_HTTP_PROXY or the config file's http-proxy"
    );
}

/// A stand-in HTTP server that answers every request with `reply`.
fn http_server(reply: &'static str) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let port = listener.local_addr().expect("local address").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut buf = [0u8; 4096];
            // Errors: the client went away; serve the next one.
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(reply.as_bytes());
        }
    });
    port
}

#[test]
fn bad_input_gets_one_line_and_exit_255_within_10_s() {
    let broker = Broker::start("");
    let refusing = Tinyproxy::start("ConnectPort 443\n");
    let nothing = free_port();
    let not_found = http_server("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    let b = broker.port();
    let direct = |extra: &[String]| {
        [
            &[
                "--host".to_owned(),
                "127.0.0.1".to_owned(),
                "--port".to_owned(),
                b.to_string(),
            ][..],
            extra,
        ]
        .concat()
    };
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            direct(&["--http-proxy".into(), refusing.url()]),
            format!(
                "mqtt-proxy: HTTP proxy 127.0.0.1:{} refused to connect to broker 127.0.0.1:{b}: HTTP 403",
                refusing.port()
            ),
        ),
        (
            direct(&["--http-proxy".into(), format!("http://127.0.0.1:{nothing}")]),
            format!("mqtt-proxy: could not reach HTTP proxy 127.0.0.1:{nothing}: connection refused"),
        ),
        (
            vec![
                "--broker".into(),
                format!("ws://127.0.0.1:{not_found}/nope"),
            ],
            format!(
                "mqtt-proxy: could not connect to broker 127.0.0.1:{not_found}: the server answered /nope \
                 with HTTP 404 Not Found (check the WebSocket path)"
            ),
        ),
        (
            // mosquitto's plain MQTT listener is no WebSocket server.
            vec!["--broker".into(), format!("ws://127.0.0.1:{b}/mqtt")],
            format!(
                "mqtt-proxy: could not connect to broker 127.0.0.1:{b}: the server does not speak WebSocket"
            ),
        ),
        (
            vec![
                "--broker".into(),
                format!("ws://127.0.0.1:{b}"),
                "--ca-file".into(),
                "/etc/ssl/certs/ca-certificates.crt".into(),
            ],
            "mqtt-proxy: a ws:// broker URL has no TLS, but TLS options are set (--tls, --ca-file, \
             --cert-file, --key-file): use wss:// or drop them"
                .into(),
        ),
    ];
    for (args, line) in cases {
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.push("n1");
        let out = run_with_timeout(&mut proxy_args(&all), FAILURE_REPORT_BOUND);
        assert_exit_code(&out, PROXY_FAILURE_STATUS, &line);
        assert_eq!(stderr_text(&out), line, "{args:?}");
    }
    assert!(refusing.connects_to(b) >= 1);
}
