//! The order in which publishes waiting behind the rate caps go (issue 23:
//! a keystroke never waits behind a copy). Every session of a node shares
//! the agent's one broker connection, and so its pacer; served first come,
//! first served, a keystroke's echo waited behind the bulk chunk of every
//! session that got in line first (up to [`super::pacer::max_packet`], about
//! 50 ms each at the byte cap). No I/O and no clock: `gate` asks whose turn
//! it is, and the pacer says when that one may go.
//!
//! Three rules:
//! - Small frames ([`SMALL_FRAME`]: keystrokes, echoes, acknowledgements,
//!   control frames) go before bulk ones. They cost the byte cap next to
//!   nothing, so a bulk frame waiting for its bytes loses almost no time to
//!   them, and they never wait for a bulk frame's bytes.
//! - Within a class, flows (topics: one per session and direction) take
//!   turns, one frame each, and a flow's own frames keep their order. A
//!   session awaits each of its sends, so it has at most one frame waiting
//!   and this is simply first come, first served; the turns matter only if a
//!   flow queues several (a flood of control frames): it then delays any
//!   other flow by one frame per turn, not by its whole queue.
//! - A bulk frame is never starved: after [`MAX_PASSES`] small frames in a
//!   row went while one waited, the oldest bulk frame goes next.
//!
//! Memory: one entry per waiting publish and nothing once it went or gave
//! up; the number waiting is bounded by the callers (each session awaits its
//! send, the control queue is bounded).

use std::collections::VecDeque;

/// The largest payload that counts as a small frame. A keystroke, its echo
/// and a pure acknowledgement are a frame header, a few bytes and a seal
/// tag (about 100 bytes); a control frame (opening handshake, presence) a
/// few hundred. A bulk chunk under a byte cap is tens of KiB
/// ([`super::pacer::max_packet`]: 25 KB at 512 KB/s), so 1 KiB separates the
/// two with room on both sides. At 1 KiB a small frame takes 2 ms of a
/// 512 KB/s cap: letting it pass costs a bulk frame almost nothing.
pub const SMALL_FRAME: usize = 1024;

/// How many small frames may go in a row while a bulk frame waits before
/// the bulk frame goes first. A bulk frame waits about one message time
/// (50 ms) for its bytes, during which a publish cap of 100/s lets at most
/// 13 publishes go (a burst of 9 and 4 at the paced rate,
/// `pacer::publish_bucket`); so typing, echoes and acks never reach 16 in
/// one wait, and a keystroke does not end up behind a bulk frame because of
/// this rule. A flood of small frames still leaves bulk data one publish in
/// 17 (under a byte cap alone, at least 25 KB of every 41 KB).
pub const MAX_PASSES: u32 = 16;

/// A place in the schedule, returned by [`Schedule::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(u64);

/// The publishes waiting behind the rate caps of one connection.
#[derive(Debug, Default)]
pub struct Schedule {
    small: Class,
    bulk: Class,
    /// Small frames that went in a row while a bulk frame waited.
    passed: u32,
    next_id: u64,
}

/// The waiting frames of one class: the flows that have any, in the order
/// of their turns, each with its frames in the order they came.
#[derive(Debug, Default)]
struct Class {
    flows: VecDeque<(u64, VecDeque<Ticket>)>,
}

impl Class {
    fn push(&mut self, flow: u64, t: Ticket) {
        match self.flows.iter_mut().find(|(f, _)| *f == flow) {
            Some((_, q)) => q.push_back(t),
            None => self.flows.push_back((flow, VecDeque::from([t]))),
        }
    }

    fn head(&self) -> Option<Ticket> {
        self.flows.front().and_then(|(_, q)| q.front().copied())
    }

    /// Take the head; its flow, if it has more waiting, goes to the back.
    fn pop(&mut self) {
        let Some((flow, mut q)) = self.flows.pop_front() else {
            return;
        };
        q.pop_front();
        if !q.is_empty() {
            self.flows.push_back((flow, q));
        }
    }

    fn remove(&mut self, t: Ticket) -> bool {
        for i in 0..self.flows.len() {
            let q = &mut self.flows[i].1;
            if let Some(j) = q.iter().position(|&x| x == t) {
                q.remove(j);
                if q.is_empty() {
                    self.flows.remove(i);
                }
                return true;
            }
        }
        false
    }

    fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
}

impl Schedule {
    /// A publish of `payload` bytes on flow `flow` (its topic, hashed) joins
    /// the schedule.
    pub fn push(&mut self, flow: u64, payload: usize) -> Ticket {
        let t = Ticket(self.next_id);
        self.next_id += 1;
        if payload <= SMALL_FRAME {
            self.small.push(flow, t);
        } else {
            self.bulk.push(flow, t);
        }
        t
    }

    /// The publish whose turn it is, if any waits.
    pub fn next(&self) -> Option<Ticket> {
        let bulk_first = self.small.is_empty() || self.passed >= MAX_PASSES;
        match bulk_first {
            true => self.bulk.head().or(self.small.head()),
            false => self.small.head(),
        }
    }

    /// The publish [`Schedule::next`] named went: it leaves the schedule.
    /// Anything else is ignored.
    pub fn went(&mut self, t: Ticket) {
        if self.next() != Some(t) {
            return;
        }
        if self.bulk.head() == Some(t) {
            self.bulk.pop();
            self.passed = 0;
        } else {
            self.small.pop();
            self.passed = match self.bulk.is_empty() {
                true => 0,
                false => self.passed + 1,
            };
        }
    }

    /// The publish gave up waiting (its caller went away): it leaves the
    /// schedule without going.
    pub fn cancel(&mut self, t: Ticket) {
        if !self.small.remove(t) {
            self.bulk.remove(t);
        }
        if self.bulk.is_empty() {
            self.passed = 0;
        }
    }
}

#[cfg(test)]
mod tests;
