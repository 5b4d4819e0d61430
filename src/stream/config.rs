//! Per-session settings of the stream.

use std::time::Duration;

use super::{ACK_DELAY, MAX_RECV_WINDOW};

/// Per-session settings.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Bytes of the peer's data we are willing to buffer at first
    /// (advertised window).
    pub recv_window: u32,
    /// What auto-tuning may grow that window to (see `stream::autotune`);
    /// `recv_window` or less turns tuning off.
    pub max_recv_window: u32,
    /// A peer not heard from for this long is dead.
    pub peer_timeout: Duration,
    /// Longest a pure acknowledgement of in-order data waits to ride on a
    /// data frame ([`ACK_DELAY`] by default; longer under a publish rate
    /// cap).
    pub ack_delay: Duration,
    /// How much longer the retransmission timeout waits than the measured
    /// round trip alone asks for: the time rate caps may add to a round
    /// trip without any loss (`mqtt::pacer::rto_allowance`; the peer, on the
    /// same kind of broker, is assumed to be capped alike). Zero by default.
    pub rto_allowance: Duration,
}

/// Default receive window at the start of a session: 1 MiB. Large enough
/// to fill loopback and LAN round trips through a broker (`scripts/bench`),
/// small enough that 64 sessions on such paths stay within ~128 MiB of
/// buffered data even when every reader stalls. Longer paths grow it (see
/// [`MAX_RECV_WINDOW`]).
pub const DEFAULT_RECV_WINDOW: u32 = 1 << 20;

impl Default for Config {
    fn default() -> Self {
        Config {
            recv_window: DEFAULT_RECV_WINDOW,
            max_recv_window: MAX_RECV_WINDOW,
            peer_timeout: Duration::from_secs(60),
            ack_delay: ACK_DELAY,
            rto_allowance: Duration::ZERO,
        }
    }
}
