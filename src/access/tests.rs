use super::testkeys::{at, cert_of, ecdsa, ed25519, every_kind, line, prove, rsa, user_cert, NOW};
use super::*;
use ssh_key::{EcdsaCurve, PrivateKey};

const NODE: &str = "prod-db";
const T: [u8; 32] = [1; 32];

fn access(authorized: &str, revoked: &str) -> Access {
    Access::parse(authorized, revoked).expect("test lists parse")
}

fn ca_line(ca: &PrivateKey, principals: Option<&str>) -> String {
    match principals {
        Some(p) => format!("cert-authority,principals=\"{p}\" {}", line(ca)),
        None => format!("cert-authority {}", line(ca)),
    }
}

fn check(a: &Access, proofs: &[Proof]) -> Result<Identity, Denial> {
    a.check(proofs, NODE, &T, at(NOW))
}

#[test]
fn denial_texts_are_what_the_user_reads() {
    for (d, text) in [
        (
            Denial::NoAuthorizedKey { tried: 2 },
            "no authorized key (tried 2)",
        ),
        (Denial::Revoked, "access revoked"),
        (Denial::Expired, "certificate expired"),
        (Denial::NoPrincipal, "certificate has no allowed principal"),
        (Denial::NotYetValid, "certificate not yet valid"),
    ] {
        assert_eq!(d.to_string(), text);
    }
}

#[test]
fn a_listed_key_of_each_kind_opens_and_an_unlisted_one_does_not() {
    for key in every_kind() {
        let a = access(&line(&key), "");
        let id = check(&a, &[prove(&key, None, &T)]).expect("listed key opens");
        assert_eq!(id.fingerprint, fingerprint(key.public_key().key_data()));
        assert!(id.fingerprint.starts_with("SHA256:"));
        assert_eq!(id.certificate, None);

        let other = ed25519();
        assert_eq!(
            check(&a, &[prove(&other, None, &T)]),
            Err(Denial::NoAuthorizedKey { tried: 1 })
        );
    }
}

#[test]
fn no_proof_is_no_authorized_key() {
    let key = ed25519();
    assert_eq!(
        check(&access(&line(&key), ""), &[]),
        Err(Denial::NoAuthorizedKey { tried: 0 })
    );
}

#[test]
fn a_signature_over_another_transcript_is_refused() {
    // A proof captured from one session and replayed into another: the
    // transcripts differ (other session id, other shares).
    let key = ed25519();
    let a = access(&line(&key), "");
    let captured = prove(&key, None, &[9; 32]);
    assert_eq!(
        check(&a, std::slice::from_ref(&captured)),
        Err(Denial::NoAuthorizedKey { tried: 1 })
    );
    // Even through the wire encoding, and even for a certificate.
    let ca = ed25519();
    let a = access(&ca_line(&ca, None), "");
    let cert = prove(&key, Some(user_cert(&ca, &key, &[NODE])), &[9; 32]);
    let replayed = decode(&encode(&[captured, cert]).expect("encodes")).expect("decodes");
    assert_eq!(
        check(&a, &replayed),
        Err(Denial::NoAuthorizedKey { tried: 2 })
    );
    // The same proofs in their own session open.
    assert!(a.check(&replayed, NODE, &[9; 32], at(NOW)).is_ok());
}

#[test]
fn certificates() {
    let ca = ed25519();
    let user = ecdsa(EcdsaCurve::NistP256);
    let window = (NOW - 60, NOW + 60);
    let user_type = ssh_key::certificate::CertType::User;
    // (authorized_keys line's principals, certificate principals, type,
    // window, expected)
    type Case<'a> = (
        Option<&'a str>,
        Vec<&'a str>,
        ssh_key::certificate::CertType,
        (u64, u64),
        Result<&'a str, Denial>,
    );
    let cases: Vec<Case> = vec![
        (None, vec![NODE], user_type, window, Ok(NODE)),
        (None, vec!["ops", NODE], user_type, window, Ok(NODE)),
        (
            None,
            vec!["ops"],
            user_type,
            window,
            Err(Denial::NoPrincipal),
        ),
        (None, vec![], user_type, window, Err(Denial::NoPrincipal)),
        (Some("ops,dba"), vec!["dba"], user_type, window, Ok("dba")),
        (
            Some("ops,dba"),
            vec!["web", "ops"],
            user_type,
            window,
            Ok("ops"),
        ),
        // With principals= on the line the node id is no longer enough.
        (
            Some("ops"),
            vec![NODE],
            user_type,
            window,
            Err(Denial::NoPrincipal),
        ),
        (
            None,
            vec![NODE],
            user_type,
            (NOW - 120, NOW - 60),
            Err(Denial::Expired),
        ),
        // valid before is exclusive, valid after inclusive.
        (
            None,
            vec![NODE],
            user_type,
            (NOW - 120, NOW),
            Err(Denial::Expired),
        ),
        (None, vec![NODE], user_type, (NOW, NOW + 1), Ok(NODE)),
        (
            None,
            vec![NODE],
            user_type,
            (NOW + 1, NOW + 60),
            Err(Denial::NotYetValid),
        ),
        // A host certificate is not a user's.
        (
            None,
            vec![NODE],
            ssh_key::certificate::CertType::Host,
            window,
            Err(Denial::NoAuthorizedKey { tried: 1 }),
        ),
    ];
    for (i, (line_principals, cert_principals, cert_type, valid, want)) in
        cases.into_iter().enumerate()
    {
        let a = access(&ca_line(&ca, line_principals), "");
        let cert = cert_of(&ca, &user, cert_type, &cert_principals, valid);
        let got = check(&a, &[prove(&user, Some(cert), &T)]);
        match (got, want) {
            (Ok(id), Ok(principal)) => {
                let c = id.certificate.expect("a certificate identity");
                assert_eq!(c.principal, principal, "case {i}");
                assert_eq!(c.key_id, "alice@laptop", "case {i}");
                assert_eq!(c.ca, fingerprint(ca.public_key().key_data()), "case {i}");
                assert_eq!(
                    id.fingerprint,
                    fingerprint(user.public_key().key_data()),
                    "case {i}"
                );
            }
            (got, want) => assert_eq!(got.map(|_| ()), want.map(|_| ()), "case {i}"),
        }
    }
}

#[test]
fn a_certificate_from_an_unlisted_ca_or_forged_is_no_authorized_key() {
    let (ca, other_ca, user) = (ed25519(), ed25519(), ed25519());
    let a = access(&ca_line(&ca, None), "");
    let cert = user_cert(&other_ca, &user, &[NODE]);
    assert_eq!(
        check(&a, &[prove(&user, Some(cert), &T)]),
        Err(Denial::NoAuthorizedKey { tried: 1 })
    );
    // The user's key itself listed as a plain key does not make a
    // certificate of another CA good, but the plain key opens.
    let a = access(&format!("{}\n{}", ca_line(&ca, None), line(&user)), "");
    let cert = user_cert(&other_ca, &user, &[NODE]);
    assert!(check(&a, &[prove(&user, Some(cert), &T)]).is_err());
    assert!(check(&a, &[prove(&user, None, &T)]).is_ok());
    // A CA's key is not a user key.
    let a = access(&ca_line(&ca, None), "");
    assert!(check(&a, &[prove(&ca, None, &T)]).is_err());
}

#[test]
fn a_certificate_with_critical_options_is_refused() {
    let (ca, user) = (ed25519(), ed25519());
    let mut b = ssh_key::certificate::Builder::new_with_random_nonce(
        &mut ssh_key::rand_core::OsRng,
        user.public_key().key_data().clone(),
        NOW - 60,
        NOW + 60,
    )
    .expect("builder");
    b.cert_type(ssh_key::certificate::CertType::User)
        .expect("type");
    b.valid_principal(NODE).expect("principal");
    b.critical_option("force-command", "/bin/true")
        .expect("option");
    let cert = b.sign(&ca).expect("signs");
    let a = access(&ca_line(&ca, None), "");
    assert_eq!(
        check(&a, &[prove(&user, Some(cert), &T)]),
        Err(Denial::NoAuthorizedKey { tried: 1 })
    );
}

#[test]
fn revocation_wins_over_everything() {
    let (ca, user, plain) = (ed25519(), ed25519(), rsa());
    let authorized = format!("{}\n{}\n", ca_line(&ca, None), line(&plain));
    let cert = user_cert(&ca, &user, &[NODE]);
    let cert_proof = prove(&user, Some(cert), &T);
    let plain_proof = prove(&plain, None, &T);
    assert!(check(&access(&authorized, ""), std::slice::from_ref(&cert_proof)).is_ok());
    assert!(check(&access(&authorized, ""), std::slice::from_ref(&plain_proof)).is_ok());

    // A plain key.
    let a = access(&authorized, &line(&plain));
    assert_eq!(
        check(&a, std::slice::from_ref(&plain_proof)),
        Err(Denial::Revoked)
    );
    assert!(check(&a, std::slice::from_ref(&cert_proof)).is_ok());
    // A certificate's key.
    let a = access(&authorized, &line(&user));
    assert_eq!(
        check(&a, std::slice::from_ref(&cert_proof)),
        Err(Denial::Revoked)
    );
    // The CA: every certificate it signed.
    let a = access(&authorized, &line(&ca));
    assert_eq!(
        check(&a, std::slice::from_ref(&cert_proof)),
        Err(Denial::Revoked)
    );
    assert!(check(&a, std::slice::from_ref(&plain_proof)).is_ok());
    // A revoked key whose certificate comes from a CA we do not list.
    let a = access(&line(&plain), &line(&user));
    assert_eq!(check(&a, &[cert_proof]), Err(Denial::Revoked));
}

#[test]
fn the_most_telling_reason_wins() {
    let (ca, user, unlisted) = (ed25519(), ed25519(), ed25519());
    let a = access(&ca_line(&ca, Some("ops")), "");
    let plain = prove(&user, None, &T);
    let stranger = prove(&unlisted, None, &T);
    let wrong_principal = prove(&user, Some(user_cert(&ca, &user, &["web"])), &T);
    let expired = prove(
        &user,
        Some(cert_of(
            &ca,
            &user,
            ssh_key::certificate::CertType::User,
            &["ops"],
            (NOW - 7200, NOW - 3600),
        )),
        &T,
    );
    // ssh-agent holds a key and its certificate: in either order, the
    // certificate's reason.
    assert_eq!(
        check(&a, &[plain.clone(), wrong_principal.clone()]),
        Err(Denial::NoPrincipal)
    );
    assert_eq!(
        check(&a, &[wrong_principal.clone(), plain.clone()]),
        Err(Denial::NoPrincipal)
    );
    assert_eq!(
        check(&a, &[stranger.clone(), expired.clone(), plain.clone()]),
        Err(Denial::Expired)
    );
    assert_eq!(
        check(&a, &[wrong_principal.clone(), expired.clone()]),
        Err(Denial::Expired)
    );
    assert_eq!(
        check(&a, &[expired.clone(), wrong_principal.clone()]),
        Err(Denial::Expired)
    );
    let revoked = access(&ca_line(&ca, Some("ops")), &line(&user));
    assert_eq!(
        check(&revoked, &[stranger.clone(), expired, wrong_principal]),
        Err(Denial::Revoked)
    );
    assert_eq!(
        check(&a, &[stranger, plain]),
        Err(Denial::NoAuthorizedKey { tried: 2 })
    );
}

#[test]
fn one_good_proof_among_failing_ones_opens() {
    let (ca, user, listed) = (ed25519(), ed25519(), ecdsa(EcdsaCurve::NistP384));
    let a = access(
        &format!("{}\n{}", ca_line(&ca, Some("ops")), line(&listed)),
        "",
    );
    let wrong_principal = prove(&user, Some(user_cert(&ca, &user, &["web"])), &T);
    let id = check(&a, &[wrong_principal, prove(&listed, None, &T)]).expect("opens");
    assert_eq!(id.fingerprint, fingerprint(listed.public_key().key_data()));
}

#[test]
fn still_authorized_after_the_files_change() {
    let (ca, a_key, b_key) = (ed25519(), ed25519(), ed25519());
    let before = access(&format!("{}\n{}", line(&a_key), ca_line(&ca, None)), "");
    let a = check(&before, &[prove(&a_key, None, &T)]).expect("A opens");
    let b = check(
        &before,
        &[prove(&b_key, Some(user_cert(&ca, &b_key, &[NODE])), &T)],
    )
    .expect("B opens");
    assert_eq!(before.still_authorized(&a, NODE), Ok(()));
    assert_eq!(before.still_authorized(&b, NODE), Ok(()));

    // A removed from the file; B's CA stays.
    let removed = access(&ca_line(&ca, None), "");
    // Whatever rule now fails, a live session is told "access revoked".
    assert_eq!(removed.still_authorized(&a, NODE), Err(Denial::Revoked));
    assert_eq!(removed.still_authorized(&b, NODE), Ok(()));
    // B's key revoked; then B's CA revoked.
    let revoked = access(
        &format!("{}\n{}", line(&a_key), ca_line(&ca, None)),
        &line(&b_key),
    );
    assert_eq!(revoked.still_authorized(&a, NODE), Ok(()));
    assert_eq!(revoked.still_authorized(&b, NODE), Err(Denial::Revoked));
    let ca_revoked = access(
        &format!("{}\n{}", line(&a_key), ca_line(&ca, None)),
        &line(&ca),
    );
    assert_eq!(ca_revoked.still_authorized(&b, NODE), Err(Denial::Revoked));
    // The CA line now names principals B's certificate lacks.
    let narrowed = access(&ca_line(&ca, Some("ops")), "");
    assert_eq!(narrowed.still_authorized(&b, NODE), Err(Denial::Revoked));
    // Checked against the node it runs on: the line without principals
    // wants the node id.
    assert_eq!(
        before.still_authorized(&b, "other-node"),
        Err(Denial::Revoked)
    );
}

#[test]
fn a_ca_on_two_lines_matches_either() {
    let (ca, user) = (ed25519(), ed25519());
    let a = access(
        &format!("{}\n{}", ca_line(&ca, Some("ops")), ca_line(&ca, None)),
        "",
    );
    for (principals, want) in [(vec!["ops"], "ops"), (vec![NODE], NODE)] {
        let cert = user_cert(&ca, &user, &principals);
        let id = check(&a, &[prove(&user, Some(cert), &T)]).expect("opens");
        assert_eq!(id.certificate.expect("certificate").principal, want);
    }
    let cert = user_cert(&ca, &user, &["web"]);
    assert_eq!(
        check(&a, &[prove(&user, Some(cert), &T)]),
        Err(Denial::NoPrincipal)
    );
}
