//! `mqtt-proxy`'s settings: flags, environment and the config file, merged
//! and validated.

use anyhow::{bail, Context, Result};

use crate::config::{self, Broker, BrokerArgs, FileConfig, Role, Secret};
use crate::mqtt::pacer::{self, Caps};
use crate::protocol;
use crate::stream;

/// `mqtt-proxy` settings.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "mqtt-proxy",
    version,
    about = "OpenSSH ProxyCommand over MQTT: ssh -o ProxyCommand='mqtt-proxy %n' user@node"
)]
pub struct ProxyArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,

    /// List the nodes known to the broker instead of connecting; only those
    /// whose id matches PATTERN (a shell glob, e.g. 'prod-*') if given.
    #[arg(long, value_name = "PATTERN", num_args = 0..=1, conflicts_with = "node")]
    pub list: Option<Option<String>>,

    /// With --list: only nodes whose agent is online.
    #[arg(long, requires = "list")]
    pub online: bool,

    /// Remove a retired (offline) node from the listing: clear its retained
    /// presence message on the broker.
    #[arg(long, value_name = "NODE", conflicts_with_all = ["list", "node"])]
    pub forget: Option<String>,

    /// File holding the node's agent password, if its agent requires one.
    /// The password itself is only read from MQTT_AGENT_PASSWORD.
    #[arg(long, env = "MQTT_AGENT_PASSWORD_FILE", value_name = "FILE")]
    pub agent_password_file: Option<std::path::PathBuf>,

    /// ssh private key to prove with, when the node's agent asks for an
    /// authorized key (FILE-cert.pub beside it is offered too, first); the
    /// ssh-agent's keys (SSH_AUTH_SOCK) are offered after it.
    #[arg(long, short = 'i', env = "MQTT_IDENTITY", value_name = "FILE")]
    pub identity: Option<std::path::PathBuf>,

    /// With --list: print JSON instead of a table.
    #[arg(long, requires = "list")]
    pub json: bool,

    // The brackets below are the help text's notation, not doc links.
    #[allow(rustdoc::broken_intra_doc_links)]
    /// The node to connect to (its agent's node id), optionally on a broker
    /// of its own: NODE@HOST[:PORT].
    #[arg(required_unless_present_any = ["list", "forget"])]
    pub node: Option<String>,
}

/// Validated proxy settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub broker: Broker,
    pub node: String,
    pub agent_password: Option<Secret>,
    /// The key file to prove with (`--identity`).
    pub identity: Option<std::path::PathBuf>,
    /// The ssh-agent's socket (`SSH_AUTH_SOCK`; empty means none).
    pub ssh_agent: Option<std::path::PathBuf>,
    pub stream: stream::Config,
}

impl ProxyArgs {
    /// Merge flags, environment, the config file and defaults.
    pub fn resolve(&self) -> Result<ProxyConfig> {
        let file = FileConfig::load(self.broker.config.as_deref(), Role::Proxy)?;
        self.resolve_with(&file, &config::process_env)
    }

    pub fn resolve_with(
        &self,
        file: &FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ProxyConfig> {
        let target = self
            .node
            .as_deref()
            .or(self.forget.as_deref())
            .unwrap_or("");
        let (node, broker_override) = match target.split_once('@') {
            Some((node, at)) => {
                let hp = config::split_host_port(at)
                    .with_context(|| format!("invalid broker in {target:?}"))?;
                (node, Some(hp))
            }
            None => (target, None),
        };
        if self.list.is_none() && !protocol::valid_id(node) {
            bail!(
                "invalid node id {node:?}: use 1-{} letters, digits, '.', '_' or '-'",
                protocol::MAX_ID_LEN
            );
        }
        let broker = self.broker.resolve(file, broker_override, env)?;
        let agent_password =
            config::agent_password(self.agent_password_file.as_deref(), file, env)?;
        Ok(ProxyConfig {
            agent_password,
            identity: self.identity.clone().or_else(|| file.identity.clone()),
            ssh_agent: crate::identity::agent_socket(
                env("SSH_AUTH_SOCK").as_deref().map(std::ffi::OsStr::new),
            ),
            stream: stream::Config {
                peer_timeout: broker.resume_timeout,
                ack_delay: pacer::stream_ack_delay(Caps::of(&broker), stream::ACK_DELAY),
                rto_allowance: pacer::rto_allowance(Caps::of(&broker), stream::ACK_DELAY),
                ..stream::Config::default()
            },
            broker,
            node: node.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests;
