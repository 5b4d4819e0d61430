//! Agent passwords (challenge-response) and rate limits.
//!
//! When an agent has a password, it answers OPEN with CHALLENGE (a fresh
//! random nonce); the client answers AUTH with
//! `HMAC-SHA-256(password, "mqtt-proxy-auth-v1" 0 node 0 client-id 0 sid nonce)`.
//! The secret never crosses the broker; a nonce is used once, so a captured
//! AUTH cannot be replayed, and the MAC is bound to the node, client id and
//! session id, so it cannot be used for another session.

use std::time::Duration;

use ring::hmac;
use tokio::time::Instant;

use crate::config::Secret;

/// Bytes of a challenge nonce.
pub const NONCE_LEN: usize = 32;
/// Bytes of an AUTH answer (HMAC-SHA-256).
pub const MAC_LEN: usize = 32;
/// Domain separation for the MAC input.
const CONTEXT: &[u8] = b"mqtt-proxy-auth-v1";

/// A fresh random nonce.
pub fn nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    getrandom::fill(&mut n).expect("the OS random number generator is available");
    n
}

fn message(node: &str, cid: &str, sid: u64, nonce: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + node.len() + cid.len() + 11 + nonce.len());
    m.extend_from_slice(CONTEXT);
    m.push(0);
    m.extend_from_slice(node.as_bytes());
    m.push(0);
    m.extend_from_slice(cid.as_bytes());
    m.push(0);
    m.extend_from_slice(&sid.to_be_bytes());
    m.extend_from_slice(nonce);
    m
}

/// The client's answer to a challenge.
pub fn answer(secret: &Secret, node: &str, cid: &str, sid: u64, nonce: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes());
    hmac::sign(&key, &message(node, cid, sid, nonce))
        .as_ref()
        .to_vec()
}

/// Check an answer in constant time.
pub fn verify(secret: &Secret, node: &str, cid: &str, sid: u64, nonce: &[u8], mac: &[u8]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes());
    hmac::verify(&key, &message(node, cid, sid, nonce), mac).is_ok()
}

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
