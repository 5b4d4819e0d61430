//! The two files an agent reads, parsed without I/O: OpenSSH's
//! `authorized_keys` (plain keys and `cert-authority` lines) and the
//! plain-text form of OpenSSH's `RevokedKeys` (one public key a line).
//!
//! The keys themselves are parsed by `ssh-key`; this part only splits a
//! line into its options and its key, and refuses any option it does not
//! know, so a line never means less than its author thinks (a
//! `from="10.0.0.0/8"` that were silently ignored would widen access).

use ssh_key::public::KeyData;
use ssh_key::{Certificate, PublicKey};

/// Longest principal list or option we read from a line: far above any
/// real list, small enough that a broken file cannot make us hold much.
const MAX_OPTIONS_LEN: usize = 8 * 1024;

/// Why a file did not parse. Every variant names the 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("line {line}: unknown option '{option}' (only cert-authority and principals=\"…\" are understood)")]
    UnknownOption { line: usize, option: String },
    #[error("line {line}: principals= is only allowed with cert-authority")]
    PrincipalsWithoutAuthority { line: usize },
    #[error("line {line}: {what}")]
    BadOptions { line: usize, what: &'static str },
    #[error("line {line}: not a public key ({reason})")]
    BadKey { line: usize, reason: String },
}

/// One usable line of `authorized_keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A key that may open sessions itself.
    Key { key: KeyData, line: usize },
    /// A user CA: certificates it signed may open sessions. `principals`
    /// is the line's `principals="…"` list, `None` when it names none
    /// (then the certificate must name the node id).
    Authority {
        ca: KeyData,
        principals: Option<Vec<String>>,
        line: usize,
    },
}

/// A parsed `authorized_keys` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizedKeys {
    pub entries: Vec<Entry>,
}

/// A parsed revoked-keys file: keys refused whatever else says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevokedKeys {
    pub keys: Vec<KeyData>,
}

impl RevokedKeys {
    pub fn contains(&self, key: &KeyData) -> bool {
        self.keys.iter().any(|k| k == key)
    }
}

impl AuthorizedKeys {
    /// Whether `key` is listed as a plain key.
    pub fn lists_key(&self, key: &KeyData) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e, Entry::Key { key: k, .. } if k == key))
    }

    /// The `cert-authority` lines for `ca`, as their principal lists.
    pub fn authorities<'a>(
        &'a self,
        ca: &'a KeyData,
    ) -> impl Iterator<Item = Option<&'a [String]>> + 'a {
        self.entries.iter().filter_map(move |e| match e {
            Entry::Authority {
                ca: c, principals, ..
            } if c == ca => Some(principals.as_deref()),
            _ => None,
        })
    }
}

/// The lines that carry something: 1-based number and text without the
/// surrounding white space; blank lines and `#` comments are left out.
fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// Parse an `authorized_keys` file.
pub fn parse_authorized_keys(text: &str) -> Result<AuthorizedKeys, ParseError> {
    let mut entries = Vec::new();
    for (line, content) in content_lines(text) {
        entries.push(parse_line(line, content)?);
    }
    Ok(AuthorizedKeys { entries })
}

/// Parse a revoked-keys file: one public key a line. A certificate line
/// revokes the certificate's key.
pub fn parse_revoked_keys(text: &str) -> Result<RevokedKeys, ParseError> {
    let mut keys = Vec::new();
    for (line, content) in content_lines(text) {
        let key = match Certificate::from_openssh(content) {
            Ok(cert) => cert.public_key().clone(),
            Err(_) => parse_key(line, content)?,
        };
        keys.push(key);
    }
    Ok(RevokedKeys { keys })
}

fn parse_line(line: usize, content: &str) -> Result<Entry, ParseError> {
    // A line is a key, or options then a key (as sshd reads it: first try
    // the whole line as a key).
    let key_error = match parse_key(line, content) {
        Ok(key) => return Ok(Entry::Key { key, line }),
        Err(e) => e,
    };
    // One word is a broken key, not options without one.
    if !content.contains(char::is_whitespace) {
        return Err(key_error);
    }
    let (options, rest) = split_options(line, content)?;
    let mut authority = false;
    let mut principals = None;
    for option in options {
        let (name, value) = match option.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (option, None),
        };
        match (name.to_ascii_lowercase().as_str(), value) {
            ("cert-authority", None) => authority = true,
            ("principals", Some(v)) => principals = Some(parse_principals(line, v)?),
            _ => {
                return Err(ParseError::UnknownOption {
                    line,
                    option: option.to_string(),
                })
            }
        }
    }
    // Options first: an option we do not know says more than the key.
    let key = parse_key(line, rest.trim_start())?;
    match (authority, principals) {
        (true, principals) => Ok(Entry::Authority {
            ca: key,
            principals,
            line,
        }),
        (false, Some(_)) => Err(ParseError::PrincipalsWithoutAuthority { line }),
        (false, None) => Ok(Entry::Key { key, line }),
    }
}

/// `"ops,dba"` into its names; quotes required, as sshd does.
fn parse_principals(line: usize, value: &str) -> Result<Vec<String>, ParseError> {
    let inner = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .ok_or(ParseError::BadOptions {
            line,
            what: "principals= needs a quoted list",
        })?;
    let names: Vec<String> = inner
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect();
    if names.is_empty() {
        return Err(ParseError::BadOptions {
            line,
            what: "principals= names no principal",
        });
    }
    Ok(names)
}

/// Split `opt1,opt2="a,b" key…` into the options and what follows them:
/// commas and white space inside double quotes do not count.
fn split_options(line: usize, content: &str) -> Result<(Vec<&str>, &str), ParseError> {
    let mut options = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in content.char_indices() {
        if i > MAX_OPTIONS_LEN {
            break;
        }
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                options.push(&content[start..i]);
                start = i + 1;
            }
            c if c.is_whitespace() && !quoted => {
                options.push(&content[start..i]);
                if options.iter().any(|o| o.is_empty()) {
                    return Err(ParseError::BadOptions {
                        line,
                        what: "empty option",
                    });
                }
                return Ok((options, &content[i..]));
            }
            _ => {}
        }
    }
    Err(ParseError::BadOptions {
        line,
        what: if quoted {
            "unterminated quote in options"
        } else {
            "no public key after the options"
        },
    })
}

/// One public key in OpenSSH's one-line form (`type base64 [comment]`).
fn parse_key(line: usize, text: &str) -> Result<KeyData, ParseError> {
    PublicKey::from_openssh(text)
        .map(|key| key.key_data().clone())
        .map_err(|e| ParseError::BadKey {
            line,
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests;
