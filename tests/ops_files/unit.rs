//! The systemd unit as `systemd-analyze` sees it: its security exposure
//! rating, and `verify` with the agent binary where the unit expects it
//! (and without it, and with mistakes in the unit).

use super::*;

/// Highest acceptable "Overall exposure level" (0 = locked down, 10 = none).
const MAX_EXPOSURE: f64 = 2.0;

/// The number in systemd-analyze's "→ Overall exposure level for X: 1.1 OK 🙂".
fn overall_exposure(stdout: &str) -> Option<f64> {
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level for"))?;
    line.rsplit_once(": ")?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn unit_security_exposure_is_at_most_2_0() {
    let out = run(systemd_analyze()
        .args(["security", "--offline=true"])
        .arg(UNIT));
    assert_success(&out, "systemd-analyze security --offline=true");
    let stdout = text(&out.stdout);
    let exposure = overall_exposure(&stdout)
        .unwrap_or_else(|| panic!("no \"Overall exposure level\" line in:\n{stdout}"));
    eprintln!("systemd-analyze security: overall exposure level {exposure:.1}");
    assert!(
        exposure <= MAX_EXPOSURE,
        "exposure {exposure} is above {MAX_EXPOSURE}; the ✗ lines say what to restrict:\n{stdout}"
    );
    // Parse warnings (unknown keys, bad values) would land here.
    assert_eq!(text(&out.stderr), "", "systemd-analyze security warned");
}

/// A root directory for `systemd-analyze verify --root`: `unit_text` as
/// /etc/systemd/system/mqtt-proxy-agent.service plus systemd's own copies of
/// the targets it depends on, and nothing else, so verify reads this unit and
/// none of the host's (whose warnings would be noise). Its ExecStart binary
/// is looked up under the root too; see [`add_agent`].
fn unit_root(unit_text: &str) -> TempDir {
    let root = tempfile::Builder::new()
        .prefix("mqtt-proxy-root.")
        .tempdir()
        .expect("create root tempdir");
    let etc = root.path().join("etc/systemd/system");
    fs::create_dir_all(&etc).expect("create etc/systemd/system");
    fs::write(etc.join(UNIT_NAME), unit_text).expect("write unit copy");
    add_targets(root.path(), unit_text);
    root
}

/// Put the freshly built agent where the unit expects it, under `root`.
fn add_agent(root: &Path) {
    let dest = root.join(INSTALLED_AGENT.trim_start_matches('/'));
    fs::create_dir_all(dest.parent().expect("has a parent")).expect("create bin dir");
    fs::copy(agent_bin(), &dest).expect("copy the agent binary");
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let unit = fs::read_to_string(UNIT).expect("read the unit");
    let root = unit_root(&unit);

    // Without the binary, verify names it: ExecStart is checked.
    let out = verify(root.path(), UNIT_NAME);
    assert_eq!(
        text(&out.stderr).trim_end(),
        format!(
            "{UNIT_NAME}: Command {INSTALLED_AGENT} is not executable: No such file or directory"
        ),
        "verify without the agent binary in the root"
    );

    add_agent(root.path());
    let out = verify(root.path(), UNIT_NAME);
    eprintln!(
        "systemd-analyze verify: {}, stdout {:?}, stderr {:?}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_success(&out, "systemd-analyze verify");
    assert_eq!(text(&out.stdout), "", "systemd-analyze verify printed");
    assert_eq!(text(&out.stderr), "", "systemd-analyze verify warned");

    // The same setup does report mistakes in the unit itself.
    let broken = unit.replace(
        "[Service]\n",
        "[Service]\nRestartt=always\nSystemCallFilter=@no-such-group\n",
    );
    fs::write(
        root.path().join("etc/systemd/system/broken.service"),
        broken,
    )
    .expect("write broken unit");
    let out = verify(root.path(), "broken.service");
    let stderr = text(&out.stderr);
    for expected in [
        "Unknown key 'Restartt' in section [Service]",
        "Unknown system call group, ignoring: @no-such-group",
    ] {
        assert!(
            stderr.contains(expected),
            "verify of a broken unit should say {expected:?}; it printed:\n{stderr}"
        );
    }
}
