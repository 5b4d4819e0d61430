//! `scripts/install-agent` into a temporary DESTDIR: the binary, unit and
//! env file with their modes, the next steps it prints, a second run that
//! keeps the administrator's settings, and `--prefix`.

use super::*;

const INSTALL_AGENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install-agent");

fn install_agent(destdir: &Path, args: &[&str]) -> Output {
    run(Command::new(INSTALL_AGENT)
        .env("DESTDIR", destdir)
        .args(["--binary", agent_bin()])
        .args(args)
        .stdin(Stdio::null()))
}

#[test]
fn install_agent_stages_binary_unit_and_env_file() {
    let dest = tempfile::Builder::new()
        .prefix("mqtt-proxy-destdir.")
        .tempdir()
        .expect("create DESTDIR");
    let d = dest.path();
    let out = install_agent(d, &[]);
    assert_success(&out, "scripts/install-agent");
    let stdout = text(&out.stdout);
    for step in [
        "/etc/mqtt-proxy/agent.env",
        "systemctl enable --now mqtt-proxy-agent",
        "journalctl -u mqtt-proxy-agent -f",
    ] {
        assert!(
            stdout.contains(step),
            "next steps should mention {step:?}:\n{stdout}"
        );
    }
    assert!(
        text(&out.stderr).contains("not running systemctl daemon-reload"),
        "with DESTDIR, systemd must be left alone:\n{}",
        text(&out.stderr)
    );

    let bin = d.join("usr/local/bin/mqtt-proxy-agent");
    let unit = d.join("etc/systemd/system").join(UNIT_NAME);
    let conf = d.join("etc/mqtt-proxy");
    let env = conf.join("agent.env");
    assert_files_equal(Path::new(agent_bin()), &bin);
    assert_files_equal(Path::new(UNIT), &unit);
    assert_files_equal(Path::new(ENV_EXAMPLE), &env);
    for (path, expected) in [(&bin, 0o755), (&unit, 0o644), (&conf, 0o755), (&env, 0o600)] {
        assert_eq!(
            mode(path),
            expected,
            "mode of {} is {:o}",
            path.display(),
            mode(path)
        );
    }

    assert_verifies(d, &unit);

    // A second run (an upgrade) keeps the administrator's settings.
    fs::write(&env, "MQTT_HOST=broker.internal\n").expect("edit agent.env");
    let out = install_agent(d, &[]);
    assert_success(&out, "scripts/install-agent, second run");
    assert_eq!(
        fs::read_to_string(&env).expect("read agent.env"),
        "MQTT_HOST=broker.internal\n"
    );
    assert_eq!(mode(&env), 0o600);

    // --prefix moves the binary, and ExecStart follows it.
    let out = install_agent(d, &["--prefix", "/opt/mqtt-proxy"]);
    assert_success(&out, "scripts/install-agent --prefix /opt/mqtt-proxy");
    assert_files_equal(
        Path::new(agent_bin()),
        &d.join("opt/mqtt-proxy/bin/mqtt-proxy-agent"),
    );
    let installed = fs::read_to_string(&unit).expect("read installed unit");
    assert_eq!(
        unit_values(&installed, "ExecStart"),
        ["/opt/mqtt-proxy/bin/mqtt-proxy-agent"]
    );
    assert!(
        !installed.contains(INSTALLED_AGENT),
        "the commented ExecStart should follow --prefix too:\n{installed}"
    );
    assert_verifies(d, &unit);
}
