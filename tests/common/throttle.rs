//! A relay that enforces a hosted broker's per-connection limits, for the
//! rate cap tests (`tests/limits.rs`) and `scripts/bench-caps` (through the
//! `throttle_relay` example, which includes this file): it listens on a free
//! loopback port and forwards every connection to 127.0.0.1:<upstream>.
//!
//! - Publishes: it parses the client→broker byte stream into MQTT packets
//!   (fixed header and remaining-length varint, the same in 3.1.1 and 5)
//!   and closes a connection, counting a disconnect, as soon as any sliding
//!   one-second window holds more than N PUBLISH packets (AWS IoT Core's
//!   100/s, EMQX Serverless's 10/s). A sliding window is the strictest
//!   reading: a sender that passes it passes fixed windows too. Packets are
//!   counted when they are forwarded, after the byte pacing below, as a
//!   broker behind such a link sees them.
//! - Bytes: each direction is paced to B bytes/s (AWS's 512 KB/s is per
//!   connection) with a burst of one read; while a direction waits it stops
//!   reading, so the backlog builds in the kernel's socket buffers, as in
//!   front of a real service.
//!
//! A malformed packet header also closes the connection (not counted).
//! Dropping the relay stops its runtime and closes every connection.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, TcpListener as StdListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::time::Instant;

/// Largest read, and so the byte pacing's burst: small next to 512 KiB/s
/// (1/32 s), so pacing is smooth, and a whole MQTT header is rarely split.
const READ: usize = 16 << 10;
/// The window the publish limit counts in.
const WINDOW: Duration = Duration::from_secs(1);

/// The limits of every connection through the relay.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most PUBLISH packets a connection may send in any one second.
    pub publishes_per_sec: u32,
    /// Bytes per second in each direction; `None`: not paced.
    pub bytes_per_sec: Option<u64>,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    disconnects: AtomicU64,
    publishes: AtomicU64,
}

/// A running relay; see the module documentation.
pub struct Throttle {
    port: u16,
    counters: Arc<Counters>,
    _runtime: Runtime,
}

impl Throttle {
    /// Listen on a free 127.0.0.1 port and forward to 127.0.0.1:`upstream`
    /// under `limits`. `on_disconnect` runs (on the relay's thread) for
    /// every throttle disconnect.
    pub fn start_with(
        upstream: u16,
        limits: Limits,
        on_disconnect: impl Fn() + Send + Sync + 'static,
    ) -> Throttle {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("throttle")
            .enable_all()
            .build()
            .expect("build the throttle relay's tokio runtime");
        let std_listener =
            StdListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the throttle relay");
        let port = std_listener.local_addr().expect("relay address").port();
        std_listener
            .set_nonblocking(true)
            .expect("make the relay's listener non-blocking");
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(std_listener).expect("register the relay's listener")
        };
        let counters = Arc::new(Counters::default());
        let on_disconnect: Arc<dyn Fn() + Send + Sync> = Arc::new(on_disconnect);
        runtime.spawn(accept_loop(
            listener,
            upstream,
            limits,
            counters.clone(),
            on_disconnect,
        ));
        Throttle {
            port,
            counters,
            _runtime: runtime,
        }
    }

    /// [`Throttle::start_with`] without a callback.
    pub fn start(upstream: u16, limits: Limits) -> Throttle {
        Throttle::start_with(upstream, limits, || {})
    }

    /// The port clients should connect to instead of the broker's.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections closed for publishing above the limit so far.
    pub fn disconnects(&self) -> u64 {
        self.counters.disconnects.load(Ordering::SeqCst)
    }

    /// PUBLISH packets forwarded so far, all connections.
    pub fn publishes(&self) -> u64 {
        self.counters.publishes.load(Ordering::SeqCst)
    }

    /// Connections accepted so far (each reconnect is one more).
    pub fn accepted(&self) -> u64 {
        self.counters.accepted.load(Ordering::SeqCst)
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: u16,
    limits: Limits,
    counters: Arc<Counters>,
    on_disconnect: Arc<dyn Fn() + Send + Sync>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        counters.accepted.fetch_add(1, Ordering::SeqCst);
        let counters = counters.clone();
        let on_disconnect = on_disconnect.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect((Ipv4Addr::LOCALHOST, upstream)).await else {
                return; // The client sees its connection closed.
            };
            // Like a network path: no Nagle of its own.
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            let mut publishes = PublishCounter::new(limits.publishes_per_sec);
            // Whichever direction ends first ends the connection (dropping
            // the other closes both sockets).
            let over = tokio::select! {
                over = forward(cr, sw, limits.bytes_per_sec, Some((&mut publishes, &counters))) => over,
                _ = forward(sr, cw, limits.bytes_per_sec, None) => false,
            };
            if over {
                counters.disconnects.fetch_add(1, Ordering::SeqCst);
                on_disconnect();
            }
        });
    }
}

/// Copy `from` to `to`, paced to `rate` bytes/s; with a counter, count the
/// PUBLISH packets and stop at the first one above the limit. True when it
/// stopped for that.
async fn forward(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    rate: Option<u64>,
    mut publishes: Option<(&mut PublishCounter, &Counters)>,
) -> bool {
    let mut buf = vec![0u8; READ];
    let mut parser = Parser::default();
    // Byte pacing: the time the bytes sent so far are "paid" until.
    let mut paid_until = Instant::now();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        if let Some(rate) = rate {
            let now = Instant::now();
            paid_until = paid_until.max(now) + Duration::from_secs_f64(n as f64 / rate as f64);
            // One read's worth of burst: wait until the debt is below it.
            let burst = Duration::from_secs_f64(READ as f64 / rate as f64);
            if paid_until > now + burst {
                tokio::time::sleep_until(paid_until - burst).await;
            }
        }
        if let Some((counter, totals)) = publishes.as_mut() {
            let Some(found) = parser.feed(&buf[..n]) else {
                return false; // Malformed: a broker would close too.
            };
            let now = Instant::now();
            for _ in 0..found {
                totals.publishes.fetch_add(1, Ordering::SeqCst);
                if !counter.admit(now) {
                    return true;
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return false;
        }
    }
}

/// PUBLISH packets of one connection in the last [`WINDOW`].
struct PublishCounter {
    limit: usize,
    recent: VecDeque<Instant>,
}

impl PublishCounter {
    fn new(limit: u32) -> PublishCounter {
        PublishCounter {
            limit: limit as usize,
            recent: VecDeque::new(),
        }
    }

    /// One more publish at `now`: false if the window now holds more than
    /// the limit.
    fn admit(&mut self, now: Instant) -> bool {
        while self.recent.front().is_some_and(|t| now - *t >= WINDOW) {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        self.recent.len() <= self.limit
    }
}

/// Splits a byte stream into MQTT packets: fixed header byte, remaining
/// length (1-4 bytes, 7 bits each, least significant first), body.
#[derive(Default)]
struct Parser {
    state: State,
}

#[derive(Default)]
enum State {
    /// Waiting for a packet's first byte.
    #[default]
    Header,
    /// Reading the remaining length: value so far, bytes read.
    Length(usize, u32),
    /// Skipping the body: bytes left.
    Body(usize),
}

impl Parser {
    /// The PUBLISH packets that start in `bytes`; `None` on a remaining
    /// length longer than four bytes.
    fn feed(&mut self, mut bytes: &[u8]) -> Option<usize> {
        let mut publishes = 0;
        while !bytes.is_empty() {
            match self.state {
                State::Header => {
                    if bytes[0] >> 4 == 3 {
                        publishes += 1;
                    }
                    self.state = State::Length(0, 0);
                    bytes = &bytes[1..];
                }
                State::Length(value, read) => {
                    if read == 4 {
                        return None;
                    }
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    let value = value | usize::from(b & 0x7f) << (7 * read);
                    self.state = match (b & 0x80 != 0, value) {
                        (true, _) => State::Length(value, read + 1),
                        (false, 0) => State::Header,
                        (false, len) => State::Body(len),
                    };
                }
                State::Body(left) => {
                    let take = left.min(bytes.len());
                    bytes = &bytes[take..];
                    self.state = match left - take {
                        0 => State::Header,
                        left => State::Body(left),
                    };
                }
            }
        }
        Some(publishes)
    }
}
