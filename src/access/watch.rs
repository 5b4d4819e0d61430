//! Re-reading `authorized_keys` and the revoked keys when they change,
//! without a restart.
//!
//! A task polls both files' metadata (device, inode, size, modification
//! and change times) every [`POLL`]: a replacement by rename (editors,
//! `sed -i`) shows as a new inode, an edit in place as a new time or size.
//! Polling rather than inotify: it sees a rename over the file as surely
//! as a write, needs no re-arming when the inode changes, and costs two
//! `stat`s a second. A change is read once its metadata stayed the same
//! for one poll, so a file caught half-written is not taken for a shorter
//! list (which would end sessions it still allows). A file that does not
//! parse (or is missing) keeps the lists we had, with a warning.
//!
//! The decision (when to read) is [`Tracker`], without I/O.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{Access, ParseError};

/// How often the files' metadata is looked at. A change is read at the
/// second poll that sees it, and must be in force within 5 s (issue 24):
/// at most 2 s plus the read.
pub const POLL: Duration = Duration::from_secs(1);

/// The files an agent checks sessions against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    pub authorized_keys: PathBuf,
    /// `None`: no revoked-keys file.
    pub revoked_keys: Option<PathBuf>,
}

/// Why the files could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("could not read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Parse { path: PathBuf, source: ParseError },
}

/// What identifies one state of a file; `None` when it cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// Both files' stamps.
pub type Stamps = (Option<Stamp>, Option<Stamp>);

/// When to read the files again, from what the polls saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    /// The stamps of the files we last read.
    current: Stamps,
    /// A change seen at the last poll, read if the next poll sees it again.
    pending: Option<Stamps>,
}

impl Tracker {
    /// Tracking from the files as read at `stamps`.
    pub fn new(stamps: Stamps) -> Tracker {
        Tracker {
            current: stamps,
            pending: None,
        }
    }

    /// One poll saw `seen`: whether to read the files now.
    pub fn observe(&mut self, seen: Stamps) -> bool {
        if seen == self.current {
            self.pending = None;
            return false;
        }
        if self.pending == Some(seen) {
            return true;
        }
        self.pending = Some(seen);
        false
    }

    /// The files were read (well or not) at `stamps`: a failed read is
    /// not retried until the files change again.
    pub fn read(&mut self, stamps: Stamps) {
        self.current = stamps;
        self.pending = None;
    }
}

async fn stamp(path: &Path) -> Option<Stamp> {
    let m = tokio::fs::metadata(path).await.ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

async fn stamps(files: &Files) -> Stamps {
    let revoked = match &files.revoked_keys {
        Some(path) => stamp(path).await,
        None => None,
    };
    (stamp(&files.authorized_keys).await, revoked)
}

async fn read(path: &Path) -> Result<String, LoadError> {
    tokio::fs::read_to_string(path)
        .await
        .map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })
}

/// Read and parse both files.
pub async fn load(files: &Files) -> Result<Access, LoadError> {
    let text = read(&files.authorized_keys).await?;
    let authorized = super::parse_authorized_keys(&text).map_err(|source| LoadError::Parse {
        path: files.authorized_keys.clone(),
        source,
    })?;
    let revoked = match &files.revoked_keys {
        Some(path) => {
            let text = read(path).await?;
            super::parse_revoked_keys(&text).map_err(|source| LoadError::Parse {
                path: path.clone(),
                source,
            })?
        }
        None => Default::default(),
    };
    Ok(Access::new(authorized, revoked))
}

/// Load the files, then keep the lists current in a task polling every
/// `poll` ([`POLL`] in production): the receiver sees each new version.
/// The task ends when every receiver is dropped.
pub async fn spawn(
    files: Files,
    poll: Duration,
) -> Result<watch::Receiver<Arc<Access>>, LoadError> {
    let before = stamps(&files).await;
    let access = load(&files).await?;
    let (tx, rx) = watch::channel(Arc::new(access));
    let mut tracker = Tracker::new(before);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if tx.is_closed() {
                return;
            }
            let seen = stamps(&files).await;
            if !tracker.observe(seen) {
                continue;
            }
            tracker.read(seen);
            match load(&files).await {
                Ok(access) => {
                    tracing::info!(
                        authorized = access.authorized.entries.len(),
                        revoked = access.revoked.keys.len(),
                        "access lists re-read"
                    );
                    tx.send_if_modified(|current| {
                        let changed = **current != access;
                        if changed {
                            *current = Arc::new(access);
                        }
                        changed
                    });
                }
                Err(e) => tracing::warn!("{e:#}; keeping the access lists in force"),
            }
        }
    });
    Ok(rx)
}

#[cfg(test)]
mod tests;
