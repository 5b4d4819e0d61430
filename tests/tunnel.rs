//! End-to-end: real ssh, scp, sftp and rsync through `mqtt-proxy`, a real
//! mosquitto and `mqtt-proxy-agent` to a real sshd. Every test has its own
//! broker, sshd, agent, node id and topic prefix, so they run in parallel.
//! The sshd runs on this machine as this user, so remote paths are local
//! paths inside the test's temporary directory and can be compared directly.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;
use tempfile::TempDir;

/// Size of the big transfers: large enough to exercise flow control and
/// retransmission across many MQTT messages, small enough for a quick suite.
const BIG: u64 = 64 << 20;
/// Bound for a single 64 MiB transfer; only there to turn a stall into a failure.
const BIG_TIMEOUT: Duration = Duration::from_secs(300);

/// One broker, one sshd, one agent serving a unique node, and an [`Ssh`]
/// that reaches the sshd through `mqtt-proxy`.
struct Setup {
    // Dropped in declaration order: the agent goes before what it talks to.
    agent: Agent,
    sshd: Sshd,
    broker: Broker,
    ssh: Ssh,
    dir: TempDir,
}

impl Setup {
    fn new(test: &str) -> Setup {
        Setup::with_broker_conf(test, "")
    }

    fn with_broker_conf(test: &str, broker_conf: &str) -> Setup {
        let broker = Broker::start(broker_conf);
        let sshd = Sshd::start();
        let names = names(test);
        let agent = Agent::start(&broker, sshd.port(), &names.node, &names.prefix);
        let ssh = Ssh::via_proxy(&broker, &names.prefix, &names.node, &sshd);
        let dir = tempfile::Builder::new()
            .prefix("mqtt-proxy-tunnel.")
            .tempdir()
            .expect("create test tempdir");
        Setup {
            agent,
            sshd,
            broker,
            ssh,
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Assert success, attaching every log that could explain a failure.
    fn check(&self, out: &Output, what: &str) {
        self.check_code(out, 0, what);
    }

    fn check_code(&self, out: &Output, code: i32, what: &str) {
        if out.status.code() != Some(code) {
            eprintln!(
                "--- agent log ---\n{}\n--- sshd log ---\n{}\n--- broker log (tail) ---\n{}",
                self.agent.log_text(),
                self.sshd.log_text(),
                tail(&self.broker.log_text(), 60)
            );
        }
        assert_exit_code(out, code, what);
    }

    /// scp `local` to the remote side and back, checking both copies.
    fn scp_roundtrip(&self, local: &Path, timeout: Duration) {
        let len = fs::metadata(local).expect("stat local file").len();
        let remote = local.with_extension("remote");
        let back = local.with_extension("back");

        let t = Instant::now();
        let out = run_with_timeout(&mut self.ssh.scp_upload(local, &remote), timeout);
        self.check(&out, "scp upload");
        eprintln!("scp upload of {len} bytes: {}", rate(len, t.elapsed()));
        assert_files_equal(local, &remote);

        let t = Instant::now();
        let out = run_with_timeout(&mut self.ssh.scp_download(&remote, &back), timeout);
        self.check(&out, "scp download");
        eprintln!("scp download of {len} bytes: {}", rate(len, t.elapsed()));
        assert_files_equal(local, &back);
    }
}

#[test]
fn ssh_runs_commands_and_returns_their_exit_status() {
    let s = Setup::new("ssh_exit_status");

    let out = run(&mut s.ssh.ssh("true"));
    s.check(&out, "ssh true");
    assert_eq!(out.stdout, b"");

    let out = run(&mut s.ssh.ssh("echo hello; exit 7"));
    s.check_code(&out, 7, "ssh 'echo hello; exit 7'");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
}

#[test]
fn scp_64mib_upload_and_download() {
    let s = Setup::new("scp_64mib");
    let local = s.path("big.bin");
    write_random_file(&local, BIG);
    s.scp_roundtrip(&local, BIG_TIMEOUT);
}

#[test]
fn scp_empty_and_one_byte_files() {
    let s = Setup::new("scp_tiny");
    for (name, len) in [("empty.bin", 0), ("one.bin", 1)] {
        let local = s.path(name);
        write_random_file(&local, len);
        s.scp_roundtrip(&local, COMMAND_TIMEOUT);
    }
}

#[test]
fn ssh_stdin_reaches_remote_command_intact() {
    let s = Setup::new("ssh_stdin");
    let local = s.path("stdin.bin");
    let remote = s.path("stdin.remote");
    write_random_file(&local, 8 << 20);

    let mut cmd = s.ssh.ssh(&format!(
        "cat > {}",
        shell_quote(&remote.display().to_string())
    ));
    cmd.stdin(File::open(&local).expect("open stdin file"));
    let out = run(&mut cmd);
    s.check(&out, "ssh 'cat > f' < file");
    assert_files_equal(&local, &remote);
}

#[test]
fn ssh_stdout_delivers_every_byte() {
    let s = Setup::new("ssh_stdout");
    let len = 10_000_000;
    let out = run(&mut s.ssh.ssh(&format!("head -c {len} /dev/zero")));
    s.check(&out, "ssh 'head -c 10000000 /dev/zero'");
    assert_eq!(out.stdout.len(), len);
    assert!(
        out.stdout.iter().all(|&b| b == 0),
        "stdout is not all zeros"
    );
}

#[test]
fn rsync_copies_a_directory_tree_both_ways() {
    let s = Setup::new("rsync_tree");
    let src = s.path("src");
    for dir in ["a/b/c", "a/d", "empty-dir", "e"] {
        fs::create_dir_all(src.join(dir)).expect("create source dirs");
    }
    for (file, len) in [
        ("top.bin", 3 << 20),
        ("empty.txt", 0),
        ("a/one", 1),
        ("a/b/page", 4095),
        ("a/b/c/chunk", 65_536),
        ("a/b/c/odd", 1_000_003),
        ("a/d/empty", 0),
        ("e/mid", 300_000),
    ] {
        write_random_file(&src.join(file), len);
    }
    std::os::unix::fs::symlink("b/page", src.join("a/link-to-page")).expect("create symlink");

    let dst = s.path("dst");
    let out = run(&mut s.ssh.rsync(&[
        "-a",
        &format!("{}/", src.display()),
        &format!("{}/", s.ssh.remote(&dst)),
    ]));
    s.check(&out, "rsync -a upload");
    assert_trees_equal(&src, &dst);
    assert!(dst.join("empty-dir").is_dir(), "empty directory not copied");

    let back = s.path("back");
    let out = run(&mut s.ssh.rsync(&[
        "-a",
        &format!("{}/", s.ssh.remote(&dst)),
        &format!("{}/", back.display()),
    ]));
    s.check(&out, "rsync -a download");
    assert_trees_equal(&src, &back);
}

#[test]
fn sftp_batch_put_and_get() {
    let s = Setup::new("sftp_batch");
    let up = s.path("up.bin");
    let up_remote = s.path("up.remote");
    let down_remote = s.path("down.remote");
    let down = s.path("down.bin");
    write_random_file(&up, 2 << 20);
    write_random_file(&down_remote, (3 << 20) + 17);

    let batch = s.path("batch");
    fs::write(
        &batch,
        format!(
            "put \"{}\" \"{}\"\nget \"{}\" \"{}\"\n",
            up.display(),
            up_remote.display(),
            down_remote.display(),
            down.display()
        ),
    )
    .expect("write sftp batch file");
    let out = run(&mut s.ssh.sftp_batch(&batch));
    s.check(&out, "sftp -b");
    assert_files_equal(&up, &up_remote);
    assert_files_equal(&down_remote, &down);
}

#[test]
fn four_concurrent_sessions_to_one_agent() {
    let s = Setup::new("concurrent");
    let up = s.path("up.bin");
    let up_remote = s.path("up.remote");
    let down_remote = s.path("down.remote");
    let down = s.path("down.bin");
    write_random_file(&up, 16 << 20);
    write_random_file(&down_remote, 16 << 20);
    let count = "for i in 1 2 3; do echo $i; done";

    let outputs: Vec<(&str, Output)> = thread::scope(|scope| {
        let jobs = [
            ("scp upload", s.ssh.scp_upload(&up, &up_remote)),
            ("scp download", s.ssh.scp_download(&down_remote, &down)),
            ("ssh loop 1", s.ssh.ssh(count)),
            ("ssh loop 2", s.ssh.ssh(count)),
        ];
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|(what, mut cmd)| {
                scope.spawn(move || (what, run_with_timeout(&mut cmd, BIG_TIMEOUT)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("session thread panicked"))
            .collect()
    });

    for (what, out) in &outputs {
        s.check(out, what);
        if what.starts_with("ssh loop") {
            assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n2\n3\n", "{what}");
        }
    }
    assert_files_equal(&up, &up_remote);
    assert_files_equal(&down_remote, &down);
}

#[test]
fn a_node_never_announced_is_reported_as_unknown_with_where_to_look() {
    let broker = Broker::start("");
    let prefix = names("unknown_node").prefix;

    let t = Instant::now();
    let out = run_with_timeout(
        &mut proxy_command(&broker, &prefix, "nosuchnode"),
        Duration::from_secs(30),
    );
    let elapsed = t.elapsed();

    assert_exit_code(&out, PROXY_FAILURE_STATUS, "mqtt-proxy nosuchnode");
    assert!(
        elapsed < FAILURE_REPORT_BOUND,
        "offline node reported after {elapsed:?}"
    );
    assert_eq!(
        stderr_text(&out),
        format!(
            "mqtt-proxy: no node 'nosuchnode' on broker 127.0.0.1:{} (never announced; \
             mqtt-proxy --list shows the nodes)",
            broker.port()
        )
    );
    assert_eq!(out.stdout, b"", "nothing may reach ssh on stdout");
}

#[test]
fn refused_target_is_reported() {
    let broker = Broker::start("");
    let names = names("refused_target");
    // Nothing listens here: the agent's connection to it is refused.
    let closed = free_port();
    let target = format!("127.0.0.1:{closed}");
    let agent = Agent::start_with(&broker, &target, &names.node, &names.prefix, &[], &[]);

    let t = Instant::now();
    let out = run_with_timeout(
        &mut proxy_command(&broker, &names.prefix, &names.node),
        Duration::from_secs(30),
    );
    let elapsed = t.elapsed();

    if out.status.code() != Some(PROXY_FAILURE_STATUS) {
        eprintln!("--- agent log ---\n{}", agent.log_text());
    }
    assert_exit_code(
        &out,
        PROXY_FAILURE_STATUS,
        "mqtt-proxy to a refusing target",
    );
    assert!(
        elapsed < FAILURE_REPORT_BOUND,
        "refusal reported after {elapsed:?}"
    );
    let stderr = stderr_text(&out);
    assert_eq!(
        stderr.lines().count(),
        1,
        "stderr is not one line: {stderr:?}"
    );
    let expected = format!(
        "mqtt-proxy: node '{}' refused: sshd at 127.0.0.1:{closed} refused the connection",
        names.node
    );
    assert!(
        stderr.contains(&expected),
        "stderr {stderr:?} does not contain {expected:?}"
    );
    assert_eq!(out.stdout, b"", "nothing may reach ssh on stdout");
}

#[test]
fn small_broker_queues_still_carry_64mib_both_ways() {
    // mosquitto drops QoS 1/2 messages beyond max_queued_messages per client
    // and delays beyond max_inflight_messages: the tunnel must flow-control
    // (or retransmit) rather than rely on a generous broker.
    let s = Setup::with_broker_conf(
        "small_queues",
        "max_queued_messages 10\nmax_inflight_messages 2",
    );
    let local = s.path("big.bin");
    write_random_file(&local, BIG);
    s.scp_roundtrip(&local, BIG_TIMEOUT);
}
