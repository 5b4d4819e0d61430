use super::*;
use crate::access::testkeys::{ecdsa, ed25519, line, rsa};
use ssh_key::EcdsaCurve;

#[test]
fn key_lines_comments_and_blank_lines() {
    let (a, b, c) = (ed25519(), ecdsa(EcdsaCurve::NistP256), rsa());
    let text = format!(
        "# team keys\n\n{}\n   \n  {}  \n{} with a comment # that has a hash\n# end\n",
        line(&a),
        line(&b),
        line(&c)
    );
    let parsed = parse_authorized_keys(&text).expect("parses");
    assert_eq!(
        parsed.entries,
        vec![
            Entry::Key {
                key: a.public_key().key_data().clone(),
                line: 3
            },
            Entry::Key {
                key: b.public_key().key_data().clone(),
                line: 5
            },
            Entry::Key {
                key: c.public_key().key_data().clone(),
                line: 6
            },
        ]
    );
}

#[test]
fn a_key_without_comment() {
    let a = ed25519();
    let bare = a.public_key().to_openssh().expect("encodes");
    let parsed = parse_authorized_keys(&bare).expect("parses");
    assert!(parsed.lists_key(a.public_key().key_data()));
}

#[test]
fn cert_authority_lines() {
    let ca = ed25519();
    let ca_key = ca.public_key().key_data().clone();
    let bare = ca.public_key().to_openssh().expect("encodes");
    let cases: Vec<(String, Option<Vec<&str>>)> = vec![
        (format!("cert-authority {}", line(&ca)), None),
        // Without a comment (ssh-key's own parser misreads this one).
        (format!("cert-authority {bare}"), None),
        (format!("CERT-AUTHORITY {bare}"), None),
        (
            format!("cert-authority,principals=\"ops,dba\" {}", line(&ca)),
            Some(vec!["ops", "dba"]),
        ),
        (
            format!("principals=\"ops\",cert-authority {bare}"),
            Some(vec!["ops"]),
        ),
        (
            format!("cert-authority,principals=\" ops , dba \" {bare}"),
            Some(vec!["ops", "dba"]),
        ),
    ];
    for (text, principals) in cases {
        let parsed = parse_authorized_keys(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(
            parsed.entries,
            vec![Entry::Authority {
                ca: ca_key.clone(),
                principals: principals.map(|p| p.into_iter().map(String::from).collect()),
                line: 1
            }],
            "{text}"
        );
        // A CA line does not list the CA's key as a plain key.
        assert!(!parsed.lists_key(&ca_key), "{text}");
        assert_eq!(parsed.authorities(&ca_key).count(), 1, "{text}");
    }
}

#[test]
fn bad_lines_name_their_line_number() {
    let k = line(&ed25519());
    let good = format!("# comment\n{k}\n\n");
    // Each bad form lands on line 4, behind a comment, a key and a blank.
    let cases: Vec<(String, ParseError)> = vec![
        (
            format!("no-pty {k}"),
            ParseError::UnknownOption {
                line: 4,
                option: "no-pty".into(),
            },
        ),
        (
            format!("from=\"10.0.0.0/8\" {k}"),
            ParseError::UnknownOption {
                line: 4,
                option: "from=\"10.0.0.0/8\"".into(),
            },
        ),
        (
            format!("cert-authority,command=\"/bin/sh -c x\" {k}"),
            ParseError::UnknownOption {
                line: 4,
                option: "command=\"/bin/sh -c x\"".into(),
            },
        ),
        (
            format!("restrict,cert-authority {k}"),
            ParseError::UnknownOption {
                line: 4,
                option: "restrict".into(),
            },
        ),
        (
            format!("principals=\"ops\" {k}"),
            ParseError::PrincipalsWithoutAuthority { line: 4 },
        ),
        (
            format!("cert-authority,principals=ops {k}"),
            ParseError::BadOptions {
                line: 4,
                what: "principals= needs a quoted list",
            },
        ),
        (
            format!("cert-authority,principals=\"\" {k}"),
            ParseError::BadOptions {
                line: 4,
                what: "principals= names no principal",
            },
        ),
        (
            format!("cert-authority,principals=\"ops {k}"),
            ParseError::BadOptions {
                line: 4,
                what: "unterminated quote in options",
            },
        ),
        (
            "cert-authority,principals=\"ops dba\"".to_string(),
            ParseError::BadOptions {
                line: 4,
                what: "no public key after the options",
            },
        ),
        (
            format!("cert-authority,,x {k}"),
            ParseError::BadOptions {
                line: 4,
                what: "empty option",
            },
        ),
    ];
    for (bad, want) in cases {
        let text = format!("{good}{bad}\n{k}\n");
        assert_eq!(parse_authorized_keys(&text), Err(want), "{bad}");
    }
    // Not a key at all: the error names the line, whatever ssh-key says.
    for bad in [
        "ssh-ed25519 AAAA-not-base64",
        "ssh-ed25519",
        "garbage",
        "cert-authority ssh-ed25519 AAAAbroken",
        "cert-authority",
    ] {
        let text = format!("{good}{bad}\n");
        match parse_authorized_keys(&text) {
            Err(ParseError::BadKey { line: 4, .. } | ParseError::UnknownOption { line: 4, .. }) => {
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn error_messages_read_well() {
    let k = line(&ed25519());
    let e = parse_authorized_keys(&format!("\n\nno-pty {k}")).expect_err("refused");
    assert_eq!(
        e.to_string(),
        "line 3: unknown option 'no-pty' (only cert-authority and principals=\"…\" are understood)"
    );
}

#[test]
fn revoked_keys_file() {
    let (a, b) = (ed25519(), rsa());
    let ca = ed25519();
    let cert = crate::access::testkeys::user_cert(&ca, &a, &["ops"]);
    let text = format!(
        "# revoked 2026-12-04\n\n{}\n{}\n",
        line(&b),
        cert.to_openssh().expect("encodes")
    );
    let revoked = parse_revoked_keys(&text).expect("parses");
    assert!(revoked.contains(b.public_key().key_data()));
    // A certificate line revokes the certificate's key, not its CA.
    assert!(revoked.contains(a.public_key().key_data()));
    assert!(!revoked.contains(ca.public_key().key_data()));
    assert_eq!(revoked.keys.len(), 2);

    let bad = format!("{}\nnot a key\n", line(&b));
    assert!(matches!(
        parse_revoked_keys(&bad),
        Err(ParseError::BadKey { line: 2, .. })
    ));
    // Options have no place in this file.
    let opt = format!("cert-authority {}\n", line(&b));
    assert!(matches!(
        parse_revoked_keys(&opt),
        Err(ParseError::BadKey { line: 1, .. })
    ));
    assert_eq!(
        parse_revoked_keys("\n# nothing\n"),
        Ok(RevokedKeys::default())
    );
}
