//! Canary for the test harness itself: real sshd reached directly through
//! `nc`, and a real mosquitto carrying a message. If these fail, the tunnel
//! tests cannot say anything about the tunnel.

use std::time::Duration;

use crate::common::*;

#[test]
fn sshd_accepts_the_client_key_through_nc() {
    let sshd = Sshd::start();
    let ssh = Ssh::direct(&sshd);

    let out = run(&mut ssh.ssh("true"));
    assert_success(&out, &format!("ssh true (sshd log:\n{})", sshd.log_text()));

    let out = run(&mut ssh.ssh("echo hello; exit 7"));
    assert_exit_code(&out, 7, "ssh 'echo hello; exit 7'");
    assert_eq!(out.stdout, b"hello\n");
}

#[test]
fn scp_and_rsync_work_through_nc() {
    let sshd = Sshd::start();
    let ssh = Ssh::direct(&sshd);
    let dir = tempfile::tempdir().expect("tempdir");
    let local = dir.path().join("local.bin");
    let remote = dir.path().join("remote.bin");
    let back = dir.path().join("back.bin");
    write_random_file(&local, 100_000);

    assert_success(&run(&mut ssh.scp_upload(&local, &remote)), "scp upload");
    assert_success(&run(&mut ssh.scp_download(&remote, &back)), "scp download");
    assert_files_equal(&local, &back);
    assert_eq!(sha256(&local), sha256(&back));

    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("a/b")).expect("mkdir");
    write_random_file(&src.join("a/b/x"), 1234);
    let dst = dir.path().join("dst");
    let out = run(&mut ssh.rsync(&[
        "-a",
        &format!("{}/", src.display()),
        &format!("{}/", ssh.remote(&dst)),
    ]));
    assert_success(&out, "rsync");
    assert_trees_equal(&src, &dst);
}

#[test]
fn broker_carries_a_message_and_restarts_on_its_port() {
    let mut broker = Broker::start("max_queued_messages 10\nmax_inflight_messages 2");
    let topic = format!("{}/canary", names("broker_canary").prefix);

    // A retained message is delivered to a subscriber that arrives later,
    // so publish-then-subscribe needs no synchronisation.
    let out = run(broker
        .mosquitto_pub()
        .args(["-r", "-q", "1", "-t", &topic, "-m", "ping"]));
    assert_success(&out, "mosquitto_pub");
    let out = run(broker
        .mosquitto_sub()
        .args(["-t", &topic, "-C", "1", "-W", "5"]));
    assert_success(&out, "mosquitto_sub");
    assert_eq!(out.stdout, b"ping\n");

    let port = broker.port();
    broker.stop();
    assert!(
        wait_until(Duration::from_secs(5), || !port_accepts(port)),
        "killed broker still accepts"
    );
    broker.restart();
    assert_eq!(broker.port(), port);
    let out = run(broker
        .mosquitto_pub()
        .args(["-q", "1", "-t", &topic, "-m", "again"]));
    assert_success(&out, "mosquitto_pub after restart");
}
