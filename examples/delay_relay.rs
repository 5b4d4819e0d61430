//! A user-space delay line for benchmarks: a TCP relay that delivers every
//! byte `DELAY_MS` milliseconds after it read it, in each direction, without
//! limiting bandwidth. Put one in front of the broker for the client and one
//! for the agent to measure a broker that sits far away (there is no netem
//! on the machines the benchmarks run on).
//!
//! Usage: `delay_relay UPSTREAM_HOST:PORT DELAY_MS [LISTEN_PORT]`. It listens
//! on 127.0.0.1 (port 0 = any free port), prints the port it listens on as
//! the first line on stdout, and relays every connection to UPSTREAM.

use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

/// Largest single read: big enough that a fast sender is not read in
/// slivers, small enough to keep delivery smooth.
const READ_SIZE: usize = 256 << 10;
/// Reads in flight per direction. The delay line holds bandwidth × delay
/// bytes; 16,384 reads bounds that at 4 GiB, far above what any benchmark
/// here moves in one delay, so the relay never limits throughput.
const IN_FLIGHT: usize = 16_384;

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: delay_relay UPSTREAM_HOST:PORT DELAY_MS [LISTEN_PORT]";
    let upstream = args.next().context(usage)?;
    let delay = Duration::from_millis(args.next().context(usage)?.parse().context(usage)?);
    let port: u16 = args.next().map_or(Ok(0), |p| p.parse()).context(usage)?;
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("{}", listener.local_addr()?.port());
    loop {
        let (client, _) = listener.accept().await?;
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Err(e) = relay(client, &upstream, delay).await {
                eprintln!("delay_relay: {e:#}");
            }
        });
    }
}

async fn relay(client: TcpStream, upstream: &str, delay: Duration) -> Result<()> {
    let server = TcpStream::connect(upstream)
        .await
        .with_context(|| format!("cannot connect to {upstream}"))?;
    // A network path does not hold small segments back; the endpoints'
    // own Nagle settings are what the benchmark measures.
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::join!(direction(cr, sw, delay), direction(sr, cw, delay));
    Ok(())
}

/// Move bytes from `from` to `to`, each read delivered `delay` after it was
/// read; EOF is delivered the same way (as a shutdown of the write side).
async fn direction(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let reader = async move {
        loop {
            let mut buf = vec![0; READ_SIZE];
            let n = from.read(&mut buf).await.unwrap_or(0);
            buf.truncate(n);
            // An empty buffer stands for EOF. Err: the writer is gone (its
            // peer closed), so there is nobody left to deliver to.
            if tx.send((Instant::now() + delay, buf)).await.is_err() || n == 0 {
                return;
            }
        }
    };
    let writer = async move {
        while let Some((due, buf)) = rx.recv().await {
            sleep_until(due).await;
            if buf.is_empty() || to.write_all(&buf).await.is_err() {
                break;
            }
        }
        // Err: the peer is gone already, which is what a shutdown says.
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
