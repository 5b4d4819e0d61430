use super::*;

/// The access keys belong to one binary each: the agent's lists, the
/// proxy's identity.
#[test]
fn access_keys_are_for_their_binary_only() {
    for (text, role, want) in [
        (
            "authorized-keys = \"/etc/k\"",
            Role::Proxy,
            "key 'authorized-keys' is only valid in the agent's config file",
        ),
        (
            "revoked-keys = \"/etc/r\"",
            Role::Proxy,
            "key 'revoked-keys' is only valid in the agent's config file",
        ),
        (
            "identity = \"/home/a/.ssh/id_ed25519\"",
            Role::Agent,
            "key 'identity' is only valid in mqtt-proxy's config file",
        ),
    ] {
        let err = FileConfig::parse(text, role).unwrap_err();
        assert_eq!(format!("{err:#}"), want);
    }
    let agent = FileConfig::parse("authorized-keys = \"/etc/k\"", Role::Agent).expect("parses");
    assert_eq!(agent.authorized_keys, Some(PathBuf::from("/etc/k")));
    let proxy = FileConfig::parse("identity = \"/k\"", Role::Proxy).expect("parses");
    assert_eq!(proxy.identity, Some(PathBuf::from("/k")));
}
