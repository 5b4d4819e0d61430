//! The proxy's stdin/stdout as async byte streams.
//!
//! ssh connects a ProxyCommand through two pipes. We take our own duplicates
//! of fds 0 and 1 and point fd 1 at /dev/null, so that (a) nothing stray can
//! ever write into the SSH stream, and (b) dropping our writer really closes
//! the pipe, which is how the far side's half-close reaches ssh as EOF.
//! Pipes are driven non-blocking by the reactor; anything else (a file, a
//! terminal, a socket) falls back to tokio's blocking-thread file I/O.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::unix::pipe;

pub type Reader = Pin<Box<dyn AsyncRead + Send>>;
pub type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// Take over stdin and stdout. Call once, before anything else writes to
/// stdout. Also a watch on who reads our stdout ([`ReaderGone`]).
pub fn take() -> io::Result<(Reader, Writer, ReaderGone)> {
    let stdin = io::stdin().as_fd().try_clone_to_owned()?;
    let stdout = io::stdout().as_fd().try_clone_to_owned()?;
    let watched = stdout.try_clone()?;
    let devnull = File::options().write(true).open("/dev/null")?;
    rustix::stdio::dup2_stdout(&devnull)?;
    Ok((reader(stdin)?, writer(stdout)?, ReaderGone(watched)))
}

/// How often [`ReaderGone::wait`] looks: one `poll(2)` a second.
const GONE_CHECK: Duration = Duration::from_secs(1);

/// Whether the process that reads our stdout (ssh) is gone. ssh sends its
/// ProxyCommand SIGHUP when it exits, but not when it is killed or
/// crashes; then only its end of the pipe closes, which `poll(2)` reports
/// on ours as an error (a socket: a hang-up). Without this, a proxy whose
/// ssh was killed kept its session open until the resume timeout (10 min),
/// holding a session slot and an sshd connection on the agent.
pub struct ReaderGone(OwnedFd);

impl ReaderGone {
    /// Completes once nobody reads our stdout any more. Never, for a
    /// regular file or a terminal.
    pub async fn wait(self) {
        loop {
            if self.gone() {
                return;
            }
            tokio::time::sleep(GONE_CHECK).await;
        }
    }

    fn gone(&self) -> bool {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let mut fds = [PollFd::new(&self.0, PollFlags::empty())];
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        matches!(poll(&mut fds, Some(&now)), Ok(n) if n > 0)
            && fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP)
    }
}

fn is_fifo(fd: &OwnedFd) -> bool {
    rustix::fs::fstat(fd).is_ok_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Fifo
    })
}

/// Pipe capacity we ask for. Linux's default, 64 KiB, holds a chunk or
/// two, so the proxy woke for every chunk ssh drained; with room for many
/// it hands ssh a burst and sleeps while ssh drains it (A/B, 256 MiB scp
/// through a loopback broker: 0.52 to 0.63 of direct down, 0.69 to 0.78
/// up). Up to `/proc/sys/fs/pipe-max-size` (1 MiB by default); a refusal
/// (the user's pipe quota) keeps the default.
const PIPE_SIZE: usize = 1 << 20;

fn grow_pipe(fd: &OwnedFd) {
    if let Err(e) = rustix::pipe::fcntl_setpipe_size(fd, PIPE_SIZE) {
        tracing::debug!(error = %e, "could not enlarge the pipe; keeping its size");
    }
}

fn reader(fd: OwnedFd) -> io::Result<Reader> {
    if is_fifo(&fd) {
        grow_pipe(&fd);
        Ok(Box::pin(pipe::Receiver::from_owned_fd(fd)?))
    } else {
        Ok(Box::pin(tokio::fs::File::from_std(File::from(fd))))
    }
}

fn writer(fd: OwnedFd) -> io::Result<Writer> {
    if is_fifo(&fd) {
        grow_pipe(&fd);
        Ok(Box::pin(pipe::Sender::from_owned_fd(fd)?))
    } else {
        Ok(Box::pin(tokio::fs::File::from_std(File::from(fd))))
    }
}
