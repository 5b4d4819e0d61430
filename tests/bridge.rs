//! End-to-end through two bridged brokers: the agent on mosquitto A, the
//! client (`mqtt-proxy`) on mosquitto B, and B carrying the topic tree to and
//! from A over a mosquitto bridge (docs/brokers.md, "Bridged brokers"). Real ssh
//! and scp, then SIGKILL and restart of either broker in the middle of an scp.
//!
//! Every test has its own pair of brokers, sshd, agent, node id and topic
//! prefix, so they run in parallel. Sleeps only create outages of a given
//! length; all other waiting is polling with a deadline.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;
use tempfile::TempDir;

/// Size of the big transfers (the same as the single-broker tests).
const BIG: u64 = 64 << 20;
/// Bound for a single 64 MiB transfer; only there to turn a stall into a failure.
const BIG_TIMEOUT: Duration = Duration::from_secs(300);
/// `scp -l` (Kbit/s) for the interrupted transfers: 100 Mbit/s, so 64 MiB
/// take at least ~5.4 s and a restart reliably lands in the middle, whatever
/// the machine's tunnel throughput (as in resilience/outages.rs).
const SCP_LIMIT_KBIT: &str = "100000";
/// How much of the file must have arrived before the broker is killed: past
/// connection setup, well before the end.
const INTERRUPT_AT: u64 = 4 << 20;
/// How long a killed broker stays down before it is started again.
const OUTAGE: Duration = Duration::from_secs(2);
/// What broker B logs each time its bridge to A is up (mosquitto 2.0 names
/// the bridge's local client `local.<remote client id>`).
const BRIDGE_CONNECTED: &str = "Received CONNACK on connection local.";
/// What broker B logs once A has confirmed the bridge's subscription to
/// the topic tree (after each [`BRIDGE_CONNECTED`]).
const BRIDGE_SUBSCRIBED: &str = "Received SUBACK from local.";
/// How long a bridge may take to (re)connect: one `restart_timeout` cap
/// (10 s, see [`bridge_conf`]) plus margin; only turns a hang into a failure.
const BRIDGE_UP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the agent's retained presence may take to reach broker B once
/// both are up.
const PRESENCE_TIMEOUT: Duration = Duration::from_secs(10);

/// Broker B's bridge to broker A on 127.0.0.1:`a_port`, for the topic tree
/// under `prefix`: docs/brokers.md's example with the address and prefix filled in.
fn bridge_conf(a_port: u16, prefix: &str) -> String {
    [
        // The bridge's name; its client id on A is `<name>.<hostname>`.
        "connection mqtt-proxy-bridge".to_owned(),
        format!("address 127.0.0.1:{a_port}"),
        // Everything the tunnel publishes (presence, session frames), both
        // ways, at the QoS 1 the tunnel publishes with (QoS 0 would let
        // the bridge drop frames; the tunnel would survive that, slowly).
        format!("topic {prefix}/# both 1"),
        // Tell A that this client is a bridge (the default, but it must not
        // be turned off): A then keeps the retain flag on what it forwards, so
        // the agent's presence stays retained on B, and does not echo B's
        // own messages back to it.
        "try_private true".to_owned(),
        // Drop the bridge's session on A when the link breaks. With the
        // default (false) A queues up to max_queued_messages (1000) frames
        // of 64 KiB for a dead B and replays them after B restarts, ahead of
        // the fresh frames; the tunnel resends what was lost on its own.
        "cleansession true".to_owned(),
        // Retry after a lost link 1 s later, backing off to at most 10 s
        // (default 5 s up to 30 s): a tunnel gives up after
        // --resume-timeout (60 s), so waiting 30 s for A to be retried
        // would spend half of it.
        "restart_timeout 1 10".to_owned(),
        // Notice a link that died without a FIN or RST (a network cut, not
        // a crash) within a couple of intervals, ~20 s instead of ~2 min
        // with the default 60 s, well inside --resume-timeout.
        "keepalive_interval 10".to_owned(),
    ]
    .join("\n")
}

/// Broker A (the agent's), broker B (the client's) bridged to A, an sshd,
/// an agent on A, and an [`Ssh`] whose `mqtt-proxy` connects to B.
struct Bridged {
    // Dropped in declaration order: the agent goes before what it talks to.
    agent: Agent,
    sshd: Sshd,
    b: Broker,
    a: Broker,
    names: Names,
    ssh: Ssh,
    dir: TempDir,
}

impl Bridged {
    fn new(test: &str) -> Bridged {
        let a = Broker::start("");
        let names = names(test);
        let b = Broker::start(&bridge_conf(a.port(), &names.prefix));
        let sshd = Sshd::start();
        // The agent comes online only once the bridge has subscribed on A, so
        // its presence reaches B as a message forwarded live, not as the
        // retained copy A sends a new subscription: wait_presence_on_b below
        // then shows that B keeps forwarded presence retained.
        let up = wait_until(BRIDGE_UP_TIMEOUT, || {
            b.log_text().contains(BRIDGE_SUBSCRIBED)
        });
        assert!(
            up,
            "broker B's bridge to A had not subscribed within {BRIDGE_UP_TIMEOUT:?}\n\
             --- broker A log ---\n{}\n--- broker B log ---\n{}",
            a.log_text(),
            b.log_text()
        );
        let agent = Agent::start(&a, sshd.port(), &names.node, &names.prefix);
        let ssh = Ssh::via_proxy(&b, &names.prefix, &names.node, &sshd);
        let dir = tempfile::Builder::new()
            .prefix("mqtt-proxy-bridge.")
            .tempdir()
            .expect("create test tempdir");
        let s = Bridged {
            agent,
            sshd,
            b,
            a,
            names,
            ssh,
            dir,
        };
        s.wait_presence_on_b();
        s
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Wait until a subscriber on B receives the agent's retained presence
    /// saying `online`: the bridge carries A's retained messages to B.
    fn wait_presence_on_b(&self) {
        let topic = format!("{}/{}/presence", self.names.prefix, self.names.node);
        let mut last = String::new();
        let seen = wait_until(PRESENCE_TIMEOUT, || {
            let out = run(self
                .b
                .mosquitto_sub()
                .args(["-t", &topic, "-C", "1", "-W", "1"]));
            last = String::from_utf8_lossy(&out.stdout).into_owned();
            last.contains(r#""status":"online""#)
        });
        assert!(
            seen,
            "no online presence for {topic} on broker B within {PRESENCE_TIMEOUT:?} \
             (last: {last:?})\n{}",
            self.logs()
        );
    }

    /// Every log that could explain a failure.
    fn logs(&self) -> String {
        format!(
            "--- agent log ---\n{}\n--- sshd log (tail) ---\n{}\n--- broker A log (tail) ---\n{}\n\
             --- broker B log (tail) ---\n{}",
            self.agent.log_text(),
            tail(&self.sshd.log_text(), 30),
            tail(&self.a.log_text(), 60),
            tail(&self.b.log_text(), 60)
        )
    }

    fn check(&self, out: &Output, code: i32, what: &str) {
        if out.status.code() != Some(code) {
            eprintln!("{}", self.logs());
        }
        assert_exit_code(out, code, what);
    }

    /// Panic unless `copy` has the same sha256 as `original`.
    fn check_sha256(&self, original: &Path, copy: &Path, what: &str) {
        let (want, got) = (sha256(original), sha256(copy));
        assert_eq!(
            got,
            want,
            "{what}: sha256 of {} ({} bytes) differs from {}",
            copy.display(),
            file_len(copy),
            original.display()
        );
    }

    /// `scp -l SCP_LIMIT_KBIT FROM TO` (one of them remote).
    fn scp_limited(&self, from: &str, to: &str) -> Command {
        self.ssh.scp(&["-l", SCP_LIMIT_KBIT, from, to])
    }

    /// Run `scp` in the background; once [`INTERRUPT_AT`] bytes have reached
    /// `growing` (the file it writes), run `fault` (which returns when the
    /// broker is back), then wait for scp. Returns scp's output, how many
    /// bytes had arrived at the fault, and the wall time of the transfer.
    fn interrupted(
        &mut self,
        scp: &mut Command,
        growing: &Path,
        fault: impl FnOnce(&mut Bridged),
    ) -> (Output, u64, Duration) {
        let t = Instant::now();
        let mut scp = Background::start(scp);
        let mut exited = None;
        let reached = wait_until(Duration::from_secs(60), || {
            exited = scp.try_status();
            exited.is_some() || file_len(growing) >= INTERRUPT_AT
        });
        assert!(
            reached && exited.is_none(),
            "scp did not get {INTERRUPT_AT} bytes across while running (exited: {exited:?}, \
             {} has {} bytes)\n{}",
            growing.display(),
            file_len(growing),
            self.logs()
        );
        let at = file_len(growing);
        fault(self);
        let out = scp.finish(BIG_TIMEOUT);
        assert!(
            at < BIG,
            "the transfer was complete before the fault; lower SCP_LIMIT_KBIT"
        );
        (out, at, t.elapsed())
    }
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// One of the two brokers of a [`Bridged`] setup.
#[derive(Clone, Copy, Debug)]
enum Which {
    /// The agent's broker, the bridge's remote end.
    A,
    /// The client's broker, where the bridge is configured.
    B,
}

/// How long after a broker was started again the tunnel's parts were back.
struct Recovery {
    /// B's bridge to A up.
    bridge: Duration,
    /// The restarted broker's tunnel client connected again: the agent
    /// online on A, or `mqtt-proxy` connected to B.
    client: Duration,
}

/// What B logs when `mqtt-proxy` connects (its client ids start with the
/// default `--client-id-prefix`).
const PROXY_CONNECTED: &str = " as mqtt-proxy-";

/// SIGKILL broker `which` of `s`, keep it down for [`OUTAGE`], start it again
/// on the same port, and wait until B's bridge and the client of the
/// restarted broker are back.
fn kill_and_restart(s: &mut Bridged, which: Which) -> Recovery {
    let bridge_ups = s.b.log_text().matches(BRIDGE_CONNECTED).count() + 1;
    let agent_online = s.agent.log_text().matches(AGENT_ONLINE_TEXT).count() + 1;
    let proxy_connects = s.b.log_text().matches(PROXY_CONNECTED).count() + 1;
    let broker = match which {
        Which::A => &mut s.a,
        Which::B => &mut s.b,
    };
    broker.stop();
    thread::sleep(OUTAGE);
    broker.restart();
    let t = Instant::now();
    let (mut bridge, mut client) = (None, None);
    let back = wait_until(BRIDGE_UP_TIMEOUT, || {
        let b_log = s.b.log_text();
        if bridge.is_none() && b_log.matches(BRIDGE_CONNECTED).count() >= bridge_ups {
            bridge = Some(t.elapsed());
        }
        let client_back = match which {
            Which::A => s.agent.log_text().matches(AGENT_ONLINE_TEXT).count() >= agent_online,
            Which::B => b_log.matches(PROXY_CONNECTED).count() >= proxy_connects,
        };
        if client.is_none() && client_back {
            client = Some(t.elapsed());
        }
        bridge.is_some() && client.is_some()
    });
    assert!(
        back,
        "{BRIDGE_UP_TIMEOUT:?} after broker {which:?} restarted: bridge up after {bridge:?}, \
         its client back after {client:?}\n{}",
        s.logs()
    );
    Recovery {
        bridge: bridge.expect("checked above"),
        client: client.expect("checked above"),
    }
}

#[test]
fn ssh_and_64mib_scp_each_way_through_a_bridge() {
    let s = Bridged::new("bridge_scp");

    let out = run(&mut s
        .ssh
        .ssh("echo through the bridge; echo to stderr >&2; exit 7"));
    s.check(&out, 7, "ssh 'echo ...; exit 7' through the bridge");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through the bridge\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to stderr\n");

    let local = s.path("big.bin");
    let remote = s.path("big.remote");
    let back = s.path("big.back");
    write_random_file(&local, BIG);

    let t = Instant::now();
    let out = run_with_timeout(&mut s.ssh.scp_upload(&local, &remote), BIG_TIMEOUT);
    let up = t.elapsed();
    s.check(&out, 0, "64 MiB scp upload through the bridge");
    s.check_sha256(&local, &remote, "upload through the bridge");

    let t = Instant::now();
    let out = run_with_timeout(&mut s.ssh.scp_download(&remote, &back), BIG_TIMEOUT);
    let down = t.elapsed();
    s.check(&out, 0, "64 MiB scp download through the bridge");
    s.check_sha256(&local, &back, "download through the bridge");

    eprintln!(
        "64 MiB scp through bridged brokers: upload {:.2} s ({}), download {:.2} s ({})",
        up.as_secs_f64(),
        rate(BIG, up),
        down.as_secs_f64(),
        rate(BIG, down)
    );
}

#[test]
fn scp_upload_survives_restart_of_the_client_broker() {
    let mut s = Bridged::new("bridge_restart_b");
    let local = s.path("big.bin");
    let remote = s.path("big.remote");
    write_random_file(&local, BIG);

    let mut scp = s.scp_limited(&local.display().to_string(), &s.ssh.remote(&remote));
    let mut recovery = None;
    let (out, at, elapsed) = s.interrupted(&mut scp, &remote, |s| {
        recovery = Some(kill_and_restart(s, Which::B));
    });
    let recovery = recovery.expect("the fault ran");
    s.check(&out, 0, "scp upload across a restart of broker B");
    s.check_sha256(&local, &remote, "upload across a restart of broker B");
    eprintln!(
        "64 MiB scp -l {SCP_LIMIT_KBIT} upload through bridged brokers, broker B (the \
         client's) SIGKILLed after {at} bytes and restarted {OUTAGE:?} later: {:.2} s; \
         after the restart the bridge was up in {:.2} s, mqtt-proxy connected in {:.2} s",
        elapsed.as_secs_f64(),
        recovery.bridge.as_secs_f64(),
        recovery.client.as_secs_f64()
    );
}

#[test]
fn scp_download_survives_restart_of_the_agent_broker() {
    let mut s = Bridged::new("bridge_restart_a");
    let remote = s.path("big.remote");
    let local = s.path("big.local");
    write_random_file(&remote, BIG);

    let mut scp = s.scp_limited(&s.ssh.remote(&remote), &local.display().to_string());
    let mut recovery = None;
    let (out, at, elapsed) = s.interrupted(&mut scp, &local, |s| {
        recovery = Some(kill_and_restart(s, Which::A));
    });
    let recovery = recovery.expect("the fault ran");
    s.check(&out, 0, "scp download across a restart of broker A");
    s.check_sha256(&remote, &local, "download across a restart of broker A");
    eprintln!(
        "64 MiB scp -l {SCP_LIMIT_KBIT} download through bridged brokers, broker A (the \
         agent's) SIGKILLed after {at} bytes and restarted {OUTAGE:?} later: {:.2} s; \
         after the restart the bridge was up in {:.2} s, the agent online in {:.2} s",
        elapsed.as_secs_f64(),
        recovery.bridge.as_secs_f64(),
        recovery.client.as_secs_f64()
    );
}
