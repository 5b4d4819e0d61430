//! The operations files, checked with the real tools: the systemd unit with
//! `systemd-analyze` (security rating, `verify`) and against the system calls
//! the agent makes under `strace`; `ssh_config.example` with real ssh, scp,
//! sftp, rsync and git through `mqtt-proxy`; `scripts/install-agent` into a
//! temporary DESTDIR; the Debian package `scripts/package` builds, with
//! `dpkg-deb` and installed by `dpkg` into a throwaway root. Nothing is skipped: a missing tool is a failure that
//! names it (`scripts/install-deps` installs them all).
//!
//! One file per concern: `unit` (`systemd-analyze security` and `verify`),
//! `syscalls` (the agent under `strace` against the unit's filters),
//! `ssh_config` (`ssh_config.example`), `install_agent`
//! (`scripts/install-agent`) and `package` (the Debian package). This file
//! holds the shipped files' paths and the helpers they share.

// The man pages and completions, generated in-process from the same code
// `examples/gen_docs` runs, so the test needs no second cargo build.
#[path = "../examples/gen_docs/docs.rs"]
mod docs;

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::common::*;
use tempfile::TempDir;

mod install_agent;
mod package;
mod ssh_config;
mod syscalls;
mod unit;

/// The unit as shipped.
const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/systemd/mqtt-proxy-agent.service"
);
const UNIT_NAME: &str = "mqtt-proxy-agent.service";
const ENV_EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/agent.env.example");
/// Where the unit expects the agent (scripts/install-agent's default).
const INSTALLED_AGENT: &str = "/usr/local/bin/mqtt-proxy-agent";
/// Where distributions put systemd's own units (Debian: /lib is /usr/lib).
const SYSTEM_UNIT_DIRS: &[&str] = &["/usr/lib/systemd/system", "/lib/systemd/system"];
/// Units every service depends on through DefaultDependencies=yes.
const DEFAULT_DEPENDENCIES: &[&str] = &["sysinit.target", "basic.target", "shutdown.target"];

fn systemd_analyze() -> Command {
    let mut cmd = Command::new(find_tool("systemd-analyze"));
    cmd.arg("--no-pager").stdin(Stdio::null());
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// The values of every uncommented `key=` line of a unit, in order.
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
        .collect()
}

/// Copy systemd's own targets that `unit_text` depends on (implicitly or by
/// name) into ROOT/usr/lib/systemd/system.
fn add_targets(root: &Path, unit_text: &str) {
    let dest = root.join("usr/lib/systemd/system");
    fs::create_dir_all(&dest).expect("create usr/lib/systemd/system");
    let named = ["Wants", "Requires", "After", "Before", "WantedBy"]
        .iter()
        .flat_map(|key| unit_values(unit_text, key))
        .flat_map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .filter(|u| u.ends_with(".target"));
    let targets: BTreeSet<String> = DEFAULT_DEPENDENCIES
        .iter()
        .map(|t| t.to_string())
        .chain(named)
        .collect();
    for target in targets {
        let source = SYSTEM_UNIT_DIRS
            .iter()
            .map(|d| Path::new(d).join(&target))
            .find(|p| p.is_file())
            .unwrap_or_else(|| {
                panic!("{target} not found in {SYSTEM_UNIT_DIRS:?}; is systemd installed?")
            });
        fs::copy(&source, dest.join(&target))
            .unwrap_or_else(|e| panic!("copy {}: {e}", source.display()));
    }
}

/// `systemd-analyze verify --root=ROOT UNIT`.
fn verify(root: &Path, unit: &str) -> Output {
    run(systemd_analyze()
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg(unit))
}

/// `systemd-analyze verify` of the unit installed under `root` (against the
/// binary installed there) prints nothing.
fn assert_verifies(root: &Path, unit: &Path) {
    add_targets(
        root,
        &fs::read_to_string(unit).expect("read installed unit"),
    );
    let out = verify(root, UNIT_NAME);
    assert_success(&out, "systemd-analyze verify of the installed unit");
    assert_eq!(
        text(&out.stdout) + &text(&out.stderr),
        "",
        "systemd-analyze verify of the installed unit printed"
    );
}
