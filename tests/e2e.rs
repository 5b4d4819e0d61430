//! The end-to-end suite, built as one test binary: every file beside this
//! one is a module of it, and `common/` is the harness they share.
//!
//! One binary instead of one per file: the harness and the dependencies are
//! compiled and linked once, not once per file, and libtest's threads take
//! the next test from the whole suite, not from one file at a time, so a
//! file's long test no longer leaves the other thread idle at its end. Each
//! test still starts its own brokers, sshd and agents on free ports, with
//! names no other test uses (`common::host`).
//!
//! Run one file's tests with a filter: `cargo test --profile ci --test e2e
//! resilience::`.

mod common;

mod access;
mod bridge;
mod docs;
mod failover;
mod harness;
mod hostile;
mod interactive;
mod limits;
mod list;
mod liveness;
mod message_size;
mod mqtt5;
mod ops;
mod ops_files;
mod resilience;
mod security;
mod transport;
mod tunnel;
