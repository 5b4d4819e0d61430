use super::*;
use crate::access::testkeys::{ecdsa, ed25519, every_kind, prove, rsa, user_cert};
use ssh_key::EcdsaCurve;

const T: [u8; 32] = [7; 32];

#[test]
fn every_key_kind_signs_and_verifies_over_its_transcript_only() {
    for key in every_kind() {
        let p = prove(&key, None, &T);
        assert!(p.verifies(&T), "{:?}", key.algorithm());
        assert!(!p.verifies(&[8; 32]), "{:?}", key.algorithm());
        assert_eq!(p.key(), key.public_key().key_data());
    }
}

#[test]
fn the_signed_bytes_are_sshsig_in_our_namespace() {
    let data = signed_data(&T);
    assert!(data.starts_with(b"SSHSIG"));
    let ns = NAMESPACE.as_bytes();
    assert_eq!(&data[6..10], &(ns.len() as u32).to_be_bytes());
    assert_eq!(&data[10..10 + ns.len()], ns);
    // A signature made over these bytes (as ssh-agent is asked to) is the
    // one a key file makes.
    let key = ed25519();
    let sig = signature::Signer::try_sign(&key, &data).expect("signs");
    let p = Proof::new(key.public_key().key_data().clone(), None, sig).expect("proof");
    assert!(p.verifies(&T));
}

#[test]
fn another_namespace_does_not_verify() {
    let key = ed25519();
    let sig = key.sign("file", HASH, &T).expect("signs");
    let p = Proof::from_sshsig(None, sig).expect("proof");
    assert!(!p.verifies(&T));
}

#[test]
fn round_trip() {
    let (ca, a, b) = (ed25519(), ed25519(), rsa());
    let cert = user_cert(&ca, &a, &["ops"]);
    let proofs = vec![
        prove(&a, Some(cert), &T),
        prove(&a, None, &T),
        prove(&b, None, &T),
    ];
    let bytes = encode(&proofs).expect("encodes");
    assert_eq!(bytes[..2], [1, 3]);
    assert_eq!(decode(&bytes).expect("decodes"), proofs);
    // Sizes a reader of the protocol may want: an ed25519 proof is small.
    let one = encode(&proofs[1..2]).expect("encodes");
    assert!(one.len() < 200, "{}", one.len());
}

#[test]
fn encode_refuses_none_and_too_many() {
    assert_eq!(encode(&[]), Err(ProofError::Empty));
    let p = prove(&ed25519(), None, &T);
    let many = vec![p; MAX_PROOFS + 1];
    assert_eq!(encode(&many), Err(ProofError::TooMany));
    assert!(encode(&many[..MAX_PROOFS]).is_ok());
}

#[test]
fn a_certificate_must_be_for_the_signing_key() {
    let (ca, a, b) = (ed25519(), ed25519(), ed25519());
    let cert_b = user_cert(&ca, &b, &["ops"]);
    let sig = a.sign(NAMESPACE, HASH, &T).expect("signs");
    assert_eq!(
        Proof::from_sshsig(Some(cert_b.clone()), sig),
        Err(ProofError::CertKeyMismatch { index: 0 })
    );
    // Spliced on the wire: a's signature behind b's certificate.
    let good = encode(&[prove(&a, None, &T)]).expect("encodes");
    let cert = cert_b.to_bytes().expect("encodes");
    let mut spliced = vec![1, 1];
    spliced.extend_from_slice(&(cert.len() as u16).to_be_bytes());
    spliced.extend_from_slice(&cert);
    spliced.extend_from_slice(&good[4..]);
    assert_eq!(
        decode(&spliced),
        Err(ProofError::CertKeyMismatch { index: 0 })
    );
}

#[test]
fn malformed_input_is_an_error() {
    let ca = ed25519();
    let a = ed25519();
    let good = encode(&[
        prove(&a, None, &T),
        prove(&a, Some(user_cert(&ca, &a, &["x"])), &T),
    ])
    .expect("encodes");
    let sig_len = u16::from_be_bytes([good[4], good[5]]) as usize;
    let mut trailing = good.clone();
    trailing.push(0);
    let mut bad_version = good.clone();
    bad_version[0] = 2;
    let mut zero = good.clone();
    zero[1] = 0;
    let mut nine = good.clone();
    nine[1] = 9;
    let mut flipped_sig = good.clone();
    flipped_sig[6] ^= 0xff; // the SSHSIG magic
    let mut huge_sig = good.clone();
    huge_sig[4..6].copy_from_slice(&u16::MAX.to_be_bytes());
    let mut garbage_cert = vec![1, 1, 0, 3, 1, 2, 3];
    garbage_cert.extend_from_slice(&good[4..6 + sig_len]);
    let empty_sig = vec![1, 1, 0, 0, 0, 0];
    let cases: Vec<(&str, Vec<u8>, ProofError)> = vec![
        ("empty", vec![], ProofError::Truncated),
        ("version only", vec![1], ProofError::Truncated),
        ("bad version", bad_version, ProofError::Version(2)),
        ("zero proofs", zero, ProofError::Empty),
        ("too many", nine, ProofError::TooMany),
        ("trailing byte", trailing, ProofError::Trailing),
        (
            "signature cut short",
            good[..good.len() - 1].to_vec(),
            ProofError::Truncated,
        ),
        (
            "magic flipped",
            flipped_sig,
            ProofError::Malformed {
                index: 0,
                what: "signature",
            },
        ),
        (
            "signature longer than allowed",
            huge_sig,
            ProofError::TooLong {
                index: 0,
                what: "signature",
                len: u16::MAX as usize,
            },
        ),
        (
            "garbage certificate",
            garbage_cert,
            ProofError::Malformed {
                index: 0,
                what: "certificate",
            },
        ),
        (
            "empty signature",
            empty_sig,
            ProofError::Malformed {
                index: 0,
                what: "signature",
            },
        ),
    ];
    for (what, bytes, want) in cases {
        assert_eq!(decode(&bytes), Err(want), "{what}");
    }
}

#[test]
fn every_truncation_is_an_error_and_no_flipped_byte_panics() {
    let ca = ed25519();
    let a = ecdsa(EcdsaCurve::NistP256);
    let good = encode(&[prove(&a, Some(user_cert(&ca, &a, &["x"])), &T)]).expect("encodes");
    for n in 0..good.len() {
        assert!(decode(&good[..n]).is_err(), "cut at {n}");
    }
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x55;
        // A flip can still decode. A proof whose signature changed must
        // not verify; one that decodes to the very same proof (ssh-key
        // reads a few fields leniently) is the same proof.
        let original = decode(&good).expect("decodes");
        if let Ok(proofs) = decode(&bad) {
            assert_eq!(proofs.len(), 1);
            let changed = proofs[0].sig != original[0].sig;
            assert!(
                !changed || !proofs[0].verifies(&T),
                "flip at {i} still verifies"
            );
        }
    }
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
        let _ = decode(&bytes);
        let mut framed = vec![1, 1];
        framed.extend_from_slice(&bytes);
        let _ = decode(&framed);
    }
}

/// What one proof costs in an AUTH (figures for the handshake's size
/// limit): a certificate adds to its key's proof, and one proof of any
/// kind fits 1,200 bytes.
#[test]
fn one_proof_of_each_kind_fits_1200_bytes() {
    let ca = ed25519();
    for (name, key) in [
        ("ed25519", ed25519()),
        ("ecdsa-p256", ecdsa(EcdsaCurve::NistP256)),
        ("ecdsa-p521", ecdsa(EcdsaCurve::NistP521)),
        ("rsa-2048", rsa()),
    ] {
        let plain = encode(&[prove(&key, None, &T)]).expect("encodes").len();
        let cert = encode(&[prove(&key, Some(user_cert(&ca, &key, &["ops"])), &T)])
            .expect("encodes")
            .len();
        println!("{name}: plain {plain} bytes, with an ed25519 CA's certificate {cert} bytes");
        assert!(
            plain < cert && cert <= 1200,
            "{name}: {plain} and {cert} bytes"
        );
    }
}
