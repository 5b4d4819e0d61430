//! `ssh_config.example`, rewritten only to reach the test brokers: each
//! Host block reaches its node, and ssh, scp, sftp, rsync, git and `ssh -L`
//! work through it.

use super::*;

const SSH_CONFIG_EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ssh_config.example");
/// The command the example's ProxyCommands start with; the test replaces it
/// with the built proxy and the test broker.
const EXAMPLE_PROXY: &str = "mqtt-proxy --host broker.example.com";
/// The example's second broker (`NODE@HOST`); the test points it at a
/// second test broker.
const EXAMPLE_SECOND_BROKER: &str = "broker-eu.example.com";
/// The password file the example names, relative to $HOME.
const EXAMPLE_PASSWORD_FILE: &str = ".config/mqtt-proxy/password";

/// The `Host` patterns of an ssh_config, in order.
fn host_patterns(config: &str) -> Vec<String> {
    config
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Host "))
        .map(|p| p.trim().to_owned())
        .collect()
}

/// A broker, two sshds and agents for nodes `web1` and `web2` (one per
/// sshd, so a reply names the node that served it), a second broker with
/// node `db1` (known only there), and the example file rewritten to reach
/// them.
struct Fleet {
    // Dropped in declaration order: the agents go before what they talk to.
    web1: Agent,
    web2: Agent,
    db1: Agent,
    sshd1: Sshd,
    sshd2: Sshd,
    _broker: Broker,
    _broker2: Broker,
    config: PathBuf,
    home: PathBuf,
    dir: TempDir,
}

impl Fleet {
    fn start() -> Fleet {
        let broker = Broker::start("");
        let (sshd1, sshd2) = (Sshd::start(), Sshd::start());
        // Node ids as in the example; the prefix keeps them apart from
        // every other test's.
        let prefix = names("ssh_config_example").prefix;
        let web1 = Agent::start(&broker, sshd1.port(), "web1", &prefix);
        let web2 = Agent::start(&broker, sshd2.port(), "web2", &prefix);
        let broker2 = Broker::start("");
        let db1 = Agent::start(&broker2, sshd1.port(), "db1", &prefix);
        let dir = tempfile::Builder::new()
            .prefix("mqtt-proxy-ssh-config.")
            .tempdir()
            .expect("create test tempdir");

        // $HOME for the clients: holds the password file the example names
        // (read by the proxy; the anonymous broker is sent no credentials
        // because no user is set) and no ~/.config/mqtt-proxy/config.toml.
        let home = dir.path().join("home");
        let password = home.join(EXAMPLE_PASSWORD_FILE);
        fs::create_dir_all(password.parent().expect("has a parent")).expect("create ~/.config");
        fs::write(&password, "not-needed-by-the-test-broker\n").expect("write password file");
        set_mode(&password, 0o600);

        let example = fs::read_to_string(SSH_CONFIG_EXAMPLE).expect("read ssh_config.example");
        let proxy_bin = proxy_bin();
        assert_eq!(
            shell_quote(proxy_bin),
            proxy_bin,
            "proxy path needs no quoting"
        );
        let proxy = format!(
            "{} --host 127.0.0.1 --port {} --topic-prefix {prefix}",
            proxy_bin.replace('%', "%%"),
            broker.port()
        );
        let proxy_commands = example
            .lines()
            .filter(|l| l.trim_start().starts_with("ProxyCommand"))
            .collect::<Vec<_>>();
        for line in &proxy_commands {
            assert_eq!(
                line.matches(EXAMPLE_PROXY).count(),
                1,
                "every ProxyCommand in ssh_config.example should call {EXAMPLE_PROXY:?} once: {line}"
            );
        }
        // ssh takes the first value it finds for each option, so this block
        // in front wins over the example's `User admin`; it adds what the
        // test sshds need and sets no ProxyCommand.
        let prelude = format!(
            "# Added by tests/ops_files.rs\n\
             Host *\n    User {user}\n    IdentityFile {key1}\n    IdentityFile {key2}\n    \
             IdentitiesOnly yes\n    StrictHostKeyChecking no\n    \
             UserKnownHostsFile /dev/null\n    BatchMode yes\n    LogLevel ERROR\n\n",
            user = current_user(),
            key1 = sshd1.client_key().display(),
            key2 = sshd2.client_key().display(),
        );
        let config = dir.path().join("ssh_config");
        let rewritten = example.replace(EXAMPLE_PROXY, &proxy).replace(
            EXAMPLE_SECOND_BROKER,
            &format!("127.0.0.1:{}", broker2.port()),
        );
        fs::write(&config, prelude + &rewritten).expect("write rewritten ssh_config");
        Fleet {
            web1,
            web2,
            db1,
            sshd1,
            sshd2,
            _broker: broker,
            _broker2: broker2,
            config,
            home,
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `program` with only PATH and the test's HOME in its environment, so
    /// no MQTT_* variable or user config file of the developer's applies.
    fn client(&self, program: &str) -> Command {
        let mut cmd = Command::new(find_tool(program));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .stdin(Stdio::null());
        cmd
    }

    fn ssh_f(&self) -> String {
        format!("ssh -F {}", self.config.display())
    }

    /// Assert success, attaching every log that could explain a failure.
    fn check(&self, out: &Output, what: &str) {
        if !out.status.success() {
            eprintln!(
                "--- rewritten ssh_config ---\n{}\n--- web1 agent ---\n{}\n--- web2 agent ---\n{}\n\
                 --- db1 agent ---\n{}\n--- sshd1 ---\n{}\n--- sshd2 ---\n{}",
                fs::read_to_string(&self.config).unwrap_or_default(),
                self.web1.log_text(),
                self.web2.log_text(),
                self.db1.log_text(),
                self.sshd1.log_text(),
                self.sshd2.log_text()
            );
        }
        assert_success(out, what);
    }
}

#[test]
fn ssh_config_example_hosts_work_for_ssh_scp_sftp_rsync_and_git() {
    let example = fs::read_to_string(SSH_CONFIG_EXAMPLE).expect("read ssh_config.example");
    let patterns = host_patterns(&example);
    assert_eq!(
        patterns,
        ["web1", "*.fleet", "*.eu"],
        "ssh_config.example's Host blocks changed; give each one a case in this test"
    );
    let f = Fleet::start();
    let cfg = f.config.to_str().expect("config path is UTF-8");
    // The sshd's port, from the server side of the connection, says which
    // agent carried the session.
    let whoami = r#"echo ok; echo "${SSH_CONNECTION##* }""#;
    for (host, sshd) in [
        ("web1", &f.sshd1),
        ("web2.fleet", &f.sshd2),
        ("db1.eu", &f.sshd1),
    ] {
        let out = run(f.client("ssh").args(["-F", cfg, host, whoami]));
        f.check(&out, &format!("ssh -F ssh_config {host}"));
        assert_eq!(
            text(&out.stdout),
            format!("ok\n{}\n", sshd.port()),
            "ssh {host}"
        );
    }

    // scp up through one host, down through the other.
    let local = f.path("backup.tar");
    let remote = f.path("backup.remote");
    let back = f.path("backup.back");
    write_random_file(&local, 1 << 20);
    let out = run(f
        .client("scp")
        .args(["-F", cfg])
        .arg(&local)
        .arg(format!("web1:{}", remote.display())));
    f.check(&out, "scp to web1");
    let out = run(f
        .client("scp")
        .args(["-F", cfg])
        .arg(format!("web2.fleet:{}", remote.display()))
        .arg(&back));
    f.check(&out, "scp from web2.fleet");
    assert_files_equal(&local, &back);

    // sftp
    let batch = f.path("sftp.batch");
    let sftp_back = f.path("backup.sftp");
    fs::write(
        &batch,
        format!("get {} {}\n", remote.display(), sftp_back.display()),
    )
    .expect("write sftp batch");
    let out = run(f
        .client("sftp")
        .args(["-F", cfg, "-b"])
        .arg(&batch)
        .arg("web1"));
    f.check(&out, "sftp web1");
    assert_files_equal(&local, &sftp_back);

    // rsync a small tree.
    let site = f.path("site");
    fs::create_dir_all(site.join("css")).expect("create site tree");
    write_random_file(&site.join("index.html"), 10_000);
    write_random_file(&site.join("css/main.css"), 3_000);
    let copy = f.path("site.copy");
    let out = run(f
        .client("rsync")
        .args(["-e", &f.ssh_f(), "-a", "--partial"])
        .arg(format!("{}/", site.display()))
        .arg(format!("web2.fleet:{}/", copy.display())));
    f.check(&out, "rsync to web2.fleet");
    assert_trees_equal(&site, &copy);

    // git clone of a repository with one commit.
    let work = f.path("project");
    let bare = f.path("project.git");
    let git = |args: &[&str]| {
        let mut cmd = f.client("git");
        cmd.args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
            .args(args);
        cmd
    };
    let work_s = work.to_str().expect("UTF-8 path");
    let bare_s = bare.to_str().expect("UTF-8 path");
    f.check(&run(&mut git(&["init", "-q", work_s])), "git init");
    fs::write(work.join("README"), "hello through mqtt\n").expect("write README");
    f.check(&run(&mut git(&["-C", work_s, "add", "README"])), "git add");
    f.check(
        &run(&mut git(&["-C", work_s, "commit", "-q", "-m", "first"])),
        "git commit",
    );
    f.check(
        &run(&mut git(&["clone", "-q", "--bare", work_s, bare_s])),
        "git clone --bare",
    );
    let clone = f.path("project.clone");
    let out = run(git(&["clone", "-q", &format!("web1:{bare_s}")])
        .arg(&clone)
        .env("GIT_SSH_COMMAND", f.ssh_f()));
    f.check(&out, "git clone web1:...");
    assert_eq!(
        fs::read_to_string(clone.join("README")).expect("read cloned README"),
        "hello through mqtt\n"
    );
    // ... and a push back.
    let clone_s = clone.to_str().expect("UTF-8 path");
    fs::write(clone.join("NEWS"), "pushed through mqtt\n").expect("write NEWS");
    f.check(&run(&mut git(&["-C", clone_s, "add", "NEWS"])), "git add");
    f.check(
        &run(&mut git(&["-C", clone_s, "commit", "-q", "-m", "second"])),
        "git commit",
    );
    let out = run(
        git(&["-C", clone_s, "push", "-q", "origin", "HEAD"]).env("GIT_SSH_COMMAND", f.ssh_f())
    );
    f.check(&out, "git push web1:...");
    let out = run(&mut git(&["-C", bare_s, "show", "HEAD:NEWS"]));
    f.check(&out, "git show in the pushed-to repository");
    assert_eq!(text(&out.stdout), "pushed through mqtt\n");

    // ssh -L: a local port forwarded inside the tunnel, here to web2's sshd,
    // which greets whoever connects with its banner.
    let local_port = free_port();
    let forward = format!("{local_port}:127.0.0.1:{}", f.sshd2.port());
    let mut tunnel = Background::start(f.client("ssh").args([
        "-F",
        cfg,
        "-o",
        "ExitOnForwardFailure=yes",
        "-L",
        &forward,
        "web1",
        "sleep 60",
    ]));
    let mut banner = String::new();
    let forwarded = wait_until(Duration::from_secs(20), || {
        assert!(tunnel.try_status().is_none(), "ssh -L exited early");
        let Ok(conn) = std::net::TcpStream::connect(("127.0.0.1", local_port)) else {
            return false;
        };
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set read timeout");
        // An empty line: the forward was not up yet and closed the connection.
        banner.clear();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(conn), &mut banner).is_ok()
            && !banner.is_empty()
    });
    tunnel.kill();
    assert!(forwarded, "nothing came through the -L forward");
    assert!(
        banner.starts_with("SSH-2.0-"),
        "not an sshd banner: {banner:?}"
    );
}
