//! Which broker of a list a session uses (issue 25), without I/O: the
//! node's presence is looked up on every broker at once, and the broker
//! where it is online is used.
//!
//! An agent is connected to one broker at a time, but a broker it left
//! may still hold its retained "online" for a while: one it lost silently
//! publishes the agent's offline will only when the agent's keepalive
//! expires (1.5 × 120 s), and a broker that crashed with persistence on
//! comes back with the last presence it had. The agent announces itself
//! with a fresh `since` on every connect, so of several brokers that say
//! online, the one with the newest `since` is where the agent is; equal
//! ones go to the earlier broker of the list.

/// What one broker said about the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    /// No answer yet.
    Pending,
    /// Online, announced at `since` (Unix seconds).
    Online { since: u64 },
    /// A presence message that says offline.
    Offline,
    /// No presence message: the node never announced itself there.
    Unknown,
    /// The broker could not be asked: why, in one line.
    Unreachable(String),
}

/// What to do with the answers so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Choice {
    /// Wait for more answers.
    Wait,
    /// Use the broker at this index of the list.
    Use(usize),
    /// No broker says the node is online.
    Nowhere,
}

/// Decide from `answers` (one per broker, in list order). `grace_over`:
/// a broker said online long enough ago that brokers still silent are not
/// waited for (a broker that does not answer must not hold up every call
/// for its connect timeout).
pub(super) fn choose(answers: &[Answer], grace_over: bool) -> Choice {
    let pending = answers.contains(&Answer::Pending);
    let newest = answers
        .iter()
        .enumerate()
        .filter_map(|(i, a)| match a {
            Answer::Online { since } => Some((i, *since)),
            _ => None,
        })
        // The first of the newest: `max_by_key` keeps the last of equals.
        .fold(None, |best: Option<(usize, u64)>, (i, s)| match best {
            Some((_, b)) if b >= s => best,
            _ => Some((i, s)),
        });
    match newest {
        Some((i, _)) if !pending || grace_over => Choice::Use(i),
        None if !pending => Choice::Nowhere,
        _ => Choice::Wait,
    }
}

/// The one line for [`Choice::Nowhere`]: every broker tried and what it
/// said, in list order (`urls` and `answers` in the same order).
pub(super) fn nowhere(urls: &[String], answers: &[Answer]) -> String {
    let said: Vec<String> = urls
        .iter()
        .zip(answers)
        .map(|(url, a)| match a {
            Answer::Offline => format!("{url} offline"),
            Answer::Unknown => format!("{url} never announced"),
            Answer::Unreachable(why) => format!("{url} unreachable ({why})"),
            Answer::Pending => format!("{url} no answer"),
            Answer::Online { .. } => format!("{url} online"),
        })
        .collect();
    said.join(", ")
}

#[cfg(test)]
mod tests;
