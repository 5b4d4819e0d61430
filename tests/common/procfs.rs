//! What a process holds, read from Linux's /proc: file descriptors,
//! threads, resident memory and TCP connections.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::process::read_lossy;

/// Open file descriptors of process `pid`.
pub fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("list /proc/{pid}/fd: {e}"))
        .count()
}

/// Threads of process `pid`.
pub fn thread_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap_or_else(|e| panic!("list /proc/{pid}/task: {e}"))
        .count()
}

/// Resident set size of process `pid` in KiB (`VmRSS` in /proc/PID/status).
pub fn vm_rss_kib(pid: u32) -> u64 {
    try_vm_rss_kib(pid)
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status (has the process exited?)"))
}

/// [`vm_rss_kib`], or None once the process is gone (a zombie has no
/// `VmRSS` line either).
pub fn try_vm_rss_kib(pid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Interval of [`RssSampler`]'s samples: a peak of a fraction of a second
/// is caught, and reading /proc this often costs the machine nothing.
pub const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Samples a process's VmRSS every [`RSS_SAMPLE_EVERY`] on a thread of its
/// own, until stopped or until the process is gone.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<(u64, usize)>,
}

impl RssSampler {
    /// Start sampling process `pid`.
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let (mut peak, mut samples) = (0, 0);
            while !flag.load(Ordering::Relaxed) {
                match try_vm_rss_kib(pid) {
                    Some(kib) => peak = peak.max(kib),
                    None => break,
                }
                samples += 1;
                thread::sleep(RSS_SAMPLE_EVERY);
            }
            (peak, samples)
        });
        RssSampler { stop, thread }
    }

    /// Stop sampling; returns the peak VmRSS in KiB and the number of
    /// samples taken.
    pub fn stop(self) -> (u64, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("RSS sampler thread panicked")
    }
}

/// TCP connections (any state but LISTEN) owned by process `pid` whose
/// remote end is port `remote_port`, from /proc/PID/net/tcp{,6} and the
/// socket inodes in /proc/PID/fd.
pub fn tcp_connections_to(pid: u32, remote_port: u16) -> usize {
    tcp_rows_to(pid, remote_port)
        .iter()
        .filter(|f| f[3] != "0A")
        .count()
}

/// The local ports of the ESTABLISHED TCP connections process `pid` has to
/// port `remote_port`.
pub fn tcp_local_ports(pid: u32, remote_port: u16) -> Vec<u16> {
    tcp_rows_to(pid, remote_port)
        .iter()
        .filter(|f| f[3] == "01")
        .map(|f| {
            let hex = f[1].rsplit(':').next().expect("local address has a port");
            u16::from_str_radix(hex, 16).expect("hex port in /proc/net/tcp")
        })
        .collect()
}

/// Whether process `pid` has an established TCP connection to port
/// `remote_port` and every byte it sent on them is acknowledged: an idle
/// link, on which only keepalive probes would go.
pub fn tcp_all_acked_to(pid: u32, remote_port: u16) -> bool {
    let rows: Vec<Vec<String>> = tcp_rows_to(pid, remote_port)
        .into_iter()
        .filter(|f| f[3] == "01")
        .collect();
    // tx_queue:rx_queue, in hex; tx_queue counts what is sent and not yet
    // acknowledged, and what is not sent yet.
    !rows.is_empty() && rows.iter().all(|f| f[4].starts_with("00000000:"))
}

/// The rows (split into fields: sl local rem st tx:rx tr:when retrnsmt uid
/// timeout inode ...) of /proc/PID/net/tcp{,6}, the tables of `pid`'s own
/// network namespace, for the sockets `pid` holds whose remote port is
/// `remote_port`.
fn tcp_rows_to(pid: u32, remote_port: u16) -> Vec<Vec<String>> {
    let inodes: std::collections::HashSet<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("list /proc/{pid}/fd: {e}"))
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy();
            Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let port_hex = format!("{remote_port:04X}");
    ["tcp", "tcp6"]
        .iter()
        .map(|table| read_lossy(Path::new(&format!("/proc/{pid}/net/{table}"))))
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        })
        .filter(|f| {
            f.len() > 9
                && f[2].rsplit(':').next() == Some(port_hex.as_str())
                && inodes.contains(&f[9])
        })
        .collect()
}

/// The processes whose parent is `pid` and whose name (`comm`, at most 15
/// bytes) is `name`, from /proc/*/stat.
pub fn children_named(pid: u32, name: &str) -> Vec<u32> {
    fs::read_dir("/proc")
        .expect("list /proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            // PID (COMM) STATE PPID ...; COMM may hold spaces and parentheses.
            let stat = read_lossy(Path::new(&format!("/proc/{child}/stat")));
            let Some((head, rest)) = stat.rsplit_once(") ") else {
                return false;
            };
            let comm = head.split_once(" (").map(|(_, c)| c);
            let ppid = rest.split_whitespace().nth(1);
            comm == Some(name) && ppid == Some(pid.to_string().as_str())
        })
        .collect()
}
