//! A slow link with a deep buffer, for benchmarks (issue 23): a TCP relay
//! that delivers each direction at a fixed rate and holds what waits in a
//! buffer of its own, as a cellular uplink or a DSL line does (bufferbloat).
//! When the buffer is full it stops reading, so the sender's TCP window
//! fills and the sender blocks, as behind a real bottleneck.
//!
//! Usage: `pace_relay UPSTREAM_HOST:PORT BYTES_PER_SEC [BUFFER_SECONDS]`.
//! It listens on a free 127.0.0.1 port, prints that port as the first line
//! on stdout, and relays every connection to UPSTREAM, both directions
//! paced to BYTES_PER_SEC, each with a buffer of BUFFER_SECONDS (default 4)
//! of that rate. Chain it with `delay_relay` for a far path.

use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::{sleep_until, Instant};

/// Largest write: a link delivers in packets, not in bursts of a buffer.
const SLICE: usize = 1500;
/// A link whose last byte went out this long ago was idle.
const IDLE: Duration = Duration::from_millis(5);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let usage = "usage: pace_relay UPSTREAM_HOST:PORT BYTES_PER_SEC [BUFFER_SECONDS]";
    let mut args = std::env::args().skip(1);
    let upstream = args.next().context(usage)?;
    let rate: u64 = args.next().context(usage)?.parse().context(usage)?;
    let buffer_secs: f64 = args.next().map_or(Ok(4.0), |s| s.parse()).context(usage)?;
    let buffer = ((rate as f64 * buffer_secs) as usize).max(SLICE);
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    println!("{}", listener.local_addr()?.port());
    loop {
        let (client, _) = listener.accept().await?;
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Err(e) = relay(client, &upstream, rate, buffer).await {
                eprintln!("pace_relay: {e:#}");
            }
        });
    }
}

async fn relay(client: TcpStream, upstream: &str, rate: u64, buffer: usize) -> Result<()> {
    let server = TcpStream::connect(upstream)
        .await
        .with_context(|| format!("cannot connect to {upstream}"))?;
    // The link, not Nagle on the relay, decides when bytes go.
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::join!(
        direction(cr, sw, rate, buffer),
        direction(sr, cw, rate, buffer)
    );
    Ok(())
}

/// Move bytes from `from` to `to` at `rate` bytes a second, holding at most
/// `buffer` bytes read and not yet delivered.
async fn direction(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, rate: u64, buffer: usize) {
    // Permits are bytes of buffer space: the reader takes them, the writer
    // gives them back once delivered.
    let space = std::sync::Arc::new(Semaphore::new(buffer));
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let reader_space = space.clone();
    let reader = async move {
        let mut buf = vec![0; SLICE];
        loop {
            // Err: the semaphore is never closed.
            let Ok(permit) = reader_space.acquire_many(SLICE as u32).await else {
                return;
            };
            let n = from.read(&mut buf).await.unwrap_or(0);
            permit.forget();
            reader_space.add_permits(SLICE - n);
            // Empty stands for EOF. Err: the writer is gone.
            if tx.send(buf[..n].to_vec()).is_err() || n == 0 {
                return;
            }
        }
    };
    let writer = async move {
        let per_byte = Duration::from_secs_f64(1.0 / rate as f64);
        // When the link is free again: each byte takes `per_byte` to cross.
        let mut free_at = Instant::now();
        while let Some(slice) = rx.recv().await {
            if slice.is_empty() {
                break;
            }
            // An idle link starts afresh; a timer that woke a little late
            // does not slow the link down.
            let now = Instant::now();
            if free_at + IDLE < now {
                free_at = now;
            }
            free_at += per_byte * slice.len() as u32;
            sleep_until(free_at).await;
            if to.write_all(&slice).await.is_err() {
                break;
            }
            space.add_permits(slice.len());
        }
        // Err: the peer is gone already, which is what a shutdown says.
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
