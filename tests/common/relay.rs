//! A fault-injecting TCP relay for the resilience tests: it listens on a free
//! loopback port and forwards every accepted connection to
//! 127.0.0.1:<upstream port> (the broker), so the agent or the proxy can be
//! pointed at it and a fault hits only that side.
//!
//! Faults, all switchable at run time from the (synchronous) test:
//!
//! - [`Relay::cut`]: every current connection (forwarding or held) is closed
//!   abruptly on both sides: the sockets are closed with `SO_LINGER 0`, so
//!   the client and the broker each get a TCP RST at once, like a NAT box or
//!   firewall that dropped its state and answers with resets.
//! - [`Relay::set_blackhole`]: while on, new connections are accepted (the
//!   kernel completes the handshake) but nothing is read from them, forwarded
//!   or answered: a client's MQTT CONNECT goes unanswered, like SYNs and data
//!   lost in a dead network. When the blackhole is lifted, held connections
//!   are connected upstream and forwarded from then on, with whatever the
//!   client sent meanwhile, like a TCP connection whose retransmissions get
//!   through once the network is back. A client that gave up on a held
//!   connection (its connect timeout) has closed it, and the relay then only
//!   forwards that close. Cutting while blackholed resets held connections too.
//! - [`Relay::stall`]: stop moving bytes in both directions on every
//!   connection, which stay open, until resumed; bytes already read are
//!   delivered after the stall, none are lost. TCP backpressure does the rest.
//! - [`Relay::set_latency`]: every chunk is delivered this long after it was
//!   read (one-way delay), without limiting throughput.
//!
//! [`Relay::outage`] combines them into the usual "network down for N
//! seconds" scenario. Dropping the relay stops its runtime, which closes the
//! listener and every connection (with a normal FIN).

use std::net::{Ipv4Addr, TcpListener as StdListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Size of one read; matches the tunnel's largest frame with room to spare.
const CHUNK: usize = 64 << 10;
/// Chunks read but not yet written, per direction (only ever fills up with
/// added latency; otherwise each chunk is written before the next is read).
const QUEUE: usize = 64;

struct Shared {
    blackhole: watch::Sender<bool>,
    stalled: watch::Sender<bool>,
    /// Incremented by every cut; a connection ends when it changes.
    cuts: watch::Sender<u64>,
    latency: Mutex<Duration>,
    accepted: AtomicU64,
    open: AtomicU64,
}

/// A running relay; see the module documentation for its semantics.
pub struct Relay {
    port: u16,
    shared: Arc<Shared>,
    runtime: Option<Runtime>,
}

impl Relay {
    /// Listen on a free 127.0.0.1 port and forward to 127.0.0.1:`upstream`.
    pub fn start(upstream: u16) -> Relay {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("relay")
            .enable_all()
            .build()
            .expect("build the relay's tokio runtime");
        let std_listener =
            StdListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the relay's listener");
        let port = std_listener.local_addr().expect("relay address").port();
        std_listener
            .set_nonblocking(true)
            .expect("make the relay's listener non-blocking");
        let shared = Arc::new(Shared {
            blackhole: watch::channel(false).0,
            stalled: watch::channel(false).0,
            cuts: watch::channel(0).0,
            latency: Mutex::new(Duration::ZERO),
            accepted: AtomicU64::new(0),
            open: AtomicU64::new(0),
        });
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(std_listener).expect("register the relay's listener")
        };
        runtime.spawn(accept_loop(listener, upstream, shared.clone()));
        Relay {
            port,
            shared,
            runtime: Some(runtime),
        }
    }

    /// The port clients should connect to instead of the broker's.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Reset every current connection, on both sides.
    pub fn cut(&self) {
        self.shared.cuts.send_modify(|n| *n += 1);
    }

    /// Hold new connections unanswered (true) or forward them again (false).
    pub fn set_blackhole(&self, on: bool) {
        self.shared.blackhole.send_replace(on);
    }

    /// Stop (true) or resume (false) moving bytes on every connection.
    pub fn stall(&self, on: bool) {
        self.shared.stalled.send_replace(on);
    }

    /// One-way delay added to every chunk from now on (in both directions).
    pub fn set_latency(&self, latency: Duration) {
        *self.shared.latency.lock().expect("latency lock") = latency;
    }

    /// A network outage of `duration`: blackhole on, cut, wait, blackhole off.
    pub fn outage(&self, duration: Duration) {
        self.set_blackhole(true);
        self.cut();
        thread::sleep(duration);
        self.set_blackhole(false);
    }

    /// Connections accepted since the relay started.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections currently open (held or forwarding).
    pub fn open(&self) -> u64 {
        self.shared.open.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn accept_loop(listener: TcpListener, upstream: u16, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(connection(client, upstream, shared.clone()));
            }
            // Out of file descriptors or similar: try again shortly.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Counts a connection as open for as long as it lives.
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Close with an RST instead of a FIN.
fn abort(stream: TcpStream) {
    // If SO_LINGER cannot be set the close is a FIN, still a disconnect.
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn connection(client: TcpStream, upstream: u16, shared: Arc<Shared>) {
    shared.open.fetch_add(1, Ordering::SeqCst);
    let _guard = OpenGuard(shared.clone());
    let mut cuts = shared.cuts.subscribe();
    cuts.borrow_and_update();

    // Held, unanswered, while the blackhole is on.
    let mut blackhole = shared.blackhole.subscribe();
    tokio::select! {
        r = async { blackhole.wait_for(|on| !*on).await.map(|_| ()) } => if r.is_err() { return },
        _ = cuts.changed() => return abort(client),
    }

    let mut client = client;
    let mut server = match TcpStream::connect((Ipv4Addr::LOCALHOST, upstream)).await {
        Ok(s) => s,
        // Broker down: the client sees the connection reset, as it would
        // see a refused connection without the relay.
        Err(_) => return abort(client),
    };
    // The tunnel's own sockets disable Nagle; the relay must not add it back.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);

    let result = {
        let (cr, cw) = client.split();
        let (sr, sw) = server.split();
        tokio::select! {
            r = async {
                tokio::try_join!(
                    pipe(cr, sw, shared.clone()),
                    pipe(sr, cw, shared.clone()),
                )
            } => r.map(|_| ()),
            _ = cuts.changed() => Err(std::io::ErrorKind::ConnectionAborted.into()),
        }
    };
    if result.is_err() {
        // A cut, or one side reset: the other side must see a reset too.
        abort(client);
        abort(server);
    }
}

/// Copy one direction until EOF (then shut down the writer), honouring stall
/// and latency.
async fn pipe<R, W>(mut reader: R, mut writer: W, shared: Arc<Shared>) -> std::io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE);
    let read = {
        let shared = shared.clone();
        async move {
            let mut stalled = shared.stalled.subscribe();
            loop {
                // Closed only when the relay shuts down; then stop.
                if stalled.wait_for(|s| !*s).await.is_err() {
                    return Ok(());
                }
                let mut buf = vec![0u8; CHUNK];
                let n = reader.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<(), std::io::Error>(());
                }
                buf.truncate(n);
                if tx.send((Instant::now(), buf)).await.is_err() {
                    return Ok(());
                }
            }
        }
    };
    let write = async move {
        let mut stalled = shared.stalled.subscribe();
        while let Some((read_at, buf)) = rx.recv().await {
            let latency = *shared.latency.lock().expect("latency lock");
            tokio::time::sleep_until(read_at + latency).await;
            if stalled.wait_for(|s| !*s).await.is_err() {
                return Ok(());
            }
            writer.write_all(&buf).await?;
        }
        writer.shutdown().await
    };
    tokio::try_join!(read, write).map(|_| ())
}
