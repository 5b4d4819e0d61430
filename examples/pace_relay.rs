//! A slow link with a deep buffer, for benchmarks (issue 23): the test
//! harness's `tests/common/pace.rs` (included, so the relay is written
//! once) as a program.
//!
//! Usage: `pace_relay UPSTREAM_HOST:PORT BYTES_PER_SEC [BUFFER_SECONDS]`.
//! It listens on a free 127.0.0.1 port, prints that port as the first line
//! on stdout, and relays every connection to UPSTREAM, both directions
//! paced to BYTES_PER_SEC, each with a buffer of BUFFER_SECONDS (default 4)
//! of that rate. Chain it with `delay_relay` for a far path.

#[allow(dead_code)] // the harness's constructor the program does not need
#[path = "../tests/common/pace.rs"]
mod pace;

use anyhow::{Context, Result};

fn main() -> Result<()> {
    let usage = "usage: pace_relay UPSTREAM_HOST:PORT BYTES_PER_SEC [BUFFER_SECONDS]";
    let mut args = std::env::args().skip(1);
    let upstream = args.next().context(usage)?;
    let rate: u64 = args.next().context(usage)?.parse().context(usage)?;
    let buffer_secs: f64 = args.next().map_or(Ok(4.0), |s| s.parse()).context(usage)?;
    let relay = pace::PaceRelay::start_to(&upstream, rate, buffer_secs);
    println!("{}", relay.port());
    loop {
        std::thread::park();
    }
}
