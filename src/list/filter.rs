//! Which nodes a listing prints: `--list PATTERN` and `--online`.

use anyhow::{anyhow, Result};
use globset::{GlobBuilder, GlobMatcher};

use super::pass::Node;

/// Which nodes to print.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// A shell glob on the node id (`*`, `?`, `[a-z]`, `[!0-9]`).
    pub pattern: Option<String>,
    /// Only nodes whose agent is online.
    pub online: bool,
}

impl Filter {
    /// The filter ready to apply, its pattern compiled once; an invalid
    /// pattern is an error that names it.
    pub fn compile(&self) -> Result<Selection> {
        Ok(Selection {
            glob: self.pattern.as_deref().map(compile_glob).transpose()?,
            online: self.online,
        })
    }
}

/// A [`Filter`] ready to apply.
#[derive(Debug, Clone)]
pub struct Selection {
    glob: Option<GlobMatcher>,
    online: bool,
}

impl Selection {
    pub fn keeps(&self, n: &Node) -> bool {
        (!self.online || n.is_online()) && self.glob.as_ref().is_none_or(|g| g.is_match(&n.node))
    }
}

/// `pattern` as a shell-style match of a whole node id: `*` any run, `?`
/// any one character, `[abc]`, `[a-z]`, `[!a-z]` (or `[^…]`) one character
/// of (not of) a set, `{a,b}` either. Set to read patterns as the
/// hand-written matcher this replaced did: an unclosed `[` matches itself
/// and `\` is a plain character (node ids have neither `\` nor `/`, so
/// whether `*` crosses a `/` makes no difference).
fn compile_glob(pattern: &str) -> Result<GlobMatcher> {
    let glob = GlobBuilder::new(pattern)
        .allow_unclosed_class(true)
        .backslash_escape(false)
        .build()
        .map_err(|e| anyhow!("invalid pattern '{pattern}': {}", e.kind()))?;
    Ok(glob.compile_matcher())
}

#[cfg(test)]
mod tests;
