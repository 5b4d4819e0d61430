//! The broker connection's TCP socket, tuned once connected: acks at once
//! (`TCP_QUICKACK`), and keepalive probes with a user timeout, so a link
//! that dies silently is noticed in seconds instead of minutes.
//!
//! Acks: a stock mosquitto leaves Nagle's algorithm on, so a small packet it
//! sends us (a PUBACK, an ack frame, ssh's window adjustment) waits until we
//! acknowledge the one before it at the TCP level. Linux delays that
//! acknowledgement by up to 40 ms when the connection looks interactive,
//! which ours always does, so the broker's next small packet to us waited
//! that long. Setting `TCP_QUICKACK` sends the pending acknowledgement at
//! once, and has to be repeated after each read (the kernel goes back to
//! delaying; tcp(7)).
//!
//! Liveness: the commonest failure of a NATed host's network is silent (a
//! router reboots, a NAT forgets the mapping) and every packet is dropped
//! without a RST. The MQTT keepalive would notice only after up to twice
//! its period (the agent's is 120 s, to keep an idle agent cheap at the
//! broker). So the kernel probes a connection silent for `--probe-interval`
//! (`SO_KEEPALIVE`, `TCP_KEEPIDLE`), and `TCP_USER_TIMEOUT` =
//! `--link-timeout` ends it when a probe, or anything we sent, stays
//! unacknowledged that long (with a user timeout set, Linux gives up on
//! the first unanswered probe, after `TCP_KEEPINTVL`, also the link
//! timeout). rumqttc then sees the error, and we reconnect. Probes are
//! TCP's own: the broker never sees them as MQTT packets.
//!
//! rumqttc owns the socket and offers no hook, so once connected we look
//! for it among the process's descriptors: the one TCP socket whose peer is
//! the address rumqttc dials (the broker, or the HTTP proxy), and take a
//! duplicate with `pidfd_getfd(2)` on our own process (Linux 5.6; without
//! it we simply go without). The duplicate keeps the socket open, so it is
//! dropped whenever rumqttc drops its own: at every failed poll and with
//! the event loop.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;

use std::time::Duration;

use rustix::net::sockopt;
use rustix::process::{pidfd_getfd, pidfd_open, Pid, PidfdFlags, PidfdGetfdFlags};

use crate::config::Broker;

/// How the socket notices a dead link (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Probing {
    /// Probe after this long without traffic.
    pub(super) interval: Duration,
    /// Give up on a probe or on unacknowledged data after this long.
    pub(super) timeout: Duration,
}

/// The broker connection's socket, when found.
#[derive(Default)]
pub(super) struct BrokerSocket {
    fd: Option<OwnedFd>,
}

/// Where rumqttc's TCP connection goes for `broker`: the HTTP proxy if
/// there is one, else the broker. The host is an address only when it is
/// written as one; otherwise any address with that port matches.
pub(super) fn dialled(broker: &Broker) -> (Option<IpAddr>, u16) {
    let (host, port) = match &broker.http_proxy {
        Some(p) => (p.host.as_str(), p.port),
        None => (broker.addr.host.as_str(), broker.addr.port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host.parse().ok(), port)
}

/// Whether `peer` is where we dialled.
fn matches(peer: SocketAddr, (ip, port): (Option<IpAddr>, u16)) -> bool {
    peer.port() == port && ip.is_none_or(|ip| ip == peer.ip().to_canonical())
}

impl BrokerSocket {
    /// Find the connection to `to` (just made: call on CONNACK) and set its
    /// probing. Nothing if the kernel cannot duplicate descriptors or more
    /// than one socket matches (an agent whose sshd listens on the
    /// broker's port): then only the MQTT keepalive notices a dead link.
    pub(super) fn attach(&mut self, to: (Option<IpAddr>, u16), probing: Probing) {
        self.fd = find(to);
        let probing_set = self.fd.as_ref().map(|fd| probe(fd, probing));
        if let Some(Err(e)) = &probing_set {
            tracing::debug!(error = %e, "could not set the broker socket's keepalive probes");
        }
        tracing::debug!(
            found = self.fd.is_some(),
            probing = matches!(probing_set, Some(Ok(()))),
            "broker socket for TCP_QUICKACK and probes"
        );
    }

    /// Let go of the socket: rumqttc has dropped (or is about to drop) its
    /// connection.
    pub(super) fn detach(&mut self) {
        self.fd = None;
    }

    /// End the connection (both directions): rumqttc's next read fails and
    /// the connection task connects again. False without a socket.
    pub(super) fn shut(&self) -> bool {
        self.fd
            .as_ref()
            .is_some_and(|fd| rustix::net::shutdown(fd, rustix::net::Shutdown::Both).is_ok())
    }

    /// Acknowledge what we just read at once.
    pub(super) fn after_read(&self) {
        if let Some(fd) = &self.fd {
            // Best effort: the worst outcome is the kernel's delayed ack.
            let _ = sockopt::set_tcp_quickack(fd, true);
        }
    }
}

/// Keepalive probes and the user timeout (see the module docs).
fn probe(fd: &OwnedFd, p: Probing) -> rustix::io::Result<()> {
    sockopt::set_tcp_keepidle(fd, p.interval)?;
    sockopt::set_tcp_keepintvl(fd, p.timeout)?;
    // Only the first probe counts under a user timeout; set for clarity.
    sockopt::set_tcp_keepcnt(fd, 1)?;
    let ms = u32::try_from(p.timeout.as_millis()).unwrap_or(u32::MAX);
    sockopt::set_tcp_user_timeout(fd, ms)?;
    sockopt::set_socket_keepalive(fd, true)
}

fn find(to: (Option<IpAddr>, u16)) -> Option<OwnedFd> {
    let me = pidfd_open(
        Pid::from_raw(std::process::id() as i32)?,
        PidfdFlags::empty(),
    )
    .ok()?;
    let mut found = None;
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Some(n) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        let Ok(fd) = pidfd_getfd(&me, n, PidfdGetfdFlags::empty()) else {
            continue;
        };
        if sockopt::socket_type(&fd) != Ok(rustix::net::SocketType::STREAM) {
            continue;
        }
        let peer = rustix::net::getpeername(&fd)
            .ok()
            .flatten()
            .and_then(|a| SocketAddr::try_from(a).ok());
        if peer.is_some_and(|p| matches(p, to)) {
            if found.is_some() {
                return None;
            }
            found = Some(fd);
        }
    }
    found
}

#[cfg(test)]
mod tests;
