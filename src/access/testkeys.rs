//! Keys, certificates and proofs made in-process for the tests of
//! `access` and its parts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ssh_key::certificate::{Builder, CertType};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, Certificate, EcdsaCurve, PrivateKey};

use super::proof::Proof;

/// A fixed time for the tests: 2027-01-15.
pub const NOW: u64 = 1_800_000_000;

pub fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// A test-only RSA-2048 key made by `ssh-keygen -t rsa -b 2048 -N ''`:
/// generating one in-process takes long and varies.
const RSA_KEY: &str = "\
-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAABFwAAAAdzc2gtcn
NhAAAAAwEAAQAAAQEAyBfP+JGfSqEZ2kc4wqkRFTHV5ffutYpkGtx7WseHmZ1EygrgkNe1
SoocQMAbD2vpbV21XN2KnJR9xRQBnW37SQ9VaElHNBa8iRzV7vXHbCpfIsYhm3GzgXnOhB
mix1U6He/tECsw7wzidzRs08TjNOw4p2DK1us1Kv8Ts2sn2xrTFkGQD3W1OstjzJyupWc8
gRjLF+DUSsKvpUk1p9cMGiZILM+uakskrAIR7hvdrNu/uew/dmn/Rx6+SQfNEBn2sv/AMK
cRo1nZKbcqtJD6nFRRggHwsAC9brE7Mj2kGOYRWm67VGadrmmnnRhr9s/yZDhS0Acrw/F1
8hzrZ5pwwQAAA8A+mOUtPpjlLQAAAAdzc2gtcnNhAAABAQDIF8/4kZ9KoRnaRzjCqREVMd
Xl9+61imQa3Htax4eZnUTKCuCQ17VKihxAwBsPa+ltXbVc3YqclH3FFAGdbftJD1VoSUc0
FryJHNXu9cdsKl8ixiGbcbOBec6EGaLHVTod7+0QKzDvDOJ3NGzTxOM07DinYMrW6zUq/x
OzayfbGtMWQZAPdbU6y2PMnK6lZzyBGMsX4NRKwq+lSTWn1wwaJkgsz65qSySsAhHuG92s
27+57D92af9HHr5JB80QGfay/8AwpxGjWdkptyq0kPqcVFGCAfCwAL1usTsyPaQY5hFabr
tUZp2uaaedGGv2z/JkOFLQByvD8XXyHOtnmnDBAAAAAwEAAQAAAQAFiP6ZX8ZkOy4G1zXp
USHaSC5UifH0Gs2jflZJe+fq8oI71FaTXSs8QlMvIZ1SBTRAMLGe3bhLFfK/ehrkFO34zr
w4KgBGrysUoCwFG+6SBf9LHAfjl97tSc5CIl8p1FhK6hdgzVARidXFMkmhJ1L5dKAp1aww
yzGFpKgh7Ei+R2xqGee16sYlz43ZXY4hnQU7HMPX1QhDjy0OGSNAehPnsaZk6cVK4bU4Mb
0tfOX4ug6u5fH5ri2zghenfmtvjk16YmPxkdrLf+5RSFpbwzTI5OrCR8TlriGNNtOs3qYS
JWXebltGNGwto3fNPYd4Zwh2awesjaUdaxQGVksfAYXRAAAAgBJQ8MwFwsytUWXBlwAVFq
4WLuv43I07uQh8okztr+btlEhbkI7foNZ68YjMV48gITsRlBtCxBMkyn89hYviFqWLOruS
/hjDNy096iV4U7DJ3Yq8rNnqarIPDODcRgiSSiXqKbGh0IioC1pMNU+oS822naRweAmmf2
Rr6R7FQzdkAAAAgQD6MkNVWSZ9rUIF7LTjt560kPaP4pp1fWi9+bO2p8WKF6wB7VtrLMXE
kxEF/x4CpJXF0c4hOvhSV+r62AS0KacVyHPlT74JTmRu82HGb8/IySaq4TAu7trD1hXzSx
SohIZj2WEUJqynqqZrH15YY4NfKSzQcMsYrLvbKMc2rxlrUQAAAIEAzLwFhzEyf6dZWe6j
ywLNQciLFYA4eWyoyIgIxxjNwPwtZGnGgSfmCP7DJ5iG11oiWgozedTe2rQMPyB6ayXnyN
uq4hOxp344l/WwgyHt2oSlvCJqzy9mmPhsjo7r60FHFD9sAOO5QPpy45JbsZrV6NFnwfBX
hkND6PBi+fwYcnEAAAAIdGVzdC1yc2EBAgM=
-----END OPENSSH PRIVATE KEY-----
";

pub fn ed25519() -> PrivateKey {
    PrivateKey::random(&mut OsRng, Algorithm::Ed25519).expect("ed25519 key")
}

pub fn ecdsa(curve: EcdsaCurve) -> PrivateKey {
    PrivateKey::random(&mut OsRng, Algorithm::Ecdsa { curve }).expect("ecdsa key")
}

pub fn rsa() -> PrivateKey {
    PrivateKey::from_openssh(RSA_KEY).expect("the test RSA key parses")
}

/// One key of every kind ssh-keygen makes (ECDSA on each curve).
pub fn every_kind() -> [PrivateKey; 5] {
    [
        ed25519(),
        ecdsa(EcdsaCurve::NistP256),
        ecdsa(EcdsaCurve::NistP384),
        ecdsa(EcdsaCurve::NistP521),
        rsa(),
    ]
}

/// The key's `authorized_keys` form, with a comment.
pub fn line(key: &PrivateKey) -> String {
    let mut public = key.public_key().clone();
    public.set_comment("user@example");
    public.to_openssh().expect("public key encodes")
}

/// A certificate of `subject`'s key by `ca`.
pub fn cert_of(
    ca: &PrivateKey,
    subject: &PrivateKey,
    cert_type: CertType,
    principals: &[&str],
    valid: (u64, u64),
) -> Certificate {
    let mut b = Builder::new_with_random_nonce(
        &mut OsRng,
        subject.public_key().key_data().clone(),
        valid.0,
        valid.1,
    )
    .expect("validity window");
    b.cert_type(cert_type).expect("type");
    b.key_id("alice@laptop").expect("key id");
    for p in principals {
        b.valid_principal(*p).expect("principal");
    }
    if principals.is_empty() {
        // ssh-key's word for "the list is empty" (which sshd refuses for
        // a user certificate).
        b.all_principals_valid().expect("no principals");
    }
    b.sign(ca).expect("CA signs")
}

/// A user certificate valid an hour around [`NOW`].
pub fn user_cert(ca: &PrivateKey, subject: &PrivateKey, principals: &[&str]) -> Certificate {
    cert_of(
        ca,
        subject,
        CertType::User,
        principals,
        (NOW - 3600, NOW + 3600),
    )
}

/// `key`'s proof for the opening with this transcript.
pub fn prove(key: &PrivateKey, cert: Option<Certificate>, transcript: &[u8; 32]) -> Proof {
    super::proof::sign_with_key(key, cert, transcript).expect("key signs")
}
