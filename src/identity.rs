//! The workstation's keys (issue 24): gathered as ssh gathers them, and
//! the proofs they sign for an opening (`access::proof`).
//!
//! - From `--identity FILE`, with `FILE-cert.pub` beside it used when
//!   present (the certificate offered first, then the plain key, as ssh
//!   offers them). A passphrase-protected file asks on the terminal
//!   (`/dev/tty`), never on stdin/stdout, which carry ssh's bytes.
//! - From the running ssh-agent (`SSH_AUTH_SOCK`; empty means none), each
//!   identity it holds, certificates included, in its order.
//!
//! The private key never leaves ssh-agent or this process: ssh-agent is
//! asked for a signature over [`access::signed_data`](crate::access::signed_data)
//! (RSA keys with rsa-sha2-512, the agent crate's choice); a key file's key
//! is decrypted in memory only. Everything here blocks (the agent socket,
//! the terminal, the file): call it in `spawn_blocking`.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ssh_key::public::KeyData;
use ssh_key::{Certificate, PrivateKey};

use crate::access::proof::{self, Proof, ProofError, MAX_PROOFS};
use crate::config::Secret;

/// How many times a wrong passphrase is asked again, as ssh does.
const PASSPHRASE_TRIES: usize = 3;

/// Why identities could not be gathered or could not sign.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("could not read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not an OpenSSH private key: {reason}", path.display())]
    KeyFile { path: PathBuf, reason: String },
    #[error("{} is not a certificate: {reason}", path.display())]
    CertFile { path: PathBuf, reason: String },
    #[error("{}: the certificate is not for the key beside it", path.display())]
    CertMismatch { path: PathBuf },
    #[error("could not read the passphrase for {}: {source}", path.display())]
    Passphrase {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("wrong passphrase for {}", path.display())]
    WrongPassphrase { path: PathBuf },
    /// An empty answer: as with ssh, the user skips this key.
    #[error("no passphrase given for {}", path.display())]
    NoPassphrase { path: PathBuf },
    #[error("ssh-agent at {}: {reason}", sock.display())]
    Agent { sock: PathBuf, reason: String },
    #[error("could not sign with {key}: {reason}")]
    Sign { key: String, reason: String },
    #[error(transparent)]
    Proof(#[from] ProofError),
}

/// Who holds a private key.
#[derive(Clone)]
enum Holder {
    Agent {
        sock: PathBuf,
        identity: ssh_agent_client_rs::Identity<'static>,
    },
    File(Arc<PrivateKey>),
}

impl fmt::Debug for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holder::Agent { sock, .. } => write!(f, "ssh-agent at {}", sock.display()),
            Holder::File(_) => f.write_str("key file (private key not shown)"),
        }
    }
}

/// One identity that can sign: a key, with its certificate when it is
/// offered as one.
#[derive(Debug, Clone)]
pub struct Candidate {
    key: KeyData,
    cert: Option<Certificate>,
    /// Where it came from, for messages (`ssh-agent`, the file's path).
    pub origin: String,
    holder: Holder,
}

impl Candidate {
    pub fn key(&self) -> &KeyData {
        &self.key
    }

    pub fn certificate(&self) -> Option<&Certificate> {
        self.cert.as_ref()
    }

    /// `SHA256:…` of the key, and ` (certificate ID)` for a certificate.
    pub fn describe(&self) -> String {
        let fp = crate::access::fingerprint(&self.key);
        match &self.cert {
            Some(c) => format!("{fp} (certificate {:?}) from {}", c.key_id(), self.origin),
            None => format!("{fp} from {}", self.origin),
        }
    }

    /// Sign the opening whose transcript hash is `transcript`.
    pub fn sign(&self, transcript: &[u8; 32]) -> Result<Proof, IdentityError> {
        let failed = |reason: String| IdentityError::Sign {
            key: self.describe(),
            reason,
        };
        match &self.holder {
            Holder::File(key) => proof::sign_with_key(key, self.cert.clone(), transcript)
                .map_err(|e| failed(e.to_string())),
            Holder::Agent { sock, identity } => {
                let mut client = ssh_agent_client_rs::Client::connect(sock).map_err(|e| {
                    IdentityError::Agent {
                        sock: sock.clone(),
                        reason: e.to_string(),
                    }
                })?;
                let signature = client
                    .sign_with_ref(identity, &proof::signed_data(transcript))
                    .map_err(|e| failed(e.to_string()))?;
                Ok(Proof::new(self.key.clone(), self.cert.clone(), signature)?)
            }
        }
    }
}

/// The ssh-agent socket from `SSH_AUTH_SOCK`'s value: unset or empty
/// means no agent.
pub fn agent_socket(value: Option<&OsStr>) -> Option<PathBuf> {
    value.filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// Every identity the ssh-agent at `sock` holds, in its order.
pub fn from_agent(sock: &Path) -> Result<Vec<Candidate>, IdentityError> {
    let agent_err = |reason: String| IdentityError::Agent {
        sock: sock.to_path_buf(),
        reason,
    };
    let mut client =
        ssh_agent_client_rs::Client::connect(sock).map_err(|e| agent_err(e.to_string()))?;
    let identities = client
        .list_all_identities()
        .map_err(|e| agent_err(e.to_string()))?;
    Ok(identities
        .into_iter()
        .map(|identity| {
            let (key, cert) = match &identity {
                ssh_agent_client_rs::Identity::PublicKey(k) => (k.key_data().clone(), None),
                ssh_agent_client_rs::Identity::Certificate(c) => (
                    c.public_key().clone(),
                    Some(c.as_ref().clone().into_owned()),
                ),
            };
            Candidate {
                key,
                cert,
                origin: "ssh-agent".to_string(),
                holder: Holder::Agent {
                    sock: sock.to_path_buf(),
                    identity,
                },
            }
        })
        .collect())
}

/// `FILE-cert.pub`, where ssh looks for a key file's certificate.
pub fn cert_path(key_file: &Path) -> PathBuf {
    let mut name = key_file.as_os_str().to_os_string();
    name.push("-cert.pub");
    PathBuf::from(name)
}

/// The identities of a key file: its certificate (`FILE-cert.pub`) when
/// there is one, then the key. `ask` is asked for the passphrase of an
/// encrypted key ([`ask_on_tty`] in production), at most
/// `PASSPHRASE_TRIES` times; an empty answer skips the key
/// ([`IdentityError::NoPassphrase`]: go on with the agent's keys).
pub fn from_file(
    path: &Path,
    mut ask: impl FnMut(&str) -> std::io::Result<Secret>,
) -> Result<Vec<Candidate>, IdentityError> {
    let text = std::fs::read_to_string(path).map_err(|source| IdentityError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut key = PrivateKey::from_openssh(&text).map_err(|e| IdentityError::KeyFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    drop(text);
    if key.is_encrypted() {
        let prompt = format!("Enter passphrase for key '{}': ", path.display());
        let mut tries = 0;
        key = loop {
            let pass = ask(&prompt).map_err(|source| IdentityError::Passphrase {
                path: path.to_path_buf(),
                source,
            })?;
            if pass.expose().is_empty() {
                return Err(IdentityError::NoPassphrase {
                    path: path.to_path_buf(),
                });
            }
            // A wrong passphrase fails the decryption's check bytes.
            if let Ok(k) = key.decrypt(pass.expose()) {
                break k;
            }
            tries += 1;
            if tries == PASSPHRASE_TRIES {
                return Err(IdentityError::WrongPassphrase {
                    path: path.to_path_buf(),
                });
            }
        };
    }
    let public = key.public_key().key_data().clone();
    let key = Arc::new(key);
    let origin = path.display().to_string();
    let mut out = Vec::new();
    let cert_file = cert_path(path);
    if cert_file.exists() {
        let text = std::fs::read_to_string(&cert_file).map_err(|source| IdentityError::Read {
            path: cert_file.clone(),
            source,
        })?;
        let cert = Certificate::from_openssh(text.trim()).map_err(|e| IdentityError::CertFile {
            path: cert_file.clone(),
            reason: e.to_string(),
        })?;
        if cert.public_key() != &public {
            return Err(IdentityError::CertMismatch { path: cert_file });
        }
        out.push(Candidate {
            key: public.clone(),
            cert: Some(cert),
            origin: origin.clone(),
            holder: Holder::File(key.clone()),
        });
    }
    out.push(Candidate {
        key: public,
        cert: None,
        origin,
        holder: Holder::File(key),
    });
    Ok(out)
}

/// Ask for a passphrase on the terminal (`/dev/tty`), never on
/// stdin/stdout.
pub fn ask_on_tty(prompt: &str) -> std::io::Result<Secret> {
    rpassword::prompt_password(prompt).map(Secret::new)
}

/// The identities to offer: the key file's first (the user named it),
/// then the agent's, without offering one key and certificate twice.
pub fn gather(file: Vec<Candidate>, agent: Vec<Candidate>) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    for c in file.into_iter().chain(agent) {
        if !out.iter().any(|o| o.key == c.key && o.cert == c.cert) {
            out.push(c);
        }
    }
    out
}

/// Sign the opening with each identity in turn, up to [`MAX_PROOFS`] and
/// as many as fit in `budget` bytes encoded: each proof with the identity
/// that made it, and each identity that could not sign (ssh-agent may
/// refuse one: a FIDO key without its token, a confirmation declined).
/// Signing stops at the first that does not fit, so ssh-agent is not asked
/// for signatures that would not be sent.
pub fn prove<'a>(
    candidates: &'a [Candidate],
    transcript: &[u8; 32],
    budget: usize,
) -> (Vec<(&'a Candidate, Proof)>, Vec<IdentityError>) {
    let mut proofs: Vec<Proof> = Vec::new();
    let mut signers = Vec::new();
    let mut failures = Vec::new();
    for c in candidates {
        if proofs.len() == MAX_PROOFS {
            break;
        }
        match c.sign(transcript) {
            Ok(p) => proofs.push(p),
            Err(e) => {
                failures.push(e);
                continue;
            }
        }
        if proof::encode(&proofs).map_or(true, |e| e.len() > budget) {
            proofs.pop();
            break;
        }
        signers.push(c);
    }
    (signers.into_iter().zip(proofs).collect(), failures)
}

#[cfg(test)]
mod tests;
