//! The least or the largest of recent samples: of this period's and the
//! last period's, so that an estimate is at most two periods old and a
//! changed path shows within that (the base round trip of
//! [`super::congestion::DelayFilter`], the fastest delivery of
//! [`super::rate::DeliveryRate`]).

use std::time::Duration;

use tokio::time::Instant;

/// The extreme, by `pick` (`min` or `max`), of the samples of the current
/// period and of the period before.
#[derive(Debug, Clone, Copy)]
pub struct TwoPeriods<T> {
    period: Duration,
    pick: fn(T, T) -> T,
    /// The extreme of the current period, and when it began.
    current: Option<(T, Instant)>,
    /// The extreme of the period before.
    previous: Option<T>,
}

impl<T: Copy> TwoPeriods<T> {
    /// No samples yet; periods of `period`, the extreme chosen by `pick`.
    pub const fn new(period: Duration, pick: fn(T, T) -> T) -> TwoPeriods<T> {
        TwoPeriods {
            period,
            pick,
            current: None,
            previous: None,
        }
    }

    /// A sample `v` taken at `now`; a period that has run out starts anew
    /// from it.
    pub fn on_sample(&mut self, v: T, now: Instant) {
        self.current = match self.current {
            Some((c, since)) if now.saturating_duration_since(since) >= self.period => {
                self.previous = Some(c);
                Some((v, now))
            }
            Some((c, since)) => Some(((self.pick)(c, v), since)),
            None => Some((v, now)),
        };
    }

    /// The extreme of this period and the last, if there was a sample.
    pub fn get(&self) -> Option<T> {
        match (self.current, self.previous) {
            (Some((c, _)), Some(p)) => Some((self.pick)(c, p)),
            (c, p) => c.map(|(c, _)| c).or(p),
        }
    }

    /// Forget the earlier samples: a new period starts from `v` at `now`.
    pub fn restart(&mut self, v: T, now: Instant) {
        self.current = Some((v, now));
        self.previous = None;
    }
}
