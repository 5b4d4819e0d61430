//! A slow link with a deep buffer (issue 23), for `tests/interactive.rs`
//! and `scripts/bench-interactive` (through the `pace_relay` example, which
//! includes this file): a TCP relay that delivers each direction at a fixed
//! rate and holds what waits in a buffer of its own, as a cellular uplink or
//! a DSL line does (bufferbloat). When the buffer is full it stops reading,
//! so the sender's TCP window fills and the sender blocks, as behind a real
//! bottleneck.
//!
//! It listens on a free 127.0.0.1 port and relays every connection to its
//! upstream. Dropping the relay stops its runtime and closes every
//! connection.

use std::net::{Ipv4Addr, TcpListener as StdListener};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::{sleep_until, Instant};

/// Largest write: a link delivers in packets, not in bursts of a buffer.
const SLICE: usize = 1500;

/// A running relay; see the module documentation.
pub struct PaceRelay {
    port: u16,
    _runtime: Runtime,
}

impl PaceRelay {
    /// Relay to 127.0.0.1:`upstream_port`, each direction paced to
    /// `bytes_per_sec` with a buffer of `buffer_secs` of that rate.
    pub fn start(upstream_port: u16, bytes_per_sec: u64, buffer_secs: f64) -> PaceRelay {
        PaceRelay::start_to(
            &format!("127.0.0.1:{upstream_port}"),
            bytes_per_sec,
            buffer_secs,
        )
    }

    /// [`PaceRelay::start`] to `upstream` (`HOST:PORT`, resolved for each
    /// connection). Connections that cannot reach it are closed, with a
    /// line on stderr.
    pub fn start_to(upstream: &str, bytes_per_sec: u64, buffer_secs: f64) -> PaceRelay {
        // One worker: the relay does little work per byte.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("pace")
            .enable_all()
            .build()
            .expect("build the pace relay's tokio runtime");
        let std_listener =
            StdListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the pace relay");
        let port = std_listener.local_addr().expect("relay address").port();
        std_listener
            .set_nonblocking(true)
            .expect("make the relay's listener non-blocking");
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(std_listener).expect("register the relay's listener")
        };
        let buffer = ((bytes_per_sec as f64 * buffer_secs) as usize).max(SLICE);
        runtime.spawn(accept_loop(
            listener,
            Arc::from(upstream),
            bytes_per_sec,
            buffer,
        ));
        PaceRelay {
            port,
            _runtime: runtime,
        }
    }

    /// The port clients should connect to instead of the upstream's.
    pub fn port(&self) -> u16 {
        self.port
    }
}

async fn accept_loop(listener: TcpListener, upstream: Arc<str>, rate: u64, buffer: usize) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Err(e) = relay(client, &upstream, rate, buffer).await {
                eprintln!("pace_relay: {e}");
            }
        });
    }
}

async fn relay(client: TcpStream, upstream: &str, rate: u64, buffer: usize) -> std::io::Result<()> {
    let server = TcpStream::connect(upstream)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot connect to {upstream}: {e}")))?;
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
    let space = Arc::new(Semaphore::new(buffer));
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
        loop {
            // A slice that was waiting leaves right behind the one before,
            // so a timer that woke a little late does not slow the link
            // down. One that finds the link idle leaves a slice's time
            // after it came: an idle link saves no credit, as on the wire
            // (and in `scripts/tun-delay`). Until 2026-12-06 it saved up to
            // 5 ms: a 4 KiB chunk after a short pause made a round trip of
            // 1.4 ms over 1 MiB/s, a session took that for its base, and
            // two copies split (`docs/benchmarks.md`).
            let idle = rx.is_empty();
            let Some(slice) = rx.recv().await else {
                break;
            };
            if slice.is_empty() {
                break;
            }
            if idle {
                free_at = free_at.max(Instant::now());
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
