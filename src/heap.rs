//! Keep freed heap memory for reuse instead of handing it back at once.
//!
//! Every byte goes through short-lived buffers of 32 to 128 KiB (rumqttc's
//! read buffer, chunks kept until acknowledged). glibc gives free memory at
//! the top of its heap back to the kernel once there is more than 128 KiB of
//! it (`M_TRIM_THRESHOLD`), so the next buffers fault their pages in again:
//! `perf` put a fifth of the proxy's samples in page faults during a loopback
//! download, and the agent took about 9,500 minor faults per 128 MiB. glibc
//! raises its thresholds when a block it had to map is freed (mallopt(3),
//! "dynamic mmap threshold"): blocks below that size then come from the
//! heap, and the heap keeps up to twice that size free. So freeing one block
//! of [`KEEP`] bytes at start-up is `mallopt` without `unsafe`. With a 4 MiB
//! block the agent took about 600 faults per 128 MiB, and 256 MiB scp over a
//! loopback stock mosquitto (`scripts/bench-ab`, 5 rounds each way) went
//! from 0.81 to 0.89 of direct down and from 0.89 to 0.93 up; agent, proxy
//! and broker together from 2.34 to 2.08 and from 2.65 to 2.37 CPU-s/GiB.
//! Any other allocator only sees one allocation.

/// The size of the start-up block: at most this much freed memory is kept
/// (twice it at the top of the heap). Against 4 MiB, 5 rounds down: 0.82
/// against 0.84 of direct, 2.18 against 2.19 CPU-s/GiB (about 1,550 agent
/// faults per 128 MiB instead of 600), for a quarter of the memory kept.
pub const KEEP: usize = 1 << 20;

/// Call once at start-up, before anything else allocates much.
pub fn keep_freed_memory() {
    // black_box: an allocation nobody uses may be optimised away.
    drop(std::hint::black_box(Vec::<u8>::with_capacity(KEEP)));
}
