//! Round-trip time estimation and the retransmission timeout (RFC 6298:
//! smoothed RTT, RTT variation, RTO = SRTT + 4·RTTVAR), with the variation
//! term at least [`RTO_MIN_MARGIN`] (as Linux applies its minimum RTO), plus
//! the longest the peer delays an ack ([`ACK_DELAY`], as QUIC's probe
//! timeout adds `max_ack_delay`), the whole at most [`MAX_RTO`], with
//! exponential backoff after a timeout.
//!
//! The estimator only takes samples; which acknowledgements make a valid
//! sample (Karn's rule: never a retransmitted chunk) is the sender's
//! decision, in `send.rs`.

use std::time::Duration;

use super::recv::ACK_DELAY;

/// Retransmission timeout before any round trip was measured.
pub const INITIAL_RTO: Duration = Duration::from_secs(1);
/// Least time the retransmission timeout waits beyond the smoothed round
/// trip and the peer's ack delay: a broker under load adds jitter of tens
/// of milliseconds. A floor on the whole timeout instead
/// would leave a 200 ms path with a timeout barely above its round trip, and
/// every small delay would be a spurious timeout that drops the congestion
/// window to one chunk (measured: 1,106 retransmissions and 0.4 of direct
/// scp speed over a 200 ms path).
pub const RTO_MIN_MARGIN: Duration = Duration::from_millis(200);
/// Ceiling of the (backed-off) retransmission timeout, so a stream resumes
/// within seconds once a broker outage ends.
pub const MAX_RTO: Duration = Duration::from_secs(4);

/// Smoothed round-trip time and the retransmission timeout derived from it.
#[derive(Debug, Clone)]
pub struct RttEstimator {
    /// Smoothed round-trip time; `None` until the first sample.
    srtt: Option<Duration>,
    /// The smallest sample: the path's own round trip, without the queues
    /// of a busy moment or an ack the peer delayed.
    min: Option<Duration>,
    /// Round-trip time variation.
    rttvar: Duration,
    /// Timeout from the samples alone, within its bounds, before backoff.
    base_rto: Duration,
    /// Consecutive timeouts (or window probes) without progress; each
    /// doubles the timeout.
    backoff: u32,
    /// Added to the margin: how much longer than usual a round trip may
    /// take without a loss ([`RttEstimator::allow_delay`]).
    allowance: Duration,
}

impl Default for RttEstimator {
    fn default() -> Self {
        RttEstimator::new()
    }
}

impl RttEstimator {
    /// No sample yet: the timeout is [`INITIAL_RTO`].
    pub fn new() -> RttEstimator {
        RttEstimator {
            srtt: None,
            min: None,
            rttvar: Duration::ZERO,
            base_rto: INITIAL_RTO,
            backoff: 0,
            allowance: Duration::ZERO,
        }
    }

    /// A round trip may take `d` longer than [`RTO_MIN_MARGIN`] allows for,
    /// with nothing lost (under rate caps: delayed acknowledgements, paced
    /// packets): the timeout waits that much longer, from the start.
    pub fn allow_delay(&mut self, d: Duration) {
        self.allowance = d;
        if self.srtt.is_none() {
            self.base_rto = (INITIAL_RTO + d).min(MAX_RTO);
        }
    }

    /// A measured round trip. The first sample sets SRTT to it and RTTVAR to
    /// half of it; later ones are smoothed with gains 1/8 and 1/4. Leaves the
    /// backoff alone: the sender resets that when the peer makes progress.
    pub fn on_sample(&mut self, r: Duration) {
        self.min = Some(self.min.map_or(r, |m| m.min(r)));
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(r);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + r) / 8);
            }
        }
        let srtt = self.srtt.expect("just set");
        self.base_rto = (srtt + (self.rttvar * 4).max(RTO_MIN_MARGIN) + ACK_DELAY + self.allowance)
            .min(MAX_RTO);
    }

    /// The smoothed round-trip time, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The smallest round trip measured.
    pub fn min(&self) -> Option<Duration> {
        self.min
    }

    /// The round-trip time variation (zero before the first sample).
    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }

    /// The timeout to use now: the sampled one doubled per backoff step, at
    /// most [`MAX_RTO`].
    pub fn rto(&self) -> Duration {
        (self.base_rto * 2u32.saturating_pow(self.backoff)).min(MAX_RTO)
    }

    /// A timer fired without an answer: double the timeout.
    pub fn back_off(&mut self) {
        self.backoff += 1;
    }

    /// The peer made progress (or the link was re-established): back to the
    /// sampled timeout.
    pub fn reset_backoff(&mut self) {
        self.backoff = 0;
    }
}

#[cfg(test)]
mod tests;
