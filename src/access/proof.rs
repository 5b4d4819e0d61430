//! What a client presents to open a session when the agent has
//! authorized keys: proofs that it holds a key, and their wire encoding
//! for the AUTH payload.
//!
//! # What is signed
//! An SSHSIG signature (OpenSSH's `PROTOCOL.sshsig`, what `ssh-keygen -Y
//! sign` makes) in the namespace [`NAMESPACE`] over the opening's 32-byte
//! transcript hash (`handshake::transcript`), with SHA-512 as the message
//! hash. The key signs the bytes [`signed_data`] returns:
//! `"SSHSIG" ‖ string(NAMESPACE) ‖ string("") ‖ string("sha512") ‖
//! string(SHA-512(transcript))`.
//! - SSHSIG's `"SSHSIG"` preamble can never begin an ssh user
//!   authentication request (those begin with a length-prefixed session
//!   id), and the namespace keeps it apart from every other SSHSIG use
//!   (`git`, `file`): a user's ssh key signs here without any signature
//!   being reusable in ssh or elsewhere, nor theirs here.
//! - ssh-agent signs any bytes it is given (a raw sign request), so the
//!   agent path and the key-file path make the very same signature.
//! - It can be checked by hand with `ssh-keygen -Y check-novalidate -n
//!   mqtt-proxy-access-v1`.
//! - The transcript binds node id, client id, session id, the agent's
//!   fresh share and nonce: a captured proof is useless in any other
//!   session.
//!
//! # Wire encoding
//! ```text
//! version u8 = 1
//! count   u8                    1..=MAX_PROOFS
//! count times:
//!   cert_len u16 BE             0 for a plain key, else ..=MAX_CERT_LEN
//!   cert     [cert_len]         OpenSSH certificate, SSH binary encoding
//!   sig_len  u16 BE             1..=MAX_SIG_LEN
//!   sig      [sig_len]          SSHSIG blob, binary (not PEM armored)
//! ```
//! A plain key travels only inside its SSHSIG (which names its public
//! key); a certificate's key must be the SSHSIG's key. Nothing may follow
//! the last proof.

use ssh_encoding::{Decode, Encode, Reader};
use ssh_key::private::{KeypairData, RsaKeypair};
use ssh_key::public::KeyData;
use ssh_key::{Algorithm, Certificate, HashAlg, PrivateKey, Signature, SshSig};

/// SSHSIG namespace of a proof: names the use and its version, so a
/// later change of what is signed cannot be confused with this one.
pub const NAMESPACE: &str = "mqtt-proxy-access-v1";
/// The message hash inside SSHSIG: what `ssh-keygen -Y sign` uses.
pub const HASH: HashAlg = HashAlg::Sha512;
/// Version byte in front of the encoding.
const VERSION: u8 = 1;
/// Most proofs in one AUTH: ssh's default `MaxAuthTries` is 6; a client
/// whose agent holds more keys sends the first ones.
pub const MAX_PROOFS: usize = 8;
/// Largest certificate: an RSA-8192 key signed by an RSA-8192 CA with a
/// long principal list is about 2.5 KiB.
pub const MAX_CERT_LEN: usize = 8 * 1024;
/// Largest SSHSIG blob: an RSA-8192 key and signature are about 2.1 KiB.
pub const MAX_SIG_LEN: usize = 4 * 1024;
/// Largest encoding: every proof at its largest.
pub const MAX_ENCODED_LEN: usize = 2 + MAX_PROOFS * (4 + MAX_CERT_LEN + MAX_SIG_LEN);

/// Why proofs could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("no proof")]
    Empty,
    #[error("more than {MAX_PROOFS} proofs")]
    TooMany,
    #[error("proof {index}: {what} too long ({len} bytes)")]
    TooLong {
        index: usize,
        what: &'static str,
        len: usize,
    },
    #[error("unknown proof encoding version {0}")]
    Version(u8),
    #[error("proofs truncated")]
    Truncated,
    #[error("bytes after the last proof")]
    Trailing,
    #[error("proof {index}: malformed {what}")]
    Malformed { index: usize, what: &'static str },
    #[error("proof {index}: the certificate is not for the signing key")]
    CertKeyMismatch { index: usize },
    #[error("could not encode a proof: {0}")]
    Encode(String),
}

/// One proof: a signature by a key, and the certificate of that key when
/// the client has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    cert: Option<Certificate>,
    sig: SshSig,
}

impl Proof {
    /// A proof from a signature made over [`signed_data`] by `key`
    /// (`cert`'s key when there is a certificate).
    pub fn new(
        key: KeyData,
        cert: Option<Certificate>,
        signature: Signature,
    ) -> Result<Proof, ProofError> {
        if cert.as_ref().is_some_and(|c| c.public_key() != &key) {
            return Err(ProofError::CertKeyMismatch { index: 0 });
        }
        let sig = SshSig::new(key, NAMESPACE, HASH, signature)
            .map_err(|e| ProofError::Encode(e.to_string()))?;
        Ok(Proof { cert, sig })
    }

    /// A proof from a whole SSHSIG (a key file signs with ssh-key's
    /// `PrivateKey::sign`).
    pub fn from_sshsig(cert: Option<Certificate>, sig: SshSig) -> Result<Proof, ProofError> {
        if cert
            .as_ref()
            .is_some_and(|c| c.public_key() != sig.public_key())
        {
            return Err(ProofError::CertKeyMismatch { index: 0 });
        }
        Ok(Proof { cert, sig })
    }

    /// The key that signed.
    pub fn key(&self) -> &KeyData {
        self.sig.public_key()
    }

    pub fn certificate(&self) -> Option<&Certificate> {
        self.cert.as_ref()
    }

    /// The SSHSIG signature (`ssh-keygen -Y check-novalidate -n
    /// mqtt-proxy-access-v1` checks its PEM form).
    pub fn sshsig(&self) -> &SshSig {
        &self.sig
    }

    /// Whether the signature is a valid one in our namespace over
    /// `transcript` (nothing about whether the key may open sessions).
    pub fn verifies(&self, transcript: &[u8; 32]) -> bool {
        let key = ssh_key::PublicKey::from(self.sig.public_key().clone());
        key.verify(NAMESPACE, transcript, &self.sig).is_ok()
    }
}

/// Sign the opening with a private key held in this process (a key
/// file's, decrypted), with its certificate when there is one.
pub fn sign_with_key(
    key: &PrivateKey,
    cert: Option<Certificate>,
    transcript: &[u8; 32],
) -> Result<Proof, ProofError> {
    let failed = |e: &dyn std::fmt::Display| ProofError::Encode(e.to_string());
    let sig = match key.key_data() {
        KeypairData::Rsa(rsa) => {
            let signature = rsa_sign(rsa, &signed_data(transcript)).map_err(|e| failed(&e))?;
            SshSig::new(
                key.public_key().key_data().clone(),
                NAMESPACE,
                HASH,
                signature,
            )
            .map_err(|e| failed(&e))?
        }
        _ => key
            .sign(NAMESPACE, HASH, transcript)
            .map_err(|e| failed(&e))?,
    };
    Proof::from_sshsig(cert, sig)
}

/// rsa-sha2-512 (PKCS#1 v1.5 with SHA-512) by the `rsa` crate, from the
/// key's components: ssh-key 0.6.7's own conversion passes p twice.
fn rsa_sign(key: &RsaKeypair, data: &[u8]) -> Result<Signature, String> {
    use rsa::signature::{SignatureEncoding, Signer};
    let int = |m: &ssh_key::Mpint| {
        m.as_positive_bytes()
            .map(rsa::BigUint::from_bytes_be)
            .ok_or_else(|| "a negative RSA component".to_string())
    };
    let private = rsa::RsaPrivateKey::from_components(
        int(&key.public.n)?,
        int(&key.public.e)?,
        int(&key.private.d)?,
        vec![int(&key.private.p)?, int(&key.private.q)?],
    )
    .map_err(|e| e.to_string())?;
    let signer = rsa::pkcs1v15::SigningKey::<ssh_key::sha2::Sha512>::new(private);
    let sig = signer.try_sign(data).map_err(|e| e.to_string())?;
    Signature::new(
        Algorithm::Rsa {
            hash: Some(HashAlg::Sha512),
        },
        sig.to_vec(),
    )
    .map_err(|e| e.to_string())
}

/// The bytes a key signs for a session with this transcript hash.
pub fn signed_data(transcript: &[u8; 32]) -> Vec<u8> {
    SshSig::signed_data(NAMESPACE, HASH, transcript)
        .expect("the namespace is not empty and the message is small")
}

/// Encode proofs for AUTH.
pub fn encode(proofs: &[Proof]) -> Result<Vec<u8>, ProofError> {
    if proofs.is_empty() {
        return Err(ProofError::Empty);
    }
    if proofs.len() > MAX_PROOFS {
        return Err(ProofError::TooMany);
    }
    let mut out = vec![VERSION, proofs.len() as u8];
    for (index, proof) in proofs.iter().enumerate() {
        let cert = match &proof.cert {
            Some(c) => c
                .to_bytes()
                .map_err(|e| ProofError::Encode(e.to_string()))?,
            None => Vec::new(),
        };
        let mut sig = Vec::new();
        proof
            .sig
            .encode(&mut sig)
            .map_err(|e| ProofError::Encode(e.to_string()))?;
        for (what, bytes, max) in [
            ("certificate", &cert, MAX_CERT_LEN),
            ("signature", &sig, MAX_SIG_LEN),
        ] {
            if bytes.len() > max {
                return Err(ProofError::TooLong {
                    index,
                    what,
                    len: bytes.len(),
                });
            }
            out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            out.extend_from_slice(bytes);
        }
    }
    Ok(out)
}

/// Decode AUTH's proofs. Malformed input is an error, never a panic.
pub fn decode(bytes: &[u8]) -> Result<Vec<Proof>, ProofError> {
    let mut input = Input(bytes);
    let version = input.u8()?;
    if version != VERSION {
        return Err(ProofError::Version(version));
    }
    let count = input.u8()? as usize;
    if count == 0 {
        return Err(ProofError::Empty);
    }
    if count > MAX_PROOFS {
        return Err(ProofError::TooMany);
    }
    let mut proofs = Vec::with_capacity(count);
    for index in 0..count {
        let cert = input.field(index, "certificate", MAX_CERT_LEN)?;
        let cert = match cert.is_empty() {
            true => None,
            false => Some(
                Certificate::from_bytes(cert).map_err(|_| ProofError::Malformed {
                    index,
                    what: "certificate",
                })?,
            ),
        };
        let sig = input.field(index, "signature", MAX_SIG_LEN)?;
        let malformed = ProofError::Malformed {
            index,
            what: "signature",
        };
        let mut reader = sig;
        let sig = SshSig::decode(&mut reader).map_err(|_| malformed.clone())?;
        let sig = reader.finish(sig).map_err(|_| malformed)?;
        proofs.push(
            Proof::from_sshsig(cert, sig).map_err(|_| ProofError::CertKeyMismatch { index })?,
        );
    }
    if !input.0.is_empty() {
        return Err(ProofError::Trailing);
    }
    Ok(proofs)
}

/// What is left to decode.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProofError> {
        if self.0.len() < n {
            return Err(ProofError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, ProofError> {
        Ok(self.take(1)?[0])
    }

    /// A u16-length-prefixed field of at most `max` bytes.
    fn field(
        &mut self,
        index: usize,
        what: &'static str,
        max: usize,
    ) -> Result<&'a [u8], ProofError> {
        let len = self.take(2)?;
        let len = u16::from_be_bytes([len[0], len[1]]) as usize;
        if len > max {
            return Err(ProofError::TooLong { index, what, len });
        }
        self.take(len)
    }
}

#[cfg(test)]
mod tests;
