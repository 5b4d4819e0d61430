//! Where publishes wait behind a connection's rate caps: the thin async
//! shell around `schedule` (whose turn it is) and `pacer` (when it may go).
//! Every publish under caps, a session's frame or a queued control frame,
//! waits here before it is handed to the event loop.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::pin::pin;
use std::sync::Mutex;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::client::PUBLISH_OVERHEAD;
use super::pacer::Pacer;
use super::schedule::{Schedule, Ticket};

/// The rate caps of one connection and the publishes waiting for them.
pub(super) struct Gate {
    /// Never held across an await: each waiter looks, decides and lets go.
    state: Mutex<State>,
    /// Told whenever the turn may have moved on (a publish went or gave
    /// up). Every waiter wakes and looks: a few dozen sessions at most, a
    /// hundred publishes a second, so waking only the next one is not
    /// worth its bookkeeping.
    turn: Notify,
}

struct State {
    order: Schedule,
    pacer: Pacer,
}

impl Gate {
    pub(super) fn new(pacer: Pacer) -> Gate {
        Gate {
            state: Mutex::new(State {
                order: Schedule::default(),
                pacer,
            }),
            turn: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("no holder panics")
    }

    /// Wait until it is the turn of a publish of `payload` bytes on `topic`
    /// and the caps let it go, and count it. Dropped while waiting, it
    /// leaves its place to the next.
    pub(super) async fn wait(&self, topic: &str, payload: usize) {
        // The whole PUBLISH packet counts against a byte cap, not only its
        // payload (an upper bound of its header: safe).
        let len = topic.len() + payload + PUBLISH_OVERHEAD;
        let ticket = self.state().order.push(flow(topic), payload);
        let mut place = Place {
            gate: self,
            ticket: Some(ticket),
        };
        loop {
            // Listening before looking, so a turn that moves on between the
            // look and the wait is not missed.
            let mut moved = pin!(self.turn.notified());
            moved.as_mut().enable();
            let ready_at = {
                let mut s = self.state();
                if s.order.next() == Some(ticket) {
                    let now = Instant::now();
                    let at = s.pacer.ready_at(len, now);
                    if at <= now {
                        s.pacer.take(len, now);
                        s.order.went(ticket);
                        place.ticket = None;
                        drop(s);
                        self.turn.notify_waiters();
                        return;
                    }
                    Some(at)
                } else {
                    None
                }
            };
            match ready_at {
                // Our turn, once the caps allow; unless a small frame comes
                // and takes the turn meanwhile.
                Some(at) => {
                    tokio::select! {
                        () = moved => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => moved.await,
            }
        }
    }
}

/// A publish's place in the schedule while it waits: given up if the wait
/// is dropped (the session ended, a timeout around the send).
struct Place<'a> {
    gate: &'a Gate,
    ticket: Option<Ticket>,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.gate.state().order.cancel(t);
            self.gate.turn.notify_waiters();
        }
    }
}

/// The flow a publish belongs to, for taking turns: its topic (one per
/// session and direction). Hashed, so the schedule holds no strings; two
/// topics that collide merely share their turns.
fn flow(topic: &str) -> u64 {
    let mut h = DefaultHasher::new();
    topic.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests;
