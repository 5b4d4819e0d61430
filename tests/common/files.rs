//! Test data and its comparison: random files, byte-exact and tree
//! comparisons, checksums, transfer rates.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::process::assert_success;

/// Write `len` pseudo-random bytes to `path` (splitmix64 seeded per call:
/// incompressible and different for every file, and fast even in debug).
pub fn write_random_file(path: &Path, len: u64) {
    static SEEDS: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut state =
        nanos ^ (u64::from(std::process::id()) << 32) ^ SEEDS.fetch_add(1, Ordering::Relaxed);
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut file = io::BufWriter::new(File::create(path).expect("create random file"));
    let mut buf = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            let word = next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        file.write_all(&buf[..n]).expect("write random file");
        left -= n as u64;
    }
    file.flush().expect("flush random file");
}

/// Panic unless the two files have identical contents; the message names the
/// sizes and the first differing offset.
pub fn assert_files_equal(expected: &Path, actual: &Path) {
    let open = |p: &Path| {
        File::open(p).unwrap_or_else(|e| panic!("open {} for comparison: {e}", p.display()))
    };
    let (la, lb) = (
        open(expected).metadata().expect("stat").len(),
        open(actual).metadata().expect("stat").len(),
    );
    assert_eq!(
        la,
        lb,
        "{} has {la} bytes but {} has {lb}",
        expected.display(),
        actual.display()
    );
    let (mut a, mut b) = (
        io::BufReader::new(open(expected)),
        io::BufReader::new(open(actual)),
    );
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    let mut offset = 0u64;
    loop {
        let n = read_full(&mut a, &mut ba);
        let m = read_full(&mut b, &mut bb);
        assert_eq!(n, m, "files changed while comparing");
        if let Some(i) = (0..n).find(|&i| ba[i] != bb[i]) {
            panic!(
                "{} and {} differ first at byte {}",
                expected.display(),
                actual.display(),
                offset + i as u64
            );
        }
        if n == 0 {
            return;
        }
        offset += n as u64;
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read during comparison: {e}"),
        }
    }
    filled
}

/// `sha256sum` of a file, as lowercase hex.
pub fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success(), "sha256sum {} failed", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum prints a digest")
        .to_owned()
}

/// Panic unless `diff -r` finds the two directory trees identical.
pub fn assert_trees_equal(expected: &Path, actual: &Path) {
    let out = Command::new("diff")
        .arg("-r")
        .arg(expected)
        .arg(actual)
        .output()
        .expect("run diff -r");
    assert_success(&out, "diff -r of the copied tree");
}

/// Megabytes per second for a transfer, for test output.
pub fn rate(bytes: u64, elapsed: Duration) -> String {
    format!(
        "{:.1} MB/s",
        bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
    )
}
