//! The workstation's ssh keys, for a node whose agent asks for them
//! (issue 24): what `identity` gathers, signed when a CHALLENGE asks.
//!
//! The key file (`--identity`) is read when mqtt-proxy starts, asking for
//! its passphrase on the terminal then, as the MQTT password is: the
//! opening must not wait for a person. The ssh-agent is asked when a
//! challenge comes, so a node that asks for nothing costs nothing.
//! Everything here blocks: call it in `spawn_blocking`.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::access;
use crate::handshake::ANSWER_LEN;
use crate::identity::{self, Candidate};
use crate::protocol::{HEADER_LEN, MAX_AUTH_PAYLOAD, TAG_LEN};

/// What we may sign with.
#[derive(Debug, Default)]
pub struct Keys {
    /// `--identity`'s certificate (if beside it) and key.
    file: Vec<Candidate>,
    /// Why `--identity` could not be used.
    file_error: Option<String>,
    /// The ssh-agent's socket (`SSH_AUTH_SOCK`).
    agent: Option<PathBuf>,
}

/// What [`Keys::sign`] made.
#[derive(Debug)]
pub struct Signed {
    /// The encoded proofs for AUTH, or why there are none.
    pub proofs: Result<Bytes, String>,
    /// What was offered: `2 from ssh-agent`, `1 from ~/.ssh/id and 2 from
    /// ssh-agent`.
    pub tried: String,
}

impl Keys {
    /// Read `identity` (asking on the terminal for its passphrase) and
    /// remember where the ssh-agent is. A key file that cannot be used is
    /// reported with the refusal, and the agent's keys are still offered,
    /// as ssh does.
    pub fn load(identity: Option<&Path>, agent: Option<PathBuf>) -> Keys {
        let mut keys = Keys {
            agent,
            ..Keys::default()
        };
        if let Some(path) = identity {
            match identity::from_file(path, identity::ask_on_tty) {
                Ok(c) => keys.file = c,
                Err(e) => {
                    tracing::warn!("{e}");
                    keys.file_error = Some(e.to_string());
                }
            }
        }
        keys
    }

    /// Sign `transcript` with every identity in turn (the key file's
    /// first), as many as fit in an AUTH of at most `max_message` bytes
    /// (the broker connection's message size limit).
    pub fn sign(&self, transcript: &[u8; 32], max_message: usize) -> Signed {
        let mut problems: Vec<String> = self.file_error.iter().cloned().collect();
        let from_agent = match &self.agent {
            Some(sock) => identity::from_agent(sock).unwrap_or_else(|e| {
                problems.push(e.to_string());
                Vec::new()
            }),
            None => Vec::new(),
        };
        let candidates = identity::gather(self.file.clone(), from_agent);
        let budget = (max_message.saturating_sub(HEADER_LEN))
            .min(MAX_AUTH_PAYLOAD)
            .saturating_sub(ANSWER_LEN + TAG_LEN);
        let (signed, failures) = identity::prove(&candidates, transcript, budget);
        for e in failures {
            tracing::debug!("{e}");
            problems.push(e.to_string());
        }
        // How many from each origin, in order (`gather` keeps each
        // origin's identities together: the file's, then the agent's).
        let mut origins: Vec<(&str, usize)> = Vec::new();
        for (c, _) in &signed {
            tracing::debug!(key = %c.describe(), "offering");
            match origins.last_mut() {
                Some((origin, n)) if *origin == c.origin => *n += 1,
                _ => origins.push((&c.origin, 1)),
            }
        }
        let fitting: Vec<_> = signed.into_iter().map(|(_, p)| p).collect();
        let tried = origins
            .iter()
            .map(|(o, n)| format!("{n} from {o}"))
            .collect::<Vec<_>>()
            .join(" and ");
        if fitting.is_empty() {
            let why = if !candidates.is_empty() && problems.is_empty() {
                format!("no proof fits the broker's message size limit ({max_message} bytes; --max-message-size)")
            } else if problems.is_empty() {
                match &self.agent {
                    None => "none was found: no --identity (MQTT_IDENTITY) and no ssh-agent (SSH_AUTH_SOCK is not set)".to_owned(),
                    Some(sock) => format!("none was found: no --identity (MQTT_IDENTITY) and the ssh-agent at {} holds no keys", sock.display()),
                }
            } else {
                format!("none could sign: {}", problems.join("; "))
            };
            return Signed {
                proofs: Err(why),
                tried,
            };
        }
        Signed {
            proofs: access::encode(&fitting)
                .map(Bytes::from)
                .map_err(|e| e.to_string()),
            tried,
        }
    }
}
