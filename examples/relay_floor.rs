//! The least CPU a process that relays bytes can use, for `scripts/bench`:
//! a thread reads MIB MiB from one loopback TCP connection and writes them
//! to another (what the agent does at the least: sshd's socket in, the
//! broker's out) or into a pipe (the proxy: the broker's socket in, ssh's
//! pipe out), with 1 MiB buffers and nothing else. Other threads feed and
//! drain it; the pipe is enlarged to 1 MiB, as the proxy's is. Prints
//! the relaying thread's own CPU time in clock ticks
//! (utime + stime of `/proc/thread-self/stat`).
//!
//! Usage: relay_floor tcp|pipe MIB

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

const BUF: usize = 1 << 20;

/// A connected loopback TCP pair.
fn tcp_pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    let a = TcpStream::connect(listener.local_addr()?)?;
    let (b, _) = listener.accept()?;
    Ok((a, b))
}

/// Read everything from `r` and throw it away.
fn drain(mut r: impl Read + Send + 'static) -> thread::JoinHandle<io::Result<u64>> {
    thread::spawn(move || {
        let mut buf = vec![0u8; BUF];
        let mut n = 0u64;
        loop {
            match r.read(&mut buf)? {
                0 => return Ok(n),
                k => n += k as u64,
            }
        }
    })
}

/// This thread's user + system CPU time, in clock ticks.
fn thread_ticks() -> io::Result<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat")?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the command name: state is field 0, utime 11, stime 12.
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (tick(11), tick(12)) {
        (Some(u), Some(s)) => Ok(u + s),
        _ => Err(io::Error::other("unreadable /proc/thread-self/stat")),
    }
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(Ok(mib))) = (args.get(1), args.get(2).map(|m| m.parse::<usize>())) else {
        eprintln!("usage: relay_floor tcp|pipe MIB");
        std::process::exit(2);
    };
    let (mut feed, mut input) = tcp_pair()?;
    let (mut output, drained): (Box<dyn Write + Send>, _) = match mode.as_str() {
        "tcp" => {
            let (out, end) = tcp_pair()?;
            (Box::new(out), drain(end))
        }
        "pipe" => {
            let (end, out) = rustix::pipe::pipe()?;
            // As the proxy asks for its stdout (src/stdio.rs).
            rustix::pipe::fcntl_setpipe_size(&out, BUF)?;
            (Box::new(File::from(out)), drain(File::from(end)))
        }
        _ => {
            eprintln!("usage: relay_floor tcp|pipe MIB");
            std::process::exit(2);
        }
    };
    let total = mib << 20;
    let feeder = thread::spawn(move || -> io::Result<()> {
        let buf = vec![0x5au8; BUF];
        for _ in 0..total / BUF {
            feed.write_all(&buf)?;
        }
        Ok(())
    });
    let before = thread_ticks()?;
    let mut buf = vec![0u8; BUF];
    let mut moved = 0;
    while moved < total {
        match input.read(&mut buf)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => {
                output.write_all(&buf[..n])?;
                moved += n;
            }
        }
    }
    let ticks = thread_ticks()? - before;
    drop(output);
    feeder.join().expect("feeder thread")?;
    let drained = drained.join().expect("drain thread")?;
    if drained != total as u64 {
        return Err(io::Error::other(format!(
            "drained {drained} of {total} bytes"
        )));
    }
    println!("{ticks}");
    Ok(())
}
