//! Who may open a session (issue 24): ssh keys and certificates, checked
//! by the agent against OpenSSH's `authorized_keys` and a revoked-keys
//! list, without I/O.
//!
//! - `access::lists` parses the two files;
//! - `access::proof` is what a client presents (SSHSIG signatures over the
//!   opening's transcript, with a certificate when it has one) and its
//!   wire encoding;
//! - `access::watch` re-reads the files when they change (the only I/O);
//! - this module decides: [`Access::check`] at the opening,
//!   [`Access::still_authorized`] for live sessions after a change.
//!
//! The rules follow sshd's: a plain key must be listed; a certificate must
//! be a *user* certificate signed by a listed `cert-authority`, within its
//! validity window, without critical options we cannot honour, naming one
//! of the line's principals (the node id when the line names none). A key
//! in the revoked list (a certificate's own key, its CA) is refused
//! whatever else says.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ssh_key::certificate::CertType;
use ssh_key::public::KeyData;
use ssh_key::{Certificate, HashAlg};

pub mod lists;
pub mod proof;
pub mod watch;

pub use lists::{
    parse_authorized_keys, parse_revoked_keys, AuthorizedKeys, ParseError, RevokedKeys,
};
pub use proof::{decode, encode, signed_data, Proof, ProofError};

/// Why a session was refused. `Display` is the reason the client prints
/// (`mqtt-proxy: NODE refused the session: REASON`) and the audit line
/// logs. Variants are ordered from the least to the most telling: when
/// several proofs fail, the greatest wins ([`Denial::most_telling`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
pub enum Denial {
    /// No proof's key is listed, or no signature verified (`tried`: how
    /// many proofs came).
    #[error("no authorized key (tried {tried})")]
    NoAuthorizedKey { tried: usize },
    /// A certificate from a listed CA names none of the principals allowed.
    #[error("certificate has no allowed principal")]
    NoPrincipal,
    /// A certificate from a listed CA is not valid yet (a clock ahead, or
    /// a certificate made for later).
    #[error("certificate not yet valid")]
    NotYetValid,
    /// A certificate from a listed CA is past its validity window.
    #[error("certificate expired")]
    Expired,
    /// The key, a certificate's key or its CA is revoked.
    #[error("access revoked")]
    Revoked,
}

/// The reason a client is told when none of its keys is authorized: it
/// adds what it offered (`no authorized key (tried 2 from ssh-agent)`).
pub const NO_AUTHORIZED_KEY: &str = "no authorized key";

impl Denial {
    /// What the client is told: this, but without the count of proofs
    /// (the client knows better what it offered, and says so).
    pub fn for_client(&self) -> String {
        match self {
            Denial::NoAuthorizedKey { .. } => NO_AUTHORIZED_KEY.to_owned(),
            other => other.to_string(),
        }
    }

    /// The most telling of two reasons.
    pub fn most_telling(self, other: Denial) -> Denial {
        self.max(other)
    }
}

/// Who opened a session: for the audit line, and for
/// [`Access::still_authorized`] when the files change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The signing key's fingerprint, `SHA256:…` as `ssh-keygen -l` shows.
    pub fingerprint: String,
    /// With a certificate: its key id and the principal that matched.
    pub certificate: Option<CertIdentity>,
    grant: Grant,
}

/// The certificate part of an [`Identity`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    pub key_id: String,
    pub principal: String,
    /// The CA's fingerprint.
    pub ca: String,
}

/// What a session was admitted on, kept to check it again.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Grant {
    Key(KeyData),
    Certificate(Arc<Certificate>),
}

/// The two lists an agent checks against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    pub authorized: AuthorizedKeys,
    pub revoked: RevokedKeys,
}

/// `SHA256:…` of a key.
pub fn fingerprint(key: &KeyData) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

impl Access {
    pub fn new(authorized: AuthorizedKeys, revoked: RevokedKeys) -> Access {
        Access {
            authorized,
            revoked,
        }
    }

    /// Parse both files' text.
    pub fn parse(authorized_keys: &str, revoked_keys: &str) -> Result<Access, ParseError> {
        Ok(Access::new(
            parse_authorized_keys(authorized_keys)?,
            parse_revoked_keys(revoked_keys)?,
        ))
    }

    /// Whether one of `proofs` opens a session on node `node` whose
    /// opening hashed to `transcript`, at `now`. The first proof that
    /// passes wins; when none does, the most telling reason.
    pub fn check(
        &self,
        proofs: &[Proof],
        node: &str,
        transcript: &[u8; 32],
        now: SystemTime,
    ) -> Result<Identity, Denial> {
        let mut worst = Denial::NoAuthorizedKey {
            tried: proofs.len(),
        };
        for proof in proofs {
            // A signature that does not verify proves nothing: whatever
            // else is wrong with its key is not this client's to learn.
            if !proof.verifies(transcript) {
                continue;
            }
            // `Proof` keeps a certificate only for its signing key; checked
            // again because the whole admission rests on it.
            if proof
                .certificate()
                .is_some_and(|c| c.public_key() != proof.key())
            {
                continue;
            }
            let grant = match proof.certificate() {
                Some(cert) => Grant::Certificate(Arc::new(cert.clone())),
                None => Grant::Key(proof.key().clone()),
            };
            match self.admit(grant, node, Some(now)) {
                Ok(identity) => return Ok(identity),
                // `worst` already says this, with the count of proofs.
                Err(Denial::NoAuthorizedKey { .. }) => {}
                Err(denial) => worst = worst.most_telling(denial),
            }
        }
        Err(worst)
    }

    /// Whether a live session admitted as `identity` may go on under these
    /// (new) lists. A session that may not is told [`Denial::Revoked`]
    /// whatever the rule that now fails (its key removed or revoked, its
    /// CA's line gone or narrowed): the user had access and it was taken
    /// away (issue 24: "a live session closed by revocation ends ssh with
    /// `access revoked`"). The validity window is not checked again: as
    /// with sshd, a certificate that expires during a session does not
    /// end it.
    pub fn still_authorized(&self, identity: &Identity, node: &str) -> Result<(), Denial> {
        self.admit(identity.grant.clone(), node, None)
            .map(|_| ())
            .map_err(|_| Denial::Revoked)
    }

    /// The rules, on a key whose possession is proven. `now` is `None`
    /// to skip the validity window.
    fn admit(&self, grant: Grant, node: &str, now: Option<SystemTime>) -> Result<Identity, Denial> {
        let none = Denial::NoAuthorizedKey { tried: 1 };
        match grant {
            Grant::Key(key) => {
                if self.revoked.contains(&key) {
                    return Err(Denial::Revoked);
                }
                if !self.authorized.lists_key(&key) {
                    return Err(none);
                }
                Ok(Identity {
                    fingerprint: fingerprint(&key),
                    certificate: None,
                    grant: Grant::Key(key),
                })
            }
            Grant::Certificate(cert) => {
                let ca = cert.signature_key();
                let lines: Vec<Option<&[String]>> = self.authorized.authorities(ca).collect();
                // Only a certificate from a CA we list may tell more than
                // "no authorized key"; its signature must be the CA's.
                if lines.is_empty() || cert.verify_signature().is_err() {
                    if self.revoked.contains(cert.public_key()) {
                        return Err(Denial::Revoked);
                    }
                    return Err(none);
                }
                if self.revoked.contains(cert.public_key()) || self.revoked.contains(ca) {
                    return Err(Denial::Revoked);
                }
                // sshd refuses host certificates for users, and
                // certificates with critical options it does not know; we
                // can honour none (force-command, source-address,
                // verify-required).
                if cert.cert_type() != CertType::User || !cert.critical_options().is_empty() {
                    return Err(none);
                }
                if let Some(now) = now {
                    let now = now
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0);
                    if now < cert.valid_after() {
                        return Err(Denial::NotYetValid);
                    }
                    // PROTOCOL.certkeys: valid after <= now < valid before.
                    if now >= cert.valid_before() {
                        return Err(Denial::Expired);
                    }
                }
                let principal = lines
                    .iter()
                    .find_map(|allowed| matching_principal(&cert, *allowed, node))
                    .ok_or(Denial::NoPrincipal)?;
                Ok(Identity {
                    fingerprint: fingerprint(cert.public_key()),
                    certificate: Some(CertIdentity {
                        key_id: cert.key_id().to_string(),
                        principal,
                        ca: fingerprint(ca),
                    }),
                    grant: Grant::Certificate(cert),
                })
            }
        }
    }
}

/// The first of the certificate's principals that the line allows (its
/// `principals=` list, else the node id). A certificate with no
/// principals matches nothing, as sshd requires for user certificates.
fn matching_principal(
    cert: &Certificate,
    allowed: Option<&[String]>,
    node: &str,
) -> Option<String> {
    cert.valid_principals()
        .iter()
        .find(|p| match allowed {
            Some(list) => list.iter().any(|a| a == *p),
            None => p.as_str() == node,
        })
        .cloned()
}

#[cfg(test)]
pub(crate) mod testkeys;
#[cfg(test)]
mod tests;
