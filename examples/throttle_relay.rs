//! A relay with a hosted broker's per-connection limits, for
//! `scripts/bench-caps`: the test harness's `tests/common/throttle.rs`
//! (included, so the relay is written once) as a program.
//!
//! Usage: `throttle_relay UPSTREAM_PORT PUBLISHES_PER_SEC [BYTES_PER_SEC]`.
//! It listens on a free 127.0.0.1 port, prints that port as the first line
//! on stdout, forwards every connection to 127.0.0.1:UPSTREAM_PORT, and
//! prints `disconnect` on stdout for every connection it closes for
//! publishing above the limit.

#[allow(dead_code)] // the harness's accessors the program does not need
#[path = "../tests/common/throttle.rs"]
mod throttle;

use std::process::ExitCode;

fn main() -> ExitCode {
    let usage = "usage: throttle_relay UPSTREAM_PORT PUBLISHES_PER_SEC [BYTES_PER_SEC]";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [port, n] => port
            .parse()
            .ok()
            .zip(n.parse().ok())
            .map(|(p, n)| (p, n, None)),
        [port, n, b] => port
            .parse()
            .ok()
            .zip(n.parse().ok())
            .zip(b.parse().ok())
            .map(|((p, n), b)| (p, n, Some(b))),
        _ => None,
    };
    let Some((upstream, publishes_per_sec, bytes_per_sec)) = parsed else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let limits = throttle::Limits {
        publishes_per_sec,
        bytes_per_sec,
    };
    let relay = throttle::Throttle::start_with(upstream, limits, || println!("disconnect"));
    println!("{}", relay.port());
    loop {
        std::thread::park();
    }
}
