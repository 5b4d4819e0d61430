//! The opening's key agreement: every session gets its own keys.
//!
//! The client's OPEN carries an ephemeral X25519 share; the agent answers
//! with its own, in CHALLENGE when it has a password, else in ACCEPT. Both
//! ends hash what they saw of the opening into a [`transcript`] (node id,
//! client id, session id, the OPEN and CHALLENGE payloads, the agent's
//! share) and derive the session's keys with HKDF-SHA-256 from the X25519
//! result and, when the agent has a password, a key derived from it
//! ([`agree`]):
//! - AES-256-GCM keys, one per direction, that seal every frame after the
//!   opening (`seal`);
//! - an ACCEPT confirmation: the agent proves it derived the same keys, so
//!   a client never takes an ACCEPT that someone else made from a share of
//!   its own (with a password, only who knows it can).
//!
//! With a password the client's AUTH is an HMAC of the transcript
//! ([`answer`]): a captured answer is useless for any other session, and a
//! share swapped in by someone racing the opening makes it fail.
//! Built from ring's X25519, HKDF and HMAC; the construction follows the
//! Noise protocol's NNpsk0 pattern (an ephemeral-ephemeral agreement with
//! an optional pre-shared key, both mixed into a key derivation salted with
//! the handshake's hash). Without a password or keys, an attacker who
//! races the opening can break it, not join it; everyone who only watches,
//! or publishes after the opening, is shut out.

use std::sync::Arc;

use ring::{agreement, digest, hkdf, hmac, rand};

use crate::config::Secret;
use crate::seal::{Opener, Sealer};

/// Bytes of a key share (an X25519 public key).
pub const SHARE_LEN: usize = 32;
/// Bytes of ACCEPT's key confirmation (HMAC-SHA-256).
pub const CONFIRM_LEN: usize = 32;
/// Bytes of an AUTH answer (HMAC-SHA-256).
pub const ANSWER_LEN: usize = 32;
/// What a CHALLENGE asks for, in the byte behind the agent's share: the
/// agent password's answer, proofs of an authorized ssh key (issue 24), or
/// both.
pub const NEEDS_PASSWORD: u8 = 1;
pub const NEEDS_KEYS: u8 = 2;
/// Domain separation: the protocol and this handshake's version.
const LABEL: &[u8] = b"mqtt-proxy handshake v2";

/// Which end we are: each seals with its own direction's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Agent,
}

/// Why a key agreement failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    #[error("malformed key share")]
    Share,
}

/// One end's ephemeral key pair for one session.
pub struct Ephemeral {
    key: agreement::EphemeralPrivateKey,
    share: [u8; SHARE_LEN],
}

impl Ephemeral {
    /// A fresh key pair from the OS random number generator.
    pub fn new() -> Ephemeral {
        let rng = rand::SystemRandom::new();
        let key = agreement::EphemeralPrivateKey::generate(&agreement::X25519, &rng)
            .expect("the OS random number generator is available");
        let public = key
            .compute_public_key()
            .expect("an X25519 key has a public key");
        let share = public
            .as_ref()
            .try_into()
            .expect("an X25519 public key has 32 bytes");
        Ephemeral { key, share }
    }

    /// The public share, for the peer.
    pub fn share(&self) -> &[u8; SHARE_LEN] {
        &self.share
    }
}

impl Default for Ephemeral {
    fn default() -> Self {
        Ephemeral::new()
    }
}

/// The hash of what both ends saw of the opening. Every field is length
/// prefixed, so no two openings hash the same input.
pub fn transcript(
    node: &str,
    cid: &str,
    sid: u64,
    open: &[u8],
    challenge: &[u8],
    agent_share: &[u8],
) -> [u8; 32] {
    let mut h = digest::Context::new(&digest::SHA256);
    for field in [
        LABEL,
        node.as_bytes(),
        cid.as_bytes(),
        &sid.to_be_bytes(),
        open,
        challenge,
        agent_share,
    ] {
        h.update(&(field.len() as u32).to_be_bytes());
        h.update(field);
    }
    h.finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 has 32 bytes")
}

/// The client's answer to a password challenge: an HMAC of the transcript
/// (which holds the challenge's nonce) under the password.
pub fn answer(password: &Secret, transcript: &[u8; 32]) -> [u8; ANSWER_LEN] {
    hmac::sign(&password_key(password), &answer_message(transcript))
        .as_ref()
        .try_into()
        .expect("HMAC-SHA-256 has 32 bytes")
}

/// Check an AUTH answer, in constant time.
pub fn verify_answer(password: &Secret, transcript: &[u8; 32], mac: &[u8]) -> bool {
    hmac::verify(&password_key(password), &answer_message(transcript), mac).is_ok()
}

/// The HMAC key every password MAC (answer, presence proof, PSK) uses.
fn password_key(password: &Secret) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, password.expose().as_bytes())
}

fn answer_message(transcript: &[u8; 32]) -> Vec<u8> {
    [&b"mqtt-proxy auth v2 "[..], transcript].concat()
}

/// What an agent with a password puts in its presence messages: an HMAC
/// under the password of the node, the status, `since` and the instance,
/// in hex. Anyone on the broker may publish a presence message; only who
/// knows the password can make one another agent of the node believes.
pub fn presence_proof(
    password: &Secret,
    node: &str,
    status: &str,
    since: u64,
    instance: &str,
) -> String {
    let tag = hmac::sign(
        &password_key(password),
        &presence_message(node, status, since, instance),
    );
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Check a presence message's proof, in constant time.
pub fn verify_presence_proof(
    password: &Secret,
    node: &str,
    status: &str,
    since: u64,
    instance: &str,
    proof: &str,
) -> bool {
    let Some(tag) = (0..proof.len())
        .step_by(2)
        .map(|i| {
            proof
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    hmac::verify(
        &password_key(password),
        &presence_message(node, status, since, instance),
        &tag,
    )
    .is_ok()
}

fn presence_message(node: &str, status: &str, since: u64, instance: &str) -> Vec<u8> {
    let mut m = b"mqtt-proxy presence v1".to_vec();
    for field in [
        node.as_bytes(),
        status.as_bytes(),
        &since.to_be_bytes(),
        instance.as_bytes(),
    ] {
        m.extend_from_slice(&(field.len() as u32).to_be_bytes());
        m.extend_from_slice(field);
    }
    m
}

/// A session's keys: one to seal what we send, one to open what we get,
/// and the ACCEPT confirmation.
pub struct SessionKeys {
    /// Shared: on the agent, the dispatcher seals the RESET it sends when
    /// the agent stops.
    pub tx: Arc<Sealer>,
    pub rx: Opener,
    confirm: hmac::Key,
    /// Seals the client's ssh-key proofs in AUTH (`access::proof`), so
    /// that someone who only watches the broker does not learn who opens
    /// sessions where (public keys, certificates' key ids and principals).
    /// Used once per session, for one message: its nonce is constant.
    proofs: ring::aead::LessSafeKey,
}

impl SessionKeys {
    /// ACCEPT's key confirmation (the agent sends it).
    pub fn confirmation(&self) -> [u8; CONFIRM_LEN] {
        hmac::sign(&self.confirm, b"accept")
            .as_ref()
            .try_into()
            .expect("HMAC-SHA-256 has 32 bytes")
    }

    /// Whether an ACCEPT's confirmation shows the agent derived these very
    /// keys (constant time).
    pub fn confirms(&self, tag: &[u8]) -> bool {
        hmac::verify(&self.confirm, b"accept", tag).is_ok()
    }

    /// The client's proofs, sealed for AUTH (the client seals them once;
    /// a repeated AUTH repeats the same bytes).
    pub fn seal_proofs(&self, proofs: &[u8]) -> Vec<u8> {
        let mut sealed = proofs.to_vec();
        self.proofs
            .seal_in_place_append_tag(proofs_nonce(), ring::aead::Aad::empty(), &mut sealed)
            .expect("proofs are far below AES-GCM's length limit");
        sealed
    }

    /// The proofs of an AUTH, if they were sealed with these keys.
    pub fn open_proofs(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        let mut buf = sealed.to_vec();
        let len = self
            .proofs
            .open_in_place(proofs_nonce(), ring::aead::Aad::empty(), &mut buf)
            .ok()?
            .len();
        buf.truncate(len);
        Some(buf)
    }
}

/// The nonce of the one message the proofs key seals.
fn proofs_nonce() -> ring::aead::Nonce {
    ring::aead::Nonce::assume_unique_for_key([0; ring::aead::NONCE_LEN])
}

/// Agree on the session's keys with the peer's `share`, over `transcript`,
/// with the agent password if there is one.
pub fn agree(
    ours: Ephemeral,
    share: &[u8],
    transcript: &[u8; 32],
    password: Option<&Secret>,
    role: Role,
) -> Result<SessionKeys, HandshakeError> {
    if share.len() != SHARE_LEN {
        return Err(HandshakeError::Share);
    }
    let peer = agreement::UnparsedPublicKey::new(&agreement::X25519, share);
    // ring refuses a share of low order (an all-zero result).
    let mut ikm = agreement::agree_ephemeral(ours.key, &peer, |dh| dh.to_vec())
        .map_err(|_| HandshakeError::Share)?;
    let psk = match password {
        Some(p) => hmac::sign(&password_key(p), b"mqtt-proxy psk v2")
            .as_ref()
            .to_vec(),
        None => vec![0; 32],
    };
    ikm.extend_from_slice(&psk);
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, transcript).extract(&ikm);
    let aead_key = |label: &[u8]| -> ring::aead::UnboundKey {
        prk.expand(&[label], &ring::aead::AES_256_GCM)
            .expect("one AES-256 key is within HKDF's output limit")
            .into()
    };
    let (tx, rx) = match role {
        Role::Client => (b"client to agent", b"agent to client"),
        Role::Agent => (b"agent to client", b"client to agent"),
    };
    let confirm: hmac::Key = prk
        .expand(&[b"accept confirmation"], hmac::HMAC_SHA256)
        .expect("one HMAC key is within HKDF's output limit")
        .into();
    Ok(SessionKeys {
        tx: Arc::new(Sealer::new(aead_key(tx))),
        rx: Opener::new(aead_key(rx)),
        confirm,
        proofs: ring::aead::LessSafeKey::new(aead_key(b"client proofs")),
    })
}

/// Both ends' keys of one session, agreed as the opening would: for tests
/// of what runs after the opening.
#[cfg(test)]
pub fn pair_for_tests(password: Option<&Secret>) -> (SessionKeys, SessionKeys) {
    let (c, a) = (Ephemeral::new(), Ephemeral::new());
    let t = transcript("node", "cid", 1, c.share(), &[], a.share());
    let a_share = *a.share();
    let agent = agree(a, c.share(), &t, password, Role::Agent).expect("valid shares");
    let client = agree(c, &a_share, &t, password, Role::Client).expect("valid shares");
    (client, agent)
}

#[cfg(test)]
mod tests;
