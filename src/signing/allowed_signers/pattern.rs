//! ssh's patterns (`match.c`): the principals of a line and its
//! `namespaces=` are comma-separated lists of `*`/`?` wildcards, where a
//! leading `!` negates. Matching is on bytes and case-sensitive, as
//! ssh-keygen calls it for allowed signers.

/// ssh's pattern buffer: a sub-pattern this long or longer never matches.
pub(super) const MAX_PATTERN_BYTES: usize = 1023;

/// ssh's `match_pattern`: `*` matches any run of bytes, `?` any one byte,
/// anything else itself.
pub(super) fn match_pattern(s: &[u8], pattern: &[u8]) -> bool {
    let (mut si, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < pattern.len()
            && (pattern[pi] == b'?' || pattern[pi] == s[si])
            && pattern[pi] != b'*'
        {
            si += 1;
            pi += 1;
        } else if pi < pattern.len() && pattern[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((star_pi, star_si)) = star {
            pi = star_pi + 1;
            si = star_si + 1;
            star = Some((star_pi, star_si + 1));
        } else {
            return false;
        }
    }
    pattern[pi..].iter().all(|&b| b == b'*')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ListMatch {
    Positive,
    Negative,
    None,
}

/// ssh's `match_pattern_list` (case-sensitive): comma-separated patterns, a
/// leading `!` negates, a negated match wins.
pub(super) fn match_pattern_list(s: &str, list: &str) -> ListMatch {
    let mut positive = false;
    for sub in list.split(',') {
        let (negated, pattern) = match sub.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, sub),
        };
        if pattern.len() >= MAX_PATTERN_BYTES {
            return ListMatch::None;
        }
        if match_pattern(s.as_bytes(), pattern.as_bytes()) {
            if negated {
                return ListMatch::Negative;
            }
            positive = true;
        }
    }
    if positive {
        ListMatch::Positive
    } else {
        ListMatch::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn patterns_match_as_ssh_does() {
        assert!(match_pattern(b"alice@example.com", b"*@example.com"));
        assert!(match_pattern(b"a", b"?"));
        assert!(!match_pattern(b"ab", b"?"));
        assert!(match_pattern(b"", b"*"));
        assert!(match_pattern(b"", b""));
        assert!(!match_pattern(b"x", b""));
        assert!(match_pattern(b"abcabd", b"*ab?"));
        assert!(!match_pattern(b"Alice", b"alice"));
        assert_eq!(match_pattern_list("bob", "alice,bob"), ListMatch::Positive);
        assert_eq!(match_pattern_list("bob", "*,!bob"), ListMatch::Negative);
        assert_eq!(match_pattern_list("carol", "*,!bob"), ListMatch::Positive);
        assert_eq!(match_pattern_list("carol", "alice,bob"), ListMatch::None);
    }
}
