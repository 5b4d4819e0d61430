//! Which nodes a listing prints: `--list PATTERN` and `--online`.

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
    pub fn keeps(&self, n: &Node) -> bool {
        (!self.online || n.is_online())
            && self.pattern.as_deref().map_or(true, |p| glob(p, &n.node))
    }
}

/// Shell-style match of `pattern` against all of `text`: `*` any run, `?`
/// any one character, `[abc]`, `[a-z]`, `[!a-z]` (or `[^…]`) one character
/// of (not of) a set. An unclosed `[` matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative with one backtrack point (the last `*`): linear in practice,
    // never exponential.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            Some('?') => Some(1),
            Some('[') => match class(&p[pi..], t[ti]) {
                Some((true, len)) => Some(len),
                Some((false, _)) => None,
                None => (t[ti] == '[').then_some(1),
            },
            Some(c) => (*c == t[ti]).then_some(1),
            None => None,
        };
        match (step, star) {
            (Some(len), _) => {
                pi += len;
                ti += 1;
            }
            (None, Some((sp, st))) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A `[...]` class at the start of `p` against `c`: whether it matches and
/// the class's length in pattern characters; `None` if it is not closed.
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let lo = *p.get(i)?;
        if lo == ']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|hi| *hi != ']') {
            hit |= (lo..=p[i + 2]).contains(&c);
            i += 3;
        } else {
            hit |= lo == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests;
