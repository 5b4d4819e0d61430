//! How the broker connection tells a dead link from a quiet one, and how
//! long a session waits for its peer: `--probe-interval`, `--link-timeout`
//! and `--resume-timeout`, merged and checked against each other.

use std::time::Duration;

use anyhow::{bail, Result};

/// A broker connection silent this long is probed (TCP keepalive). An idle
/// agent's link that dies silently (a NAT that forgets it, a router that
/// reboots) is noticed within this plus [`DEFAULT_LINK_TIMEOUT`]: 25 s, so a
/// fresh ssh works within 30 s. The price, measured over 10 minutes
/// (`scripts/bench-liveness`, docs/benchmarks.md): one probe and its answer
/// every 20 s of silence, about 26 KB an hour on the wire with the agent's
/// MQTT pings, and no MQTT packet at the broker (probes are TCP's own).
const DEFAULT_PROBE_INTERVAL: u64 = 20;
/// What we sent (data, a ping, a probe) may stay unacknowledged this long
/// before the connection counts as dead and is replaced (`TCP_USER_TIMEOUT`).
/// Well above a healthy link's round trip (a satellite hop is 0.6 s, a
/// cellular uplink's buffer a few seconds), and short enough that a session
/// whose link died goes on within 10 s.
const DEFAULT_LINK_TIMEOUT: u64 = 5;
/// How long a session waits for a silent peer before it is closed. Ten
/// minutes, so a laptop that sleeps through a coffee break (and whose
/// network changes meanwhile) resumes its sessions; a client that crashed
/// holds its sshd connection and buffers (at most the session's windows) on
/// the agent that long. A client that ends cleanly frees them at once.
/// Time a process was stopped does not count (see `stream`).
const DEFAULT_RESUME_TIMEOUT: u64 = 600;

/// The three settings, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    pub probe_interval: Duration,
    pub link_timeout: Duration,
    pub resume_timeout: Duration,
}

impl Liveness {
    /// Each value (probe interval, link timeout, resume timeout, in
    /// seconds) from the flag or environment, else the config file, else the
    /// default (the probing's defaults shrink to fit a short resume
    /// timeout); refused when it cannot work.
    pub fn resolve(flags: [Option<u64>; 3], file: [Option<u64>; 3]) -> Result<Liveness> {
        const KEYS: [(&str, &str); 3] = [
            ("--probe-interval", "probe-interval"),
            ("--link-timeout", "link-timeout"),
            ("--resume-timeout", "resume-timeout"),
        ];
        let mut secs = [0u64; 3];
        for i in (0..3).rev() {
            // A short resume timeout (tests, impatient users) shortens the
            // probing it relies on, unless that is set too.
            let resume = secs[2];
            let defaults = [
                DEFAULT_PROBE_INTERVAL.min(resume / 3).max(1),
                DEFAULT_LINK_TIMEOUT.min(resume / 3).max(1),
                DEFAULT_RESUME_TIMEOUT,
            ];
            secs[i] = match (flags[i], file[i]) {
                (Some(0), _) => bail!("{} must be at least 1 second", KEYS[i].0),
                (Some(v), _) => v,
                (None, Some(0)) => bail!("key '{}': must be at least 1 second", KEYS[i].1),
                (None, Some(v)) => v,
                (None, None) => defaults[i],
            };
        }
        let [probe, link, resume] = secs;
        if probe + link >= resume {
            bail!(
                "--probe-interval {probe} s plus --link-timeout {link} s is not shorter than \
                 --resume-timeout {resume} s: a dead link would be noticed only after its \
                 sessions gave up"
            );
        }
        Ok(Liveness {
            probe_interval: Duration::from_secs(probe),
            link_timeout: Duration::from_secs(link),
            resume_timeout: Duration::from_secs(resume),
        })
    }
}

#[cfg(test)]
mod tests;
