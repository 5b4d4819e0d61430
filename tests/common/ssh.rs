//! Client commands: `ssh`, `scp`, `sftp` and `rsync` reaching the test sshd
//! through `mqtt-proxy` (or directly through `nc`), and `mqtt-proxy` run on
//! its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::broker::Broker;
use super::host::{current_user, find_tool, proxy_bin, shell_quote, MQTT_ENV};
use super::sshd::Sshd;

/// How the client commands reach the test sshd: a ProxyCommand plus the
/// key, user and host name to use.
#[derive(Clone, Debug)]
pub struct Ssh {
    /// The ProxyCommand (ssh runs it as `exec COMMAND` in the user's shell),
    /// with `%` already escaped where needed.
    pub proxy_command: String,
    /// Host name given to ssh (`%n`): the node id when tunnelling.
    pub host: String,
    pub user: String,
    pub key: PathBuf,
}

impl Ssh {
    /// Through `mqtt-proxy` and the broker to the agent serving `node`.
    pub fn via_proxy(broker: &Broker, prefix: &str, node: &str, sshd: &Sshd) -> Ssh {
        Ssh::via_proxy_at(broker.port(), prefix, node, sshd, &[])
    }

    /// Through `mqtt-proxy EXTRA_ARGS` connecting to 127.0.0.1:`broker_port`
    /// (a broker or a [`super::relay::Relay`] in front of one).
    pub fn via_proxy_at(
        broker_port: u16,
        prefix: &str,
        node: &str,
        sshd: &Sshd,
        extra_args: &[&str],
    ) -> Ssh {
        let port = broker_port.to_string();
        let mut args = vec![
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--topic-prefix",
            prefix,
        ];
        args.extend_from_slice(extra_args);
        Ssh::via_proxy_args(sshd, node, &args)
    }

    /// Through `mqtt-proxy PROXY_ARGS... %n` to `node` (each argument quoted
    /// for the shell ssh runs the ProxyCommand with, `%` escaped).
    pub fn via_proxy_args(sshd: &Sshd, node: &str, proxy_args: &[&str]) -> Ssh {
        let mut proxy_command = shell_quote(proxy_bin()).replace('%', "%%");
        for arg in proxy_args {
            proxy_command.push(' ');
            proxy_command.push_str(&shell_quote(arg).replace('%', "%%"));
        }
        proxy_command.push_str(" %n");
        Ssh {
            proxy_command,
            host: node.to_owned(),
            user: current_user().to_owned(),
            key: sshd.client_key().to_owned(),
        }
    }

    /// Straight to the sshd through `nc` (baseline, harness self-check).
    pub fn direct(sshd: &Sshd) -> Ssh {
        Ssh {
            proxy_command: format!("nc 127.0.0.1 {}", sshd.port()),
            host: "direct".to_owned(),
            user: current_user().to_owned(),
            key: sshd.client_key().to_owned(),
        }
    }

    /// Options shared by ssh, scp and sftp (everything before the destination).
    pub fn options(&self) -> Vec<String> {
        let mut v: Vec<String> = vec!["-F".into(), "/dev/null".into(), "-i".into()];
        v.push(self.key.display().to_string());
        for opt in [
            "IdentitiesOnly=yes",
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "BatchMode=yes",
            "LogLevel=ERROR",
        ] {
            v.push("-o".into());
            v.push(opt.into());
        }
        v.push("-o".into());
        v.push(format!("ProxyCommand={}", self.proxy_command));
        v
    }

    /// `user@host`.
    pub fn destination(&self) -> String {
        format!("{}@{}", self.user, self.host)
    }

    /// `user@host:path` for scp and rsync.
    pub fn remote(&self, path: &Path) -> String {
        format!("{}:{}", self.destination(), path.display())
    }

    fn base(&self, program: &str) -> Command {
        let mut cmd = Command::new(find_tool(program));
        for var in MQTT_ENV {
            cmd.env_remove(var);
        }
        no_version_cache(&mut cmd);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// `ssh OPTIONS user@host REMOTE_COMMAND`; stdin is null unless replaced.
    pub fn ssh(&self, remote_command: &str) -> Command {
        let mut cmd = self.base("ssh");
        cmd.args(self.options())
            .arg(self.destination())
            .arg(remote_command);
        cmd
    }

    /// `scp OPTIONS ARGS...` (use [`Ssh::remote`] for remote operands).
    pub fn scp(&self, args: &[&str]) -> Command {
        let mut cmd = self.base("scp");
        cmd.args(self.options()).args(args);
        cmd
    }

    /// `scp LOCAL user@host:REMOTE`.
    pub fn scp_upload(&self, local: &Path, remote: &Path) -> Command {
        let mut cmd = self.base("scp");
        cmd.args(self.options()).arg(local).arg(self.remote(remote));
        cmd
    }

    /// `scp user@host:REMOTE LOCAL`.
    pub fn scp_download(&self, remote: &Path, local: &Path) -> Command {
        let mut cmd = self.base("scp");
        cmd.args(self.options()).arg(self.remote(remote)).arg(local);
        cmd
    }

    /// `sftp -b BATCHFILE OPTIONS user@host`.
    pub fn sftp_batch(&self, batch_file: &Path) -> Command {
        let mut cmd = self.base("sftp");
        cmd.arg("-b")
            .arg(batch_file)
            .args(self.options())
            .arg(self.destination());
        cmd
    }

    /// The `-e` argument for rsync: the ssh command line, quoted the way
    /// rsync splits it (spaces separate words, double quotes group them, a
    /// doubled double quote is a literal one).
    pub fn rsync_rsh(&self) -> String {
        std::iter::once("ssh".to_owned())
            .chain(self.options())
            .map(|w| {
                if w.contains([' ', '"', '\'']) {
                    format!("\"{}\"", w.replace('"', "\"\""))
                } else {
                    w
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `rsync -e SSH ARGS...` (use [`Ssh::remote`] for remote operands).
    pub fn rsync(&self, args: &[&str]) -> Command {
        let mut cmd = self.base("rsync");
        cmd.arg("-e").arg(self.rsync_rsh()).args(args);
        cmd
    }
}

/// `mqtt-proxy`'s exit status for every failure, as `ExitStatus::code`
/// reports it ([`mqtt_proxy::EXIT_PROXY_FAILURE`]).
pub const PROXY_FAILURE_STATUS: i32 = mqtt_proxy::EXIT_PROXY_FAILURE as i32;
/// How long `mqtt-proxy` may take to report that a node is offline, refuses
/// the session or cannot be reached: docs/protocol.md ("Opening") has it
/// end within 10 s either way.
pub const FAILURE_REPORT_BOUND: Duration = Duration::from_secs(10);

/// `mqtt-proxy --host 127.0.0.1 --port P --topic-prefix PREFIX NODE`, run
/// directly (not as a ProxyCommand), stdin null, `RUST_LOG` removed so its
/// stderr is what a user would see by default.
pub fn proxy_command(broker: &Broker, prefix: &str, node: &str) -> Command {
    proxy_command_at(broker.port(), prefix, node)
}

/// `mqtt-proxy ARGS...` run directly with no MQTT settings inherited, stdin
/// null and `RUST_LOG` removed, so stderr is what a user would read.
pub fn proxy_args(args: &[&str]) -> Command {
    let mut cmd = Command::new(proxy_bin());
    for var in MQTT_ENV {
        cmd.env_remove(var);
    }
    no_version_cache(&mut cmd);
    cmd.env_remove("RUST_LOG").args(args).stdin(Stdio::null());
    cmd
}

/// [`proxy_command`] against 127.0.0.1:`broker_port` (a broker or a
/// [`super::relay::Relay`]).
pub fn proxy_command_at(broker_port: u16, prefix: &str, node: &str) -> Command {
    proxy_on(broker_port, prefix, &[node])
}

/// `mqtt-proxy --host 127.0.0.1 --port PORT --topic-prefix PREFIX ARGS...`
/// as [`proxy_args`] runs it.
pub fn proxy_on(broker_port: u16, prefix: &str, args: &[&str]) -> Command {
    let port = broker_port.to_string();
    let broker = [
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--topic-prefix",
        prefix,
    ];
    proxy_args(&[&broker[..], args].concat())
}

/// No remembered MQTT versions for the proxies `cmd` starts (directly or as
/// ssh's ProxyCommand): brokers of one test run take turns on the same
/// ports, and what an amqtt taught a proxy must not steer a later one to
/// 3.1.1 against a mosquitto. A cache directory that cannot exist.
pub fn no_version_cache(cmd: &mut Command) {
    cmd.env("XDG_CACHE_HOME", "/dev/null/mqtt-proxy-tests");
}
