//! One session's task: connect to the target, send ACCEPT, run the tunnel
//! until either end closes, the session is evicted or the link is lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

use super::admission::Admitted;
use super::ctx::{accept_frame, refuse, reset, Ctx};
use crate::access::{Access, Denial, Identity};
use crate::mqtt;
use crate::protocol::{Frame, RefuseCode};
use crate::stream::{Notice, Stream};
use crate::tunnel::{self, MqttSink, TunnelError};

/// How long the agent waits for its target to accept a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The session reason logged for an evicted session.
const EVICTED: &str = "evicted: the client never spoke while the session table was full";

/// What a session task tells the dispatcher.
#[derive(Debug)]
pub(super) enum Note {
    /// ACCEPT went out (the dispatcher then repeats it on a repeated OPEN).
    Accepted { cid: String, sid: u64 },
    /// The session ended, so the dispatcher forgets it.
    Ended { cid: String, sid: u64 },
}

/// A session task's ends of its links with the dispatcher.
pub(super) struct SessionLinks {
    /// Frames from the client.
    pub(super) frames: mpsc::Receiver<Frame>,
    /// Fires when the dispatcher evicts the session.
    pub(super) evicted: oneshot::Receiver<()>,
    /// Where the session reports that it accepted and that it ended.
    pub(super) notes: mpsc::UnboundedSender<Note>,
}

pub(super) async fn session(
    ctx: Arc<Ctx>,
    cid: String,
    sid: u64,
    peer_window: u32,
    admitted: Admitted,
    links: SessionLinks,
) {
    let Admitted {
        mut keys,
        accept,
        early,
        identity,
    } = admitted;
    // The audit fields: who opened the session (node, client and session
    // id are the span's).
    let (fingerprint, key_id, principal) = match &identity {
        Some(id) => (
            Some(id.fingerprint.as_str()),
            id.certificate.as_ref().map(|c| c.key_id.as_str()),
            id.certificate.as_ref().map(|c| c.principal.as_str()),
        ),
        None => (None, None, None),
    };
    let SessionLinks {
        mut frames,
        mut evicted,
        notes,
    } = links;
    let started = std::time::Instant::now();
    let target = &ctx.cfg.target;
    let mut sink = MqttSink {
        client: ctx.client.clone(),
        topic: ctx.topics.down(&cid),
        bulk: Some(ctx.bulk.clone()),
    };
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            let reason = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                format!("sshd at {target} refused the connection")
            } else {
                format!("could not connect to sshd at {target}: {e}")
            };
            tracing::warn!(%reason, "session refused");
            refuse(&ctx, &cid, sid, RefuseCode::Target, &reason);
            // The dispatcher only forgets this client id when told; the
            // channel is unbounded so this cannot fail while it runs.
            let _ = notes.send(Note::Ended { cid, sid });
            return;
        }
        Err(_) => {
            let reason = format!("sshd at {target} did not answer within {CONNECT_TIMEOUT:?}");
            tracing::warn!(%reason, "session refused");
            refuse(&ctx, &cid, sid, RefuseCode::Target, &reason);
            // Unbounded: cannot fail while the dispatcher runs.
            let _ = notes.send(Note::Ended { cid, sid });
            return;
        }
    };
    // Keystrokes must not wait for Nagle.
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY failed");
    }
    let mut stream = Stream::new(
        sid,
        ctx.cfg.stream,
        peer_window,
        tokio::time::Instant::now(),
    );
    stream.drain_with(ctx.drains.clone());
    stream.gather_drains(ctx.uploads.clone());
    stream.received_in_open(early);
    let opened = async {
        use crate::tunnel::FrameSink;
        sink.send(accept_frame(sid, ctx.cfg.stream.recv_window, accept).encode())
            .await
    }
    .await;
    // Unbounded: cannot fail while the dispatcher runs, and without one
    // there is nobody to repeat ACCEPT.
    let _ = notes.send(Note::Accepted {
        cid: cid.clone(),
        sid,
    });
    tracing::info!(fingerprint, key_id, principal, "session opened");
    let mut link = ctx.link.clone();
    let result = match opened {
        Ok(()) => {
            let mut tcp = tcp;
            let (r, w) = tcp.split();
            let tunnel = tunnel::run(
                &mut stream,
                &mut keys,
                r,
                w,
                &mut frames,
                &mut sink,
                &mut link,
                std::future::pending(),
                |notice| match notice {
                    // This host slept (a suspended VM, a laptop as a node):
                    // its network may have changed.
                    Notice::Woke { stopped } => {
                        let replaced = ctx.client.replace_after_stop(stopped);
                        tracing::info!(
                            ?stopped,
                            replaced,
                            "woke up; replacing the broker connection"
                        );
                    }
                    other => tracing::debug!(notice = ?other, "peer liveness"),
                },
            );
            let revoked = revoked(ctx.access.clone(), identity.as_ref(), &ctx.cfg.node_id);
            // Biased: eviction also closes the frame channel, which the
            // tunnel would report as a lost MQTT connection.
            let res = tokio::select! {
                biased;
                Ok(()) = &mut evicted => {
                    reset(&ctx, &cid, sid, &keys.tx, "");
                    Err(EVICTED.to_owned())
                }
                denial = revoked => {
                    let why = denial.to_string();
                    reset(&ctx, &cid, sid, &keys.tx, &why);
                    Err(why)
                }
                r = tunnel => r.map_err(|e| e.to_string()),
            };
            if res.is_err() {
                // Abort towards sshd too: a reset, not a clean close.
                if let Err(e) = tcp.set_zero_linger() {
                    tracing::debug!(error = %e, "SO_LINGER failed");
                }
            }
            res
        }
        Err(_) => Err(TunnelError::LinkClosed(mqtt::TaskEnded).to_string()),
    };
    let st = stream.stats();
    let reason = match &result {
        Ok(()) => "closed",
        Err(e) => e.as_str(),
    };
    tracing::info!(
        bytes_to_client = st.bytes_sent,
        chunks_to_client = st.chunks_sent,
        pure_acks = st.pure_acks,
        pads = st.pads,
        bytes_from_client = st.bytes_received,
        retransmits = st.retransmits,
        forged = keys.rx.forged(),
        replayed = keys.rx.replayed(),
        duration_ms = started.elapsed().as_millis() as u64,
        fingerprint,
        key_id,
        principal,
        reason,
        "session closed"
    );
    // Unbounded: cannot fail while the dispatcher runs, and if it does not,
    // nobody needs to know.
    let _ = notes.send(Note::Ended { cid, sid });
}

/// Completes when the access lists change so that `identity` may no longer
/// open sessions (its key removed or revoked, its CA's line gone or
/// narrowed): the session is then closed and its client told why. Never
/// completes for a session admitted without keys.
async fn revoked(
    lists: Option<watch::Receiver<Arc<Access>>>,
    identity: Option<&Identity>,
    node: &str,
) -> Denial {
    let (Some(mut lists), Some(identity)) = (lists, identity) else {
        return std::future::pending().await;
    };
    loop {
        if let Err(denial) = lists.borrow_and_update().still_authorized(identity, node) {
            tracing::info!(fingerprint = %identity.fingerprint, reason = %denial, "access taken away; closing the session");
            return denial;
        }
        if lists.changed().await.is_err() {
            // The watcher is gone: the lists cannot change any more.
            return std::future::pending().await;
        }
    }
}
