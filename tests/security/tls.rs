//! TLS to the broker: a private CA carrying ssh and scp, the exact line a
//! user reads when a check fails, and client certificates (mutual TLS).

use super::*;

#[test]
fn tls_with_a_private_ca_carries_ssh_and_scp() {
    let _lock = shared();
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let (cert, key) = pki.server("broker", "ca", ServerCert::Localhost);
    let broker = Broker::start(&tls_listener(&ca, &cert, &key));
    let sshd = Sshd::start();
    let n = names("tls_ssh_scp");
    // The agent reaches the broker by IP address (the certificate names
    // 127.0.0.1 too), the proxy by host name through an mqtts:// URL.
    let _agent = Agent::start_with(
        &broker,
        &sshd.target(),
        &n.node,
        &n.prefix,
        &["--tls", "--ca-file", path_arg(&ca)],
        &[],
    );
    let url = format!("mqtts://localhost:{}", broker.port());
    let ssh = Ssh::via_proxy_args(
        &sshd,
        &n.node,
        &[
            "--broker",
            &url,
            "--ca-file",
            path_arg(&ca),
            "--topic-prefix",
            &n.prefix,
        ],
    );
    check_ssh_echo(&ssh, &[], "ssh through TLS");

    let dir = scratch_dir("tls");
    let local = dir.path().join("small.bin");
    let remote = dir.path().join("small.remote");
    let back = dir.path().join("small.back");
    write_random_file(&local, 1 << 20);
    let out = run(&mut clean(ssh.scp_upload(&local, &remote)));
    assert_success(&out, "scp upload through TLS");
    assert_files_equal(&local, &remote);
    let out = run(&mut clean(ssh.scp_download(&remote, &back)));
    assert_success(&out, "scp download through TLS");
    assert_files_equal(&local, &back);
}

#[test]
fn tls_failures_name_the_check_that_failed() {
    let _lock = shared();
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let other_ca = pki.ca("other-ca");
    let (good, good_key) = pki.server("good", "ca", ServerCert::Localhost);
    let (expired, expired_key) = pki.server("expired", "ca", ServerCert::Expired);
    let (elsewhere, elsewhere_key) = pki.server("elsewhere", "ca", ServerCert::Elsewhere);
    let n = names("tls_failures");

    let attempt = |port: u16, ca_file: &Path| {
        let url = format!("mqtts://localhost:{port}");
        proxy_args(&[
            "--broker",
            &url,
            "--ca-file",
            path_arg(ca_file),
            "--topic-prefix",
            &n.prefix,
            &n.node,
        ])
    };

    // (server certificate, key, the CA we trust, what the user reads after
    // "could not connect to broker localhost:PORT: ", or None for success).
    let other_ca_line = format!(
        "TLS: the broker's certificate is not signed by CA file {}",
        other_ca.display()
    );
    let cases: [(&Path, &Path, &Path, Option<&str>, &str); 4] = [
        (
            &good,
            &good_key,
            &other_ca,
            Some(&other_ca_line),
            "wrong CA",
        ),
        // Control: the right CA gets past TLS to the (absent) node.
        (&good, &good_key, &ca, None, "right CA, no agent"),
        (
            &expired,
            &expired_key,
            &ca,
            Some("TLS: the broker's certificate has expired"),
            "expired certificate",
        ),
        (
            &elsewhere,
            &elsewhere_key,
            &ca,
            Some("TLS: the broker's certificate is not valid for host name 'localhost'"),
            "host name mismatch",
        ),
    ];
    for (cert, key, trust, failure, what) in cases {
        let broker = Broker::start(&tls_listener(&ca, cert, key));
        let port = broker.port();
        let line = match failure {
            Some(why) => format!("mqtt-proxy: could not connect to broker localhost:{port}: {why}"),
            None => format!(
                "mqtt-proxy: no node '{}' on broker localhost:{port} (never announced; \
                 mqtt-proxy --list shows the nodes)",
                n.node
            ),
        };
        assert_fails_with(attempt(port, trust), &line, what);
    }
}

#[test]
fn mutual_tls_accepts_client_certificates_and_refuses_clients_without() {
    let _lock = shared();
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let (cert, key) = pki.server("broker", "ca", ServerCert::Localhost);
    let (agent_cert, agent_key) = pki.client("agent", "ca", KeyFormat::RsaPkcs1);
    let (sec1_cert, sec1_key) = pki.client("client-sec1", "ca", KeyFormat::EcSec1);
    let (pkcs8_cert, pkcs8_key) = pki.client("client-pkcs8", "ca", KeyFormat::EcPkcs8);
    let broker = Broker::start(&format!(
        "{}require_certificate true\n",
        tls_listener(&ca, &cert, &key)
    ));
    let sshd = Sshd::start();
    let n = names("mutual_tls");
    let _agent = Agent::start_with(
        &broker,
        &sshd.target(),
        &n.node,
        &n.prefix,
        &[
            "--tls",
            "--ca-file",
            path_arg(&ca),
            "--cert-file",
            path_arg(&agent_cert),
            "--key-file",
            path_arg(&agent_key),
        ],
        &[],
    );
    let url = format!("mqtts://localhost:{}", broker.port());
    for (what, cert, key) in [
        ("EC SEC1 client key", &sec1_cert, &sec1_key),
        ("EC PKCS#8 client key", &pkcs8_cert, &pkcs8_key),
    ] {
        let ssh = Ssh::via_proxy_args(
            &sshd,
            &n.node,
            &[
                "--broker",
                &url,
                "--ca-file",
                path_arg(&ca),
                "--cert-file",
                path_arg(cert),
                "--key-file",
                path_arg(key),
                "--topic-prefix",
                &n.prefix,
            ],
        );
        check_ssh_echo(&ssh, &[], what);
    }

    assert_fails_with(
        proxy_args(&[
            "--broker",
            &url,
            "--ca-file",
            path_arg(&ca),
            "--topic-prefix",
            &n.prefix,
            &n.node,
        ]),
        &format!(
            "mqtt-proxy: could not connect to broker localhost:{}: TLS: the broker requires a client certificate (--cert-file/--key-file)",
            broker.port()
        ),
        "no client certificate",
    );
}
