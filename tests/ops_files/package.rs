//! The Debian package `scripts/package` builds from this test run's
//! binaries: its entries, owners and modes, conffile and control fields;
//! installed, upgraded, removed and purged by `dpkg` in a throwaway root;
//! its man pages and shell completions.

use super::*;

const PACKAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/package");
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The packaged unit's ExecStart.
const PACKAGED_AGENT: &str = "/usr/bin/mqtt-proxy-agent";
const PACKAGED_UNIT: &str = "usr/lib/systemd/system/mqtt-proxy-agent.service";
const PACKAGED_ENV: &str = "etc/mqtt-proxy/agent.env";

/// Every entry of the package, as `dpkg-deb -c` lists it: mode and path
/// (all owned by root/root).
const PACKAGE_CONTENTS: &[(&str, &str)] = &[
    ("drwxr-xr-x", "./"),
    ("drwxr-xr-x", "./etc/"),
    ("drwxr-xr-x", "./etc/mqtt-proxy/"),
    ("-rw-------", "./etc/mqtt-proxy/agent.env"),
    ("drwxr-xr-x", "./usr/"),
    ("drwxr-xr-x", "./usr/bin/"),
    ("-rwxr-xr-x", "./usr/bin/mqtt-proxy"),
    ("-rwxr-xr-x", "./usr/bin/mqtt-proxy-agent"),
    ("drwxr-xr-x", "./usr/lib/"),
    ("drwxr-xr-x", "./usr/lib/systemd/"),
    ("drwxr-xr-x", "./usr/lib/systemd/system/"),
    (
        "-rw-r--r--",
        "./usr/lib/systemd/system/mqtt-proxy-agent.service",
    ),
    ("drwxr-xr-x", "./usr/share/"),
    ("drwxr-xr-x", "./usr/share/bash-completion/"),
    ("drwxr-xr-x", "./usr/share/bash-completion/completions/"),
    (
        "-rw-r--r--",
        "./usr/share/bash-completion/completions/mqtt-proxy",
    ),
    (
        "-rw-r--r--",
        "./usr/share/bash-completion/completions/mqtt-proxy-agent",
    ),
    ("drwxr-xr-x", "./usr/share/doc/"),
    ("drwxr-xr-x", "./usr/share/doc/mqtt-proxy/"),
    ("-rw-r--r--", "./usr/share/doc/mqtt-proxy/copyright"),
    ("drwxr-xr-x", "./usr/share/fish/"),
    ("drwxr-xr-x", "./usr/share/fish/vendor_completions.d/"),
    (
        "-rw-r--r--",
        "./usr/share/fish/vendor_completions.d/mqtt-proxy-agent.fish",
    ),
    (
        "-rw-r--r--",
        "./usr/share/fish/vendor_completions.d/mqtt-proxy.fish",
    ),
    ("drwxr-xr-x", "./usr/share/man/"),
    ("drwxr-xr-x", "./usr/share/man/man1/"),
    ("-rw-r--r--", "./usr/share/man/man1/mqtt-proxy-agent.1.gz"),
    ("-rw-r--r--", "./usr/share/man/man1/mqtt-proxy.1.gz"),
    ("drwxr-xr-x", "./usr/share/zsh/"),
    ("drwxr-xr-x", "./usr/share/zsh/vendor-completions/"),
    (
        "-rw-r--r--",
        "./usr/share/zsh/vendor-completions/_mqtt-proxy",
    ),
    (
        "-rw-r--r--",
        "./usr/share/zsh/vendor-completions/_mqtt-proxy-agent",
    ),
];

/// `dpkg` acting on the throwaway root: its database under ROOT/var/lib/dpkg,
/// maintainer scripts run without chroot (the root has no shell) and with
/// DPKG_ROOT set, which they take as "not this system's systemd";
/// dependencies (libc6, …) are not installed in that root.
fn dpkg_in(root: &Path) -> Command {
    let mut cmd = Command::new(find_tool("dpkg"));
    cmd.arg(format!("--root={}", root.display()))
        .args(["--force-script-chrootless", "--force-depends"])
        // Overrides a host's path-exclude (Docker images drop man pages).
        .arg("--path-include=*")
        .stdin(Stdio::null());
    if !is_root() {
        cmd.arg("--force-not-root");
    }
    cmd
}

fn dpkg_status(root: &Path) -> String {
    let out = run(Command::new(find_tool("dpkg-query"))
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .args([
            "-W",
            "-f",
            "${Status}|${Version}|${Conffiles}",
            "mqtt-proxy",
        ]));
    assert_success(&out, "dpkg-query -W mqtt-proxy");
    text(&out.stdout)
}

fn md5(path: &Path) -> String {
    let out = run(Command::new(find_tool("md5sum")).arg(path));
    assert_success(&out, "md5sum");
    text(&out.stdout)
        .split_whitespace()
        .next()
        .expect("md5sum prints a sum")
        .to_owned()
}

/// `man -l FILE` as plain text, without hyphenation, every word separated
/// by one space.
fn man_text(page: &Path) -> String {
    let out = run(Command::new(find_tool("man"))
        .args(["--warnings", "--nh", "--nj", "-l"])
        .arg(page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::null()));
    assert_success(&out, &format!("man -l {}", page.display()));
    assert_eq!(
        text(&out.stderr),
        "",
        "man --warnings -l {}",
        page.display()
    );
    text(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn debian_package_holds_binaries_unit_conffile_man_pages_and_completions() {
    let dir = tempfile::Builder::new()
        .prefix("mqtt-proxy-package.")
        .tempdir()
        .expect("create test tempdir");
    let docs_dir = dir.path().join("docs");
    let generated = docs::write_all(&docs_dir).expect("generate man pages and completions");
    let generated: Vec<String> = generated.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(
        generated,
        [
            "man1/mqtt-proxy.1",
            "bash/mqtt-proxy",
            "zsh/_mqtt-proxy",
            "fish/mqtt-proxy.fish",
            "man1/mqtt-proxy-agent.1",
            "bash/mqtt-proxy-agent",
            "zsh/_mqtt-proxy-agent",
            "fish/mqtt-proxy-agent.fish",
        ]
    );

    // Package the binaries this test run uses.
    let bin_dir = Path::new(proxy_bin())
        .parent()
        .expect("binary has a directory");
    assert_eq!(Path::new(agent_bin()).parent(), Some(bin_dir));
    let out_dir = dir.path().join("out");
    let out = run(Command::new(PACKAGE)
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--docs")
        .arg(&docs_dir)
        .arg("--out")
        .arg(&out_dir)
        .stdin(Stdio::null()));
    assert_success(&out, "scripts/package");
    let arch = run(Command::new(find_tool("dpkg")).arg("--print-architecture"));
    assert_success(&arch, "dpkg --print-architecture");
    let deb = out_dir.join(format!(
        "mqtt-proxy_{VERSION}_{}.deb",
        text(&arch.stdout).trim()
    ));
    assert_eq!(text(&out.stdout), format!("{}\n", deb.display()));

    // Contents, owners and modes.
    let dpkg_deb = || {
        let mut cmd = Command::new(find_tool("dpkg-deb"));
        cmd.stdin(Stdio::null());
        cmd
    };
    let out = run(dpkg_deb().arg("--contents").arg(&deb));
    assert_success(&out, "dpkg-deb --contents");
    let listing = text(&out.stdout);
    let mut entries = Vec::new();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 6, "unexpected dpkg-deb -c line {line:?}");
        assert_eq!(fields[1], "root/root", "owner in {line:?}");
        entries.push((fields[0].to_owned(), fields[5].to_owned()));
    }
    let expected: Vec<(String, String)> = PACKAGE_CONTENTS
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(entries, expected, "dpkg-deb -c:\n{listing}");
    let out = run(dpkg_deb().arg("--info").arg(&deb).arg("conffiles"));
    assert_success(&out, "dpkg-deb --info conffiles");
    assert_eq!(text(&out.stdout), "/etc/mqtt-proxy/agent.env\n");
    let out = run(dpkg_deb()
        .arg("--field")
        .arg(&deb)
        .args(["Package", "Version", "Depends"]));
    assert_success(&out, "dpkg-deb --field");
    let fields = text(&out.stdout);
    assert!(
        fields.starts_with(&format!(
            "Package: mqtt-proxy\nVersion: {VERSION}\nDepends: libc6 (>= 2."
        )) && fields.ends_with("), libgcc-s1\n"),
        "control fields: {fields:?}"
    );

    // Installed by dpkg into a throwaway root.
    let root = dir.path().join("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        fs::create_dir_all(root.join(d)).expect("create the dpkg database");
    }
    fs::write(root.join("var/lib/dpkg/status"), "").expect("create dpkg status");
    let out = run(dpkg_in(&root).arg("--install").arg(&deb));
    assert_success(&out, "dpkg --root --install");
    let env = root.join(PACKAGED_ENV);
    assert_eq!(
        dpkg_status(&root),
        format!(
            "install ok installed|{VERSION}| /etc/mqtt-proxy/agent.env {}",
            md5(Path::new(ENV_EXAMPLE))
        )
    );
    for (bin, name) in [
        (proxy_bin(), "mqtt-proxy"),
        (agent_bin(), "mqtt-proxy-agent"),
    ] {
        let installed = root.join("usr/bin").join(name);
        assert_files_equal(Path::new(bin), &installed);
        let out = run(Command::new(&installed)
            .arg("--version")
            .stdin(Stdio::null()));
        assert_success(&out, &format!("{name} --version"));
        assert_eq!(text(&out.stdout), format!("{name} {VERSION}\n"));
        assert_eq!(text(&out.stderr), "", "{name} --version stderr");

        let man = root.join(format!("usr/share/man/man1/{name}.1.gz"));
        let gunzip = run(Command::new(find_tool("gzip")).arg("-dc").arg(&man));
        assert_success(&gunzip, "gzip -dc");
        let roff = fs::read(docs_dir.join(format!("man1/{name}.1"))).expect("read roff");
        assert!(
            gunzip.stdout == roff,
            "{} is not the generated page",
            man.display()
        );
        let page = man_text(&man);
        let about = docs::commands()
            .into_iter()
            .find(|c| c.get_name() == name)
            .and_then(|c| c.get_about().map(|a| a.to_string()))
            .expect("the command has an about text");
        for expected in [
            format!("NAME {name} - {about}"),
            "SYNOPSIS".to_owned(),
            "--resume-timeout <SECONDS>".to_owned(),
            "MQTT_RESUME_TIMEOUT environment variable".to_owned(),
            format!("VERSION v{VERSION}"),
        ] {
            assert!(
                page.contains(&expected),
                "man -l {} lacks {expected:?}:\n{page}",
                man.display()
            );
        }

        for (installed, generated) in [
            (
                format!("usr/share/bash-completion/completions/{name}"),
                format!("bash/{name}"),
            ),
            (
                format!("usr/share/zsh/vendor-completions/_{name}"),
                format!("zsh/_{name}"),
            ),
            (
                format!("usr/share/fish/vendor_completions.d/{name}.fish"),
                format!("fish/{name}.fish"),
            ),
        ] {
            let generated = docs_dir.join(generated);
            assert!(
                fs::metadata(&generated).expect("stat").len() > 0,
                "{} is empty",
                generated.display()
            );
            assert_files_equal(&generated, &root.join(installed));
        }
        // bash loads the completion and binds it to the command.
        let bash_file = root.join(format!("usr/share/bash-completion/completions/{name}"));
        let out = run(Command::new(find_tool("bash"))
            .arg("-c")
            .arg(r#"source "$1" && complete -p "$2""#)
            .arg("bash")
            .arg(&bash_file)
            .arg(name));
        assert_success(&out, "bash: source the completion");
        assert!(
            text(&out.stdout).starts_with("complete ")
                && text(&out.stdout).contains(" -F _")
                && text(&out.stdout).trim_end().ends_with(&format!(" {name}")),
            "complete -p {name}: {:?}",
            text(&out.stdout)
        );
        let zsh =
            fs::read_to_string(root.join(format!("usr/share/zsh/vendor-completions/_{name}")))
                .expect("read zsh completion");
        assert_eq!(
            zsh.lines().next(),
            Some(format!("#compdef {name}").as_str())
        );
        let fish = fs::read_to_string(
            root.join(format!("usr/share/fish/vendor_completions.d/{name}.fish")),
        )
        .expect("read fish completion");
        assert!(
            fish.contains(&format!("complete -c {name} ")),
            "fish completion for {name}:\n{fish}"
        );
    }

    // The unit, pointed at the packaged binary, verifies against it.
    let unit = root.join(PACKAGED_UNIT);
    let shipped = fs::read_to_string(UNIT).expect("read the unit");
    let packaged = fs::read_to_string(&unit).expect("read the packaged unit");
    assert_eq!(packaged, shipped.replace(INSTALLED_AGENT, PACKAGED_AGENT));
    assert_eq!(unit_values(&packaged, "ExecStart"), [PACKAGED_AGENT]);
    assert_verifies(&root, &unit);

    // agent.env: the example, 0600, and the administrator's once edited.
    assert_files_equal(Path::new(ENV_EXAMPLE), &env);
    assert_eq!(mode(&env), 0o600, "mode of the installed agent.env");
    fs::write(&env, "MQTT_HOST=broker.internal\n").expect("edit agent.env");
    let out = run(dpkg_in(&root).arg("--install").arg(&deb));
    assert_success(&out, "dpkg --install again (an upgrade)");
    assert_eq!(
        fs::read_to_string(&env).expect("read agent.env"),
        "MQTT_HOST=broker.internal\n",
        "reinstalling replaced the edited conffile"
    );
    let out = run(dpkg_in(&root).args(["--remove", "mqtt-proxy"]));
    assert_success(&out, "dpkg --remove");
    assert!(!root.join("usr/bin/mqtt-proxy").exists(), "removed binary");
    assert!(env.exists(), "--remove deleted the conffile");
    let out = run(dpkg_in(&root).args(["--purge", "mqtt-proxy"]));
    assert_success(&out, "dpkg --purge");
    assert!(!env.exists(), "--purge left the conffile");
}
