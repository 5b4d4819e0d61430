//! Keystroke round trips for benchmarks.
//!
//! - `rtt_probe echo`: a TCP echo server on 127.0.0.1 (a free port, printed
//!   as the first line on stdout), standing in for sshd behind the agent.
//! - `rtt_probe measure COUNT GAP_MS -- COMMAND ARGS...`: runs COMMAND (the
//!   tunnel, `mqtt-proxy NODE`, or the baseline, `nc 127.0.0.1 PORT`) with
//!   piped stdin/stdout, writes one byte, waits for it to come back, sleeps
//!   GAP_MS (a typist's pause, which also lets delayed TCP acks expire as
//!   they do between keystrokes), COUNT times, and prints the median, the
//!   10th, 90th and 99th percentile and the longest round trip in
//!   milliseconds, on one line separated by spaces. With
//!   `RTT_PROBE_READY=FILE` it creates FILE once the warm-up round trips
//!   are done (the session is open), for a benchmark that starts a copy
//!   beside the keystrokes only then; with `RTT_PROBE_STOP=FILE` it stops
//!   (COUNT is then the most) once FILE exists, so that only keystrokes
//!   made while the copy ran are counted; with `RTT_PROBE_TRACE=FILE` it
//!   appends every round trip to FILE (when, and how long).
//! - `rtt_probe type COUNT GAP_MS -- COMMAND ARGS...`: the same, but a
//!   typist who does not wait for the echo: after the warm-up it writes
//!   one byte every GAP_MS whatever came back, and each byte's time is
//!   from its write to its echo. Over a path slower than GAP_MS, several
//!   keystrokes are in flight at once, as when a person types over a far
//!   link.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::{timeout, Instant};

/// Longest wait for one echo before the measurement is declared broken.
const ECHO_TIMEOUT: Duration = Duration::from_secs(10);
/// Round trips made and discarded first: the session open and its first
/// frames are not keystrokes.
const WARMUP: usize = 5;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("echo") => echo().await,
        Some("measure") if args.len() > 4 && args[3] == "--" => {
            let count: usize = args[1].parse().context("COUNT")?;
            let gap = Duration::from_millis(args[2].parse().context("GAP_MS")?);
            measure(count, gap, &args[4..]).await
        }
        Some("type") if args.len() > 4 && args[3] == "--" => {
            let count: usize = args[1].parse().context("COUNT")?;
            let gap = Duration::from_millis(args[2].parse().context("GAP_MS")?);
            type_ahead(count, gap, &args[4..]).await
        }
        _ => {
            bail!("usage: rtt_probe echo | rtt_probe measure|type COUNT GAP_MS -- COMMAND ARGS...")
        }
    }
}

async fn echo() -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    loop {
        let (mut s, _) = listener.accept().await?;
        s.set_nodelay(true)?;
        tokio::spawn(async move {
            let (mut r, mut w) = s.split();
            // An error ends this connection only.
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
    }
}

/// `cmd` running with piped stdin and stdout (killed when dropped).
fn spawn_piped(cmd: &[String]) -> Result<(Child, ChildStdin, ChildStdout)> {
    let mut child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {}", cmd[0]))?;
    let stdin = child.stdin.take().context("stdin")?;
    let stdout = child.stdout.take().context("stdout")?;
    Ok((child, stdin, stdout))
}

/// Write `key` and wait for it to come back: how long that took.
async fn round_trip(stdin: &mut ChildStdin, stdout: &mut ChildStdout, key: u8) -> Result<Duration> {
    let start = Instant::now();
    stdin.write_all(&[key]).await?;
    stdin.flush().await?;
    read_echo(stdout, key).await?;
    Ok(start.elapsed())
}

/// Read the next byte, which must be `key`'s echo.
async fn read_echo(stdout: &mut ChildStdout, key: u8) -> Result<()> {
    let mut byte = [0u8; 1];
    timeout(ECHO_TIMEOUT, stdout.read_exact(&mut byte))
        .await
        .context("no echo within 10 s")??;
    ensure!(
        byte[0] == key,
        "echo returned {:?}, sent {:?}",
        byte[0],
        key
    );
    Ok(())
}

/// The `i`th key a probe types: a to z, over and over.
fn key(i: usize) -> u8 {
    b'a' + (i % 26) as u8
}

async fn measure(count: usize, gap: Duration, cmd: &[String]) -> Result<()> {
    let (mut child, mut stdin, mut stdout) = spawn_piped(cmd)?;
    let mut samples = Vec::with_capacity(count);
    let stop = std::env::var_os("RTT_PROBE_STOP");
    // With RTT_PROBE_TRACE=FILE, every round trip is appended to FILE as
    // "ms since the first timed keystroke, round trip in ms", and a line
    // "--" ends the run: where in a copy the slow ones fall.
    let mut trace = Vec::new();
    let began = Instant::now();
    for i in 0..WARMUP + count {
        if i > WARMUP
            && stop
                .as_ref()
                .is_some_and(|f| std::path::Path::new(f).exists())
        {
            break;
        }
        let start = Instant::now();
        let rtt = round_trip(&mut stdin, &mut stdout, key(i)).await?;
        if i >= WARMUP {
            samples.push(rtt.as_secs_f64() * 1e3);
            trace.push((start.duration_since(began), rtt));
        } else if i + 1 == WARMUP {
            if let Some(ready) = std::env::var_os("RTT_PROBE_READY") {
                // The session is open and warm: whoever waits may start
                // what the keystrokes are to compete with.
                std::fs::write(ready, b"").context("RTT_PROBE_READY")?;
            }
        }
        tokio::time::sleep(gap).await;
    }
    drop(stdin);
    if let Some(file) = std::env::var_os("RTT_PROBE_TRACE") {
        use std::fmt::Write as _;
        let first = trace.first().map_or(Duration::ZERO, |t| t.0);
        let mut text = String::new();
        for (at, rtt) in &trace {
            let _ = writeln!(
                text,
                "{:.0} {:.1}",
                (*at - first).as_secs_f64() * 1e3,
                rtt.as_secs_f64() * 1e3
            );
        }
        text.push_str("--\n");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .context("RTT_PROBE_TRACE")?;
        std::io::Write::write_all(&mut f, text.as_bytes()).context("RTT_PROBE_TRACE")?;
    }
    // The command may take a moment to close its session; we have our figures.
    let _ = timeout(Duration::from_secs(3), child.wait()).await;
    print_stats(samples);
    Ok(())
}

/// The median, 10th, 90th and 99th percentile and the longest of
/// `samples` (ms), on one line.
fn print_stats(mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    println!(
        "{:.3} {:.3} {:.3} {:.3} {:.3}",
        pct(0.5),
        pct(0.1),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
}

/// `rtt_probe type`: [`WARMUP`] round trips as `measure` makes them, then
/// COUNT bytes written GAP_MS apart without waiting for their echoes.
async fn type_ahead(count: usize, gap: Duration, cmd: &[String]) -> Result<()> {
    ensure!(count > 0, "COUNT must be at least 1");
    let (mut child, mut stdin, mut stdout) = spawn_piped(cmd)?;
    for i in 0..WARMUP {
        round_trip(&mut stdin, &mut stdout, key(i)).await?;
    }
    // The writer tells the reader when each byte went.
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel();
    let writer = tokio::spawn(async move {
        let mut next = Instant::now();
        for i in 0..count {
            tokio::time::sleep_until(next).await;
            next += gap;
            let at = Instant::now();
            stdin.write_all(&[key(i)]).await?;
            stdin.flush().await?;
            if sent_tx.send(at).is_err() {
                break;
            }
        }
        anyhow::Ok(stdin)
    });
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        read_echo(&mut stdout, key(i)).await?;
        let at = sent_rx.recv().await.context("the writer stopped")?;
        samples.push(at.elapsed().as_secs_f64() * 1e3);
    }
    drop(writer.await??);
    let _ = timeout(Duration::from_secs(3), child.wait()).await;
    print_stats(samples);
    Ok(())
}
