//! The agent's settings: flags, environment, config file, validated.

use anyhow::{bail, Result};

use crate::config::{self, Broker, BrokerArgs, FileConfig, Role, Secret};
use crate::mqtt::pacer::{self, Caps};
use crate::{protocol, stream};

/// `mqtt-proxy-agent` settings.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "mqtt-proxy-agent",
    version,
    about = "Expose this host's sshd through an MQTT broker, for `mqtt-proxy`."
)]
pub struct AgentArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,

    /// This node's id (letters, digits, '.', '_', '-') [default: the host name].
    #[arg(long, env = "MQTT_ID")]
    pub node_id: Option<String>,

    /// Where sessions are forwarded; clients cannot choose another target
    /// [default: 127.0.0.1:22].
    #[arg(long, env = "MQTT_TARGET", value_name = "HOST:PORT")]
    pub target: Option<String>,

    /// Most sessions open at once; further open requests are refused
    /// [default: 64].
    #[arg(long, env = "MQTT_MAX_SESSIONS")]
    pub max_sessions: Option<usize>,

    /// File holding the agent password clients must prove they know
    /// (challenge-response). The password itself is only read from the
    /// MQTT_AGENT_PASSWORD environment variable.
    #[arg(long, env = "MQTT_AGENT_PASSWORD_FILE", value_name = "FILE")]
    pub agent_password_file: Option<std::path::PathBuf>,

    /// OpenSSH authorized_keys file: a session opens only for a client
    /// that proves it holds one of these keys, or a certificate from a
    /// listed cert-authority. Re-read when it changes; sessions whose key
    /// is no longer listed are closed.
    #[arg(long, env = "MQTT_AUTHORIZED_KEYS", value_name = "FILE")]
    pub authorized_keys: Option<std::path::PathBuf>,

    /// Public keys refused whatever else says (OpenSSH RevokedKeys, plain
    /// text): one key per line. Needs --authorized-keys.
    #[arg(long, env = "MQTT_REVOKED_KEYS", value_name = "FILE")]
    pub revoked_keys: Option<std::path::PathBuf>,
}

/// Default limit on concurrent sessions: far more than interactive use
/// needs, few enough that a flood of opens cannot exhaust file descriptors
/// or memory. A session holds at most its receive window (1 MiB, tuned up
/// to 8 MiB only while its writer keeps up) plus 64 chunks in flight (4 MiB);
/// at full speed on a near broker, 64 sessions measured 21 MiB in all
/// (`scripts/bench`).
pub const DEFAULT_MAX_SESSIONS: usize = 64;

/// Validated agent settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub broker: Broker,
    pub node_id: String,
    pub target: String,
    pub max_sessions: usize,
    pub agent_password: Option<Secret>,
    /// The access lists to check sessions against (`--authorized-keys`).
    pub access: Option<crate::access::watch::Files>,
    pub stream: stream::Config,
}

impl AgentArgs {
    /// Merge flags, environment, the config file and defaults.
    pub fn resolve(&self) -> Result<AgentConfig> {
        let file = FileConfig::load(self.broker.config.as_deref(), Role::Agent)?;
        self.resolve_with(&file, &config::process_env)
    }

    pub fn resolve_with(
        &self,
        file: &FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AgentConfig> {
        let node_id = match self.node_id.clone().or_else(|| file.node_id.clone()) {
            Some(n) => n,
            None => gethostname::gethostname().to_string_lossy().into_owned(),
        };
        if !protocol::valid_id(&node_id) {
            bail!(
                "invalid node id {node_id:?}: use 1-{} letters, digits, '.', '_' or '-'",
                protocol::MAX_ID_LEN
            );
        }
        let target = self
            .target
            .clone()
            .or_else(|| file.target.clone())
            .unwrap_or_else(|| "127.0.0.1:22".to_owned());
        if !matches!(config::split_host_port(&target), Ok((_, Some(_)))) {
            bail!("invalid target {target:?}: expected HOST:PORT");
        }
        let max_sessions = self
            .max_sessions
            .or(file.max_sessions)
            .unwrap_or(DEFAULT_MAX_SESSIONS);
        if max_sessions == 0 {
            bail!("max sessions must be at least 1");
        }
        let broker = self.broker.resolve(file, None, env)?;
        let agent_password =
            config::agent_password(self.agent_password_file.as_deref(), file, env)?;
        let authorized_keys = self
            .authorized_keys
            .clone()
            .or_else(|| file.authorized_keys.clone());
        let revoked_keys = self
            .revoked_keys
            .clone()
            .or_else(|| file.revoked_keys.clone());
        let access = match (authorized_keys, revoked_keys) {
            (Some(authorized_keys), revoked_keys) => Some(crate::access::watch::Files {
                authorized_keys,
                revoked_keys,
            }),
            (None, Some(_)) => bail!(
                "revoked keys are set but no authorized keys: set --authorized-keys (MQTT_AUTHORIZED_KEYS) too"
            ),
            (None, None) => None,
        };
        Ok(AgentConfig {
            agent_password,
            access,
            stream: stream::Config {
                peer_timeout: broker.resume_timeout,
                ack_delay: pacer::stream_ack_delay(Caps::of(&broker), stream::ACK_DELAY),
                rto_allowance: pacer::rto_allowance(Caps::of(&broker), stream::ACK_DELAY),
                ..stream::Config::default()
            },
            broker,
            node_id,
            target,
            max_sessions,
        })
    }
}
