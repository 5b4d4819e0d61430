//! When sessions drain the queue together, and how far what a drain
//! measures is trusted: see [`DRAIN_PERIOD`] and [`DOUBT_SLACK`].

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Sessions whose window the queue holds back drop it to the floor at
/// every multiple of this period of the wall clock, all at once, for
/// [`DRAIN_ROUND_TRIPS`]: the queue drains, each measures the path's round
/// trip afresh from that moment alone, and all of them read the queue off
/// the same base. Without it, a session that first measured the path
/// behind another's queue takes that queue for the path and keeps it
/// there, and the first session, seeing a queue above the target for good,
/// shrinks to the floor (LEDBAT's latecomer problem: two copies to one
/// node over a 1 MiB/s link split it 1 to 3). LEDBAT++ drains periodically
/// for the same reason; tying the moment to the wall clock lines up
/// sessions in other processes and on other machines (whose clocks agree
/// to a few milliseconds when NTP keeps them).
///
/// Every 6 s: each drain costs a lone copy about two round trips of an
/// idle link, 7-8 % of a 40 ms paced path at 3 s (copies 0.81 / 0.83 of
/// the link, 0.89 / 0.91 without drains). A new session waits at most a
/// [`FIRST_DRAIN_PERIOD`] for its first drain.
pub const DRAIN_PERIOD: Duration = Duration::from_secs(6);

/// A session that has drained less than [`EARLY_DRAINS`] times drains at
/// every multiple of this period instead (when the queue holds it back):
/// a third of [`DRAIN_PERIOD`], so every regular drain is one of these
/// too. Two
/// copies started together measure their bases apart: the first alone,
/// the second behind the first's queue, and the first then sits at the
/// floor until a drain gives both one base (two downloads over a relay
/// paced to 1 MiB/s, traced: the first at the floor for 1.7-5.5 s while
/// the second held 21 KiB). Only the first drains come early
/// ([`EARLY_DRAINS`]), so a lone copy pays two or three drains more,
/// once. With this (the first drain alone early) and the held base
/// (`DelayFilter::held_until`), two downloads over that relay split
/// under 0.8 of each other in none of 14 runs (0.88-1.00), against 6 of
/// 29 before (0.39-0.75), the same hours.
pub const FIRST_DRAIN_PERIOD: Duration = Duration::from_secs(DRAIN_PERIOD.as_secs() / 3);

/// How many of a session's drains come at a [`FIRST_DRAIN_PERIOD`]: the
/// first two. Two copies started together measure their first drains
/// apart as often as not: one is held back before a boundary, the other,
/// still in slow start, only before the next, and each first drain
/// measures the other's queue (two uploads over the 40 ms relay path
/// paced to 1 MiB/s, traced: bases of 100.7 and 82.1 ms on a path of 52,
/// and the session with the higher held 14 times the other's window
/// until the next regular drain, 6 s later). A second drain 2 s after
/// the first meets the other's first or second. A lone copy pays one
/// drain more than with only the first early, once.
pub const EARLY_DRAINS: u8 = 2;

/// A regular drain (not a session's first) whose least round trip is more
/// than this above the base the regular drain before it measured is
/// doubted (or more than [`DOUBT_SHARE`] of that base, the larger): the
/// base stays, held, and the next drain counts whatever it measures. At
/// the floor each session keeps two chunks in flight, acked one round
/// trip later, so two sessions' pairs keep their order through a whole
/// drain, and one session's samples can all trail the other's pair. Two
/// uploads over a 40 ms path paced to 1 MiB/s (TUN, cubic; 10 runs
/// traced): 5 of 150 drains set a base 6-26 ms above the other session's,
/// which had measured the path (45-47 ms) at the same moment; the session
/// with the higher base then held 4-12 times the other's window until the
/// next drain.
///
/// A session's first drain is not in step with the others' (it comes at
/// a [`FIRST_DRAIN_PERIOD`], perhaps before another session started), so
/// the drain after it is not doubted (though it is regular, and perhaps
/// early too: [`EARLY_DRAINS`]): two downloads over a relay paced to
/// 1 MiB/s, where the sessions' floors are the queue a drain measures,
/// traced a first drain of 7.4 ms alone and 16.3 ms at the next drain
/// with both, the other session's level.
pub const DOUBT_SLACK: Duration = Duration::from_millis(2);

/// Over a far path the slack of [`DOUBT_SLACK`] is this share of the base.
pub const DOUBT_SHARE: f64 = 1.0 / 16.0;

/// How much a drain may measure above the base `base` an earlier drain
/// measured and still be trusted ([`DOUBT_SLACK`], [`DOUBT_SHARE`]).
pub(super) fn doubt_slack(base: Duration) -> Duration {
    DOUBT_SLACK.max(base.mul_f64(DOUBT_SHARE))
}

/// How long a drain lasts, in round trips: one for the queue to empty,
/// one to measure it empty.
pub const DRAIN_ROUND_TRIPS: u32 = 2;

/// A drain under way (see [`DRAIN_PERIOD`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Drain {
    /// Not the session's first: at a [`DRAIN_PERIOD`] boundary (or the
    /// second, at a [`FIRST_DRAIN_PERIOD`]: [`EARLY_DRAINS`]), with every
    /// session through the bottleneck that has drained before.
    pub(super) regular: bool,
    pub(super) until: Instant,
    /// The window before it.
    pub(super) window: f64,
    /// The round trip before it (the smaller of the two latest samples).
    pub(super) before: Duration,
    /// The smallest round trip during it (a drain ends on a sample, so
    /// there is at least one).
    pub(super) least: Duration,
    /// The epoch ([`epoch`]) it began in.
    pub(super) epoch: u64,
}

/// Which [`FIRST_DRAIN_PERIOD`] of the wall clock `now` falls in (a
/// [`DRAIN_PERIOD`] is `EPOCHS_PER_PERIOD` of them).
pub fn epoch(now: Instant) -> u64 {
    static ANCHOR: OnceLock<(Instant, Duration)> = OnceLock::new();
    let (at, wall) = *ANCHOR.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        (Instant::now(), wall)
    });
    let wall = match now.checked_duration_since(at) {
        Some(after) => wall + after,
        None => wall.saturating_sub(at - now),
    };
    (wall.as_millis() / FIRST_DRAIN_PERIOD.as_millis()) as u64
}

/// [`FIRST_DRAIN_PERIOD`]s per [`DRAIN_PERIOD`].
pub(super) const EPOCHS_PER_PERIOD: u64 = DRAIN_PERIOD.as_secs() / FIRST_DRAIN_PERIOD.as_secs();
// Every regular drain's boundary is an epoch's: whole seconds, one a
// multiple of the other.
const _: () = assert!(
    FIRST_DRAIN_PERIOD.subsec_nanos() == 0
        && DRAIN_PERIOD.subsec_nanos() == 0
        && DRAIN_PERIOD
            .as_secs()
            .is_multiple_of(FIRST_DRAIN_PERIOD.as_secs())
);
