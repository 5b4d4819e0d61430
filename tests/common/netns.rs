//! A network namespace of its own for one test, and packet loss on one
//! established TCP connection in it: a link that dies silently, while new
//! connections still get through.
//!
//! [`Netns::enter`] moves the calling thread (the test's) into a fresh
//! namespace with only `lo` up. Namespaces are per thread in Linux and a
//! child process starts in its parent thread's, so every helper of this
//! module (broker, sshd, agent, ssh and its ProxyCommand) then starts and is
//! polled on that namespace's loopback unchanged, and the pids the test
//! holds are the programs' own. Needs root (`ip netns`, `iptables`), as CI
//! has; without it the test fails and says so.

use std::fs::{self, File};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

use rustix::process::{kill_process, Pid, Signal};
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

use super::host::{find_tool, is_root, unique_id};
use super::procfs::tcp_local_ports;

/// A network namespace the current thread is in until this drops; then
/// whatever still runs in it is SIGKILLed by pid, the thread goes back to
/// the namespace it came from and the namespace is deleted. Declare it
/// before the processes started in it (or as the last field of a struct
/// holding them), so that their owners stop them first.
pub struct Netns {
    name: String,
    home: File,
}

impl Netns {
    /// Create a namespace with a name unique to this test run, bring its
    /// `lo` up and move the calling thread into it.
    pub fn enter(tag: &str) -> Netns {
        assert!(
            is_root(),
            "this test needs root: it builds a network namespace (ip netns) and drops one \
             connection's packets (iptables); run it as root, as CI does"
        );
        let name = format!("mqtt-proxy-{}", unique_id(tag));
        run_ip(&["netns", "add", &name]);
        let home = File::open("/proc/thread-self/ns/net").expect("open this thread's netns");
        let ns = Netns { name, home };
        run_ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        let path = format!("/run/netns/{}", ns.name);
        let target = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        move_into_link_name_space(target.as_fd(), Some(LinkNameSpaceType::Network))
            .unwrap_or_else(|e| panic!("setns into {path}: {e}"));
        let inode = |p: &str| fs::metadata(p).map(|m| m.ino()).ok();
        assert_eq!(
            inode("/proc/thread-self/ns/net"),
            inode(&path),
            "the test thread is not in {path} after setns"
        );
        ns
    }

    /// Drop every packet, both ways, of the established TCP connections
    /// process `pid` has to local port `remote_port` (a broker's): what a
    /// Wi-Fi that went away or a NAT that forgot the mapping does. Nothing
    /// is sent to either end; a new connection (another local port) passes.
    /// Returns the local ports cut; panics if there were none.
    pub fn cut(&self, pid: u32, remote_port: u16) -> Vec<u16> {
        let ports = tcp_local_ports(pid, remote_port);
        assert!(
            !ports.is_empty(),
            "process {pid} has no established connection to port {remote_port} to cut"
        );
        let remote = remote_port.to_string();
        for port in &ports {
            let local = port.to_string();
            // On loopback both directions pass INPUT; dropping them there
            // (not in OUTPUT, where the sender would get an error back)
            // leaves the senders' TCP waiting for acks that never come.
            for (sport, dport) in [(&local, &remote), (&remote, &local)] {
                self.exec(
                    "iptables",
                    &[
                        "-w", "-I", "INPUT", "-p", "tcp", "--sport", sport, "--dport", dport, "-j",
                        "DROP",
                    ],
                );
            }
        }
        ports
    }

    /// Run `program ARGS...` in the namespace (explicitly, whichever thread
    /// calls) and panic with its stderr unless it succeeds.
    fn exec(&self, program: &str, args: &[&str]) {
        let out = Command::new(find_tool("ip"))
            .args(["netns", "exec", &self.name])
            .arg(find_tool(program))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {program} in netns {}: {e}", self.name));
        assert!(
            out.status.success(),
            "{program} {args:?} in netns {} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // What its owner did not stop (ssh's ProxyCommand when ssh was
        // killed, a process left SIGSTOPped) would keep the namespace alive.
        if let Ok(out) = Command::new(find_tool("ip"))
            .args(["netns", "pids", &self.name])
            .stdin(Stdio::null())
            .output()
        {
            let text = String::from_utf8_lossy(&out.stdout);
            // Not this test process: when libtest runs a test on its main
            // thread, the process itself is listed.
            let me = std::process::id().to_string();
            for pid in text.split_whitespace().filter(|p| *p != me) {
                if let Some(pid) = pid.parse().ok().and_then(Pid::from_raw) {
                    // An error means it has exited meanwhile.
                    let _ = kill_process(pid, Signal::KILL);
                }
            }
        }
        // Failing to go home (which cannot happen for a namespace we came
        // from) must not hide the test's own panic; the thread ends anyway.
        let _ = move_into_link_name_space(self.home.as_fd(), Some(LinkNameSpaceType::Network));
        if Path::new(&format!("/run/netns/{}", self.name)).exists() {
            // Best effort: a leftover namespace holds nothing but `lo`.
            let _ = Command::new(find_tool("ip"))
                .args(["netns", "del", &self.name])
                .stdin(Stdio::null())
                .status();
        }
    }
}

/// `ip ARGS...`, panicking with its stderr unless it succeeds.
fn run_ip(args: &[&str]) {
    let out = Command::new(find_tool("ip"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Send `signal` to process `pid` (SIGSTOP and SIGCONT for a laptop that
/// sleeps); panics if it is gone.
pub fn send_signal(pid: u32, signal: Signal) {
    let raw = i32::try_from(pid).ok().and_then(Pid::from_raw);
    let pid = raw.unwrap_or_else(|| panic!("{pid} is no process id"));
    kill_process(pid, signal).unwrap_or_else(|e| panic!("kill -{signal:?} {pid:?}: {e}"));
}
