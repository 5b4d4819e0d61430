//! Rate limits for session admission, and how long a password challenge
//! stays answerable. The challenge itself, bound to the session's key
//! agreement, is in `handshake`.

use std::time::Duration;

use tokio::time::Instant;

/// A token bucket: `capacity` events at once, refilled at `per_second`.
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(capacity: u32, per_second: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            capacity: capacity as f64,
            per_second,
            tokens: capacity as f64,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.per_second).min(self.capacity);
        self.last = now;
    }

    /// Take one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Is there a token (without taking it)?
    pub fn available(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= 1.0
    }
}

/// How long a challenge stays answerable.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests;
