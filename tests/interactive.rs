//! End-to-end, issue 23 ("Interactive first: a keystroke never waits behind
//! a copy"): all sessions of a node share the agent's one broker
//! connection, and on a slow link with a deep buffer (a cellular uplink) a
//! keystroke used to wait seconds behind the bytes a copy had queued there.
//!
//! The agent's broker link goes through [`PaceRelay`] (each direction paced
//! to [`RATE`] with [`BUFFER_SECS`] of buffer); a real ssh session runs
//! `cat`, and while a copy runs through the same node, upload and download,
//! each keystroke is written and its echo awaited. The assertion is on
//! order, not on time: how far the copy got, as its receiving end sees it,
//! between a keystroke's write and its echo. Machine load slows both alike;
//! only a queue in front of the keystroke makes the copy move far meanwhile.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::common::pace::PaceRelay;
use crate::common::relay::Relay;
use crate::common::*;
use tempfile::TempDir;

/// The link: 256 KiB/s each way, the slower row of
/// `scripts/bench-interactive`, where the old behaviour was worst (a
/// keystroke waited 3-6 s during an scp: docs/benchmarks.md).
const RATE: u64 = 256 << 10;
/// A cellular uplink's buffer: 4 s of the link, 1 MiB at [`RATE`].
const BUFFER_SECS: f64 = 4.0;
/// Each copy: 8 s of the link, twice the buffer, so that a copy that fills
/// the buffer keeps it full while keystrokes are made; both copies and the
/// setup stay under 20 s.
const COPY: u64 = 2 << 20;
/// The most the copy may move between a keystroke's write and its echo.
/// The old behaviour kept the relay's buffer full (1 MiB, 4 s of the link)
/// and a keystroke waited behind all of it: the copy moved about 1 MiB
/// meanwhile. The delay-based window keeps the queue near 25 ms (6.4 KiB
/// at this rate); on top of that come the chunk on the wire (up to 64 KiB),
/// ssh's channel packets (32 KiB), and how coarsely the receiving end
/// reports progress (the upload's counter reads up to 64 KiB at a time):
/// about 170 KiB in the worst case. 256 KiB is 1 s of the link: a quarter
/// of the old wait, and above anything the new one should reach. Measured
/// on a 2-core machine, debug build: the new code let the copy move at
/// most 32 KiB (one ssh channel packet) past a keystroke; the window before
/// it (e8134b8's `src/stream/`) 352 KiB to 1 MiB, failing in both
/// directions.
const BOUND: u64 = 256 << 10;
/// Keystrokes made and checked before the copy starts: the session is open
/// and warm.
const WARMUP: usize = 5;
/// A typist's pause between keystrokes (as `scripts/bench-interactive`'s
/// 20 ms); it only spaces the input out, nothing waits for it.
const GAP: Duration = Duration::from_millis(20);
/// Keystrokes that must fall inside the copy (written after its first byte
/// arrived, before its last) for the run to say anything; a working tunnel
/// makes hundreds, one every [`GAP`] plus a round trip.
const MIN_DURING: usize = 3;
/// Turns a lost echo into a failure (the old behaviour's longest wait in
/// the benchmark was 6 s).
const ECHO_TIMEOUT: Duration = Duration::from_secs(30);
/// Turns a stalled copy into a failure; the copy takes about 8 s.
const COPY_TIMEOUT: Duration = Duration::from_secs(90);

/// A broker, an sshd, the agent behind the paced link, and an [`Ssh`]
/// through `mqtt-proxy` (whose own broker link is not paced).
struct Setup {
    // Dropped in declaration order: the agent goes before what it talks to.
    agent: Agent,
    _relay: PaceRelay,
    _far: Option<Relay>,
    sshd: Sshd,
    broker: Broker,
    ssh: Ssh,
    dir: TempDir,
}

impl Setup {
    fn new(test: &str) -> Setup {
        Setup::with(test, None)
    }

    /// With `far` more each way between the paced link and the broker:
    /// the agent's link is a far one then.
    fn with(test: &str, far: Option<Duration>) -> Setup {
        let broker = Broker::start("");
        let sshd = Sshd::start();
        let names = names(test);
        let far = far.map(|latency| {
            let relay = Relay::start(broker.port());
            relay.set_latency(latency);
            relay
        });
        let upstream = far.as_ref().map_or(broker.port(), Relay::port);
        let relay = PaceRelay::start(upstream, RATE, BUFFER_SECS);
        let agent = Agent::start_at(
            relay.port(),
            &sshd.target(),
            &names.node,
            &names.prefix,
            &[],
        );
        let ssh = Ssh::via_proxy(&broker, &names.prefix, &names.node, &sshd);
        Setup {
            agent,
            _relay: relay,
            _far: far,
            sshd,
            broker,
            ssh,
            dir: scratch_dir("interactive"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The logs that could explain a failure.
    fn logs(&self) -> String {
        format!(
            "--- agent log (tail) ---\n{}\n--- sshd log (tail) ---\n{}\n--- broker log (tail) ---\n{}",
            tail(&self.agent.log_text(), 40),
            tail(&self.sshd.log_text(), 20),
            tail(&self.broker.log_text(), 20)
        )
    }
}

/// How far a copy has got, as its receiving end sees it.
#[derive(Default)]
struct Progress {
    bytes: AtomicU64,
    ended: AtomicBool,
}

impl Progress {
    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }

    fn ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }
}

/// `ssh node cat`: each byte written comes back.
struct Keys {
    session: Background,
    stdin: ChildStdin,
    echoes: mpsc::Receiver<u8>,
    sent: Vec<u8>,
    echoed: Vec<u8>,
}

impl Keys {
    fn open(s: &Setup) -> Keys {
        Keys::start(s.ssh.ssh("cat"))
    }

    /// [`Keys::open`], its `mqtt-proxy` logging with the filter `log`.
    fn open_logging(s: &Setup, log: &str) -> Keys {
        let mut cmd = s.ssh.ssh("cat");
        cmd.env("RUST_LOG", log);
        Keys::start(cmd)
    }

    fn start(mut cmd: Command) -> Keys {
        cmd.stdin(Stdio::piped());
        let mut session = Background::start_streaming(&mut cmd);
        let stdin = session.take_stdin();
        let mut stdout = session.take_stdout();
        let (tx, echoes) = mpsc::channel();
        thread::spawn(move || {
            let mut byte = [0u8];
            // Ends at EOF or a read error; the test then misses an echo.
            while let Ok(1) = stdout.read(&mut byte) {
                // Err: the test has given up on this session already.
                if tx.send(byte[0]).is_err() {
                    return;
                }
            }
        });
        let mut keys = Keys {
            session,
            stdin,
            echoes,
            sent: Vec::new(),
            echoed: Vec::new(),
        };
        for _ in 0..WARMUP {
            keys.type_one(&Progress::default());
        }
        keys
    }

    /// Write one keystroke, wait for its echo; the copy's progress at the
    /// write and at the echo.
    fn type_one(&mut self, copy: &Progress) -> Move {
        let key = b'a' + (self.sent.len() % 26) as u8;
        let before = copy.bytes();
        let written = Instant::now();
        self.stdin
            .write_all(&[key])
            .and_then(|()| self.stdin.flush())
            .expect("write a keystroke to ssh");
        self.sent.push(key);
        let echo = self.echoes.recv_timeout(ECHO_TIMEOUT).unwrap_or_else(|_| {
            panic!(
                "no echo of keystroke {} within {ECHO_TIMEOUT:?}",
                self.sent.len()
            )
        });
        let after = copy.bytes();
        self.echoed.push(echo);
        Move {
            before,
            after,
            echo: written.elapsed(),
        }
    }

    /// End the session: `cat` sees EOF, ssh exits 0, and every echo was
    /// the keystroke sent, in order, nothing more. Its stderr: `mqtt-proxy`'s
    /// log.
    fn close(self, s: &Setup) -> String {
        drop(self.stdin);
        let out = self.session.finish(ECHO_TIMEOUT);
        if out.status.code() != Some(0) {
            eprintln!("{}", s.logs());
        }
        assert_exit_code(&out, 0, "ssh node cat");
        let mut echoed = self.echoed;
        echoed.extend(self.echoes.try_iter());
        assert_eq!(
            String::from_utf8_lossy(&echoed),
            String::from_utf8_lossy(&self.sent),
            "the echoes are not the keystrokes in order"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// One keystroke typed during a copy: the copy's progress (bytes the
/// receiving end counted) at the keystroke's write and at its echo, and
/// how long the echo took (for the failure message: a wait that long, or
/// bytes counted in a burst).
#[derive(Debug, Clone, Copy)]
struct Move {
    before: u64,
    after: u64,
    echo: Duration,
}

impl Move {
    fn moved(&self) -> u64 {
        self.after - self.before
    }
}

/// Type while the copy runs; the copy's progress at each keystroke's write
/// and echo.
fn type_during(keys: &mut Keys, copy: &Progress, size: u64) -> Vec<Move> {
    let deadline = Instant::now() + COPY_TIMEOUT;
    let mut moves = Vec::new();
    while !copy.ended() && copy.bytes() < size {
        assert!(
            Instant::now() < deadline,
            "the copy did not end within {COPY_TIMEOUT:?} ({} of {size} bytes)",
            copy.bytes()
        );
        moves.push(keys.type_one(copy));
        thread::sleep(GAP);
    }
    moves
}

/// The order assertion: no keystroke's echo came after the copy moved more
/// than [`BOUND`] bytes past its write, and enough keystrokes fell inside
/// the copy for that to mean something.
fn assert_keys_first(what: &str, moves: &[Move], size: u64, s: &Setup) {
    let during: Vec<u64> = moves
        .iter()
        .filter(|m| (1..size).contains(&m.before))
        .map(Move::moved)
        .collect();
    let mut sorted = during.clone();
    sorted.sort_unstable();
    let worst = sorted.last().copied().unwrap_or(0);
    eprintln!(
        "{what}: {} keystrokes during the copy; the copy moved meanwhile: median {} bytes, max {worst}",
        during.len(),
        sorted.get(sorted.len() / 2).copied().unwrap_or(0),
    );
    let late: Vec<(usize, u64, Duration)> = moves
        .iter()
        .enumerate()
        .filter(|(_, m)| m.moved() > BOUND)
        .map(|(i, m)| (i, m.moved(), m.echo))
        .collect();
    if !late.is_empty() || during.len() < MIN_DURING {
        eprintln!("{}", s.logs());
    }
    assert!(
        late.is_empty(),
        "{what}: {} of {} keystrokes waited while the copy moved more than {BOUND} bytes \
         (keystroke, bytes moved, echo): {late:?}",
        late.len(),
        moves.len()
    );
    assert!(
        during.len() >= MIN_DURING,
        "{what}: only {} keystrokes fell inside the copy (at least {MIN_DURING})",
        during.len()
    );
}

/// A reader thread that ends the progress when it returns.
fn watch<T: Send + 'static>(
    progress: &Arc<Progress>,
    read: impl FnOnce(&Progress) -> T + Send + 'static,
) -> JoinHandle<T> {
    let progress = progress.clone();
    thread::spawn(move || {
        let result = read(&progress);
        progress.ended.store(true, Ordering::SeqCst);
        result
    })
}

/// The upload's receiving end: writes stdin to the file named by its
/// argument and prints the running total, 0 once it is ready to read and
/// then after every read. Builtins only, so Debian's essential perl-base
/// runs it.
const COUNT_TO_FILE: &str = r#"open(my $f, ">", $ARGV[0]) or die "$ARGV[0]: $!"; $| = 1; my ($n, $t) = (0, 0); print "0\n"; while (($n = sysread(STDIN, my $b, 65536)) > 0) { print $f $b or die "write: $!"; $t += $n; print "$t\n" } defined $n or die "read: $!"; close $f or die "close: $!""#;

/// `ssh node 'perl COUNT_TO_FILE REMOTE' < LOCAL` with keystrokes beside it.
fn upload(s: &Setup, keys: &mut Keys) {
    let local = s.path("up.bin");
    let remote = s.path("up.remote");
    write_random_file(&local, COPY);
    let mut cmd = s.ssh.ssh(&format!(
        "perl -e {} {}",
        shell_quote(COUNT_TO_FILE),
        shell_quote(path_arg(&remote))
    ));
    cmd.stdin(Stdio::piped());
    let mut copy = Background::start_streaming(&mut cmd);
    let mut stdin = copy.take_stdin();
    let stdout = copy.take_stdout();
    let source = local.clone();
    // The copy starts once the receiving end counts: bytes sent before
    // it ran would wait unread at the node and be counted in one burst
    // when it started (a keystroke then saw the copy "move" 768 KiB while
    // the machine was busy compiling).
    let (ready, counting) = mpsc::channel();
    let feeder = thread::spawn(move || {
        if counting.recv().is_err() {
            return; // The receiving end never started: a short copy.
        }
        let mut file = File::open(&source).expect("open the upload's source");
        // An error shows as a short copy, which the assertions below name.
        let _ = std::io::copy(&mut file, &mut stdin);
    });
    let progress = Arc::new(Progress::default());
    let reader = watch(&progress, move |p| {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let total = line.parse().expect("the remote counter prints totals");
            p.bytes.store(total, Ordering::SeqCst);
            let _ = ready.send(());
        }
    });
    let moves = type_during(keys, &progress, COPY);
    feeder.join().expect("the upload's feeder");
    reader.join().expect("the upload's reader");
    let out = copy.finish(COPY_TIMEOUT);
    if out.status.code() != Some(0) {
        eprintln!("{}", s.logs());
    }
    assert_exit_code(&out, 0, "ssh node 'perl (count to a file)' < up.bin");
    assert_eq!(progress.bytes(), COPY, "the remote counter's last total");
    assert_files_equal(&local, &remote);
    assert_keys_first("upload", &moves, COPY, s);
}

/// `ssh node cat REMOTE` with keystrokes beside it.
fn download(s: &Setup, keys: &mut Keys) {
    let remote = s.path("down.remote");
    write_random_file(&remote, COPY);
    let mut copy = Background::start_streaming(
        &mut s
            .ssh
            .ssh(&format!("cat {}", shell_quote(path_arg(&remote)))),
    );
    let mut stdout = copy.take_stdout();
    let progress = Arc::new(Progress::default());
    let reader = watch(&progress, move |p| {
        let mut received = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        // Ends at EOF; a read error shows as a short copy.
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            received.extend_from_slice(&buf[..n]);
            p.bytes.store(received.len() as u64, Ordering::SeqCst);
        }
        received
    });
    let moves = type_during(keys, &progress, COPY);
    let received = reader.join().expect("the download's reader");
    let out = copy.finish(COPY_TIMEOUT);
    if out.status.code() != Some(0) {
        eprintln!("{}", s.logs());
    }
    assert_exit_code(&out, 0, "ssh node cat down.remote");
    let expected = fs::read(&remote).expect("read the download's source");
    assert_eq!(received.len(), expected.len(), "bytes downloaded");
    assert!(received == expected, "the download differs from its source");
    assert_keys_first("download", &moves, COPY, s);
}

#[test]
fn a_keystroke_never_waits_behind_a_copy_on_a_slow_deep_buffered_link() {
    let s = Setup::new("interactive");
    let mut keys = Keys::open(&s);
    upload(&s, &mut keys);
    download(&s, &mut keys);
    keys.close(&s);
}

/// The proxies' log filter in [`two_uploads_share_their_drains_through_the_agent`]:
/// what the agent tells them of the drains shows at debug.
const DRAINS_LOG: &str = "info,mqtt_proxy::stream::drains=debug";

/// Two uploads to one node come from two `mqtt-proxy` processes, which
/// share their drains through the agent (`src/stream/drains.rs`): each
/// reports its drains in a sealed PAD, and once both reported drains of
/// one moment the agent tells each what they measured. Over the real
/// broker and the paced link both proxies hear it, and both copies arrive
/// whole. (How evenly the two share the link is the benchmark's:
/// `FAIR=1 scripts/bench-interactive`.)
#[test]
fn two_uploads_share_their_drains_through_the_agent() {
    let s = Setup::new("drains");
    let copies: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let local = s.path(&format!("{name}.bin"));
            let remote = s.path(&format!("{name}.remote"));
            write_random_file(&local, COPY);
            let source = File::open(&local).expect("open the upload's source");
            let mut cmd = s
                .ssh
                .ssh(&format!("cat > {}", shell_quote(path_arg(&remote))));
            cmd.env("RUST_LOG", DRAINS_LOG).stdin(source);
            (local, remote, Background::start(&mut cmd))
        })
        .collect();
    for (local, remote, copy) in copies {
        let out = copy.finish(COPY_TIMEOUT);
        if out.status.code() != Some(0) {
            eprintln!("{}", s.logs());
        }
        assert_exit_code(&out, 0, "ssh node 'cat > REMOTE' < LOCAL");
        assert_files_equal(&local, &remote);
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(
            log.contains("the peer's drains"),
            "the proxy heard of no drains from the agent:\n{}\n{}",
            tail(&log, 20),
            s.logs()
        );
    }
}

/// How much farther the agent is from the broker in
/// [`the_agent_asks_the_keystrokes_for_pads_during_a_download`], each way:
/// a far link, as a host behind a cellular uplink has.
const FAR: Duration = Duration::from_millis(10);

/// The keystrokes' `mqtt-proxy` log filter there: its peer's asks show at
/// debug, and the session's count of PADs at its end.
const PADS_LOG: &str = "info,mqtt_proxy::stream::pad_ask=debug";

/// While a download goes out over the agent's far link, the agent's acks
/// to the broker wait behind the copy's chunks there, and the broker's
/// Nagle holds each keystroke behind them. So the agent asks the sessions
/// that send it small frames (the keystrokes') to pad theirs
/// (`src/stream/pad_ask.rs`), and their `mqtt-proxy` pads while the asks
/// hold (`tunnel::pad_after`). Over the real broker: the keystrokes' proxy
/// hears the ask (a sealed PAD its router must let through), it sent
/// PADs by the session's end, and the keystrokes still come first. Which
/// rule padded which frame is the unit tests' (`src/tunnel/tests/pads.rs`):
/// the proxy also pads a keystroke the broker would hold anyway.
#[test]
fn the_agent_asks_the_keystrokes_for_pads_during_a_download() {
    let s = Setup::with("pads", Some(FAR));
    let mut keys = Keys::open_logging(&s, PADS_LOG);
    download(&s, &mut keys);
    let log = keys.close(&s);
    assert!(
        log.contains("the peer asks us to pad"),
        "the keystrokes' proxy heard no ask for pads:\n{}\n{}",
        tail(&log, 20),
        s.logs()
    );
    let (sessions, pads) = session_counts(&log, "pads");
    assert!(
        sessions == 1 && pads > 0,
        "the keystrokes' proxy sent no PADs ({sessions} sessions closed, {pads} PADs):\n{}",
        tail(&log, 20)
    );
}
