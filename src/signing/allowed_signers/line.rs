//! The syntax of one `allowed_signers` line, read as ssh-keygen reads it
//! (`sshsig.c`: `parse_principals_key_and_options`, `sshsigopt_parse`;
//! `misc.c`: `strdelimw`, `opt_dequote`, `parse_absolute_time`), and written
//! back in a canonical form that reads back the same.

use ssh_key::PublicKey;

use super::pattern::MAX_PATTERN_BYTES;
use super::Entry;
use crate::signing::keys::{self, KeyProblem};

/// What is wrong with one `allowed_signers` line.
#[derive(Debug, thiserror::Error)]
pub enum LineProblem {
    /// The line holds a NUL byte (ssh would silently cut the line there).
    #[error("the line contains a NUL byte")]
    Nul,
    /// A `"` opens a quoted principals list or option value that never ends.
    #[error("unterminated quote")]
    UnterminatedQuote,
    /// The principals field is not a plain or fully quoted list.
    #[error("invalid principals: {reason}")]
    BadPrincipals {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A principal or namespace pattern longer than ssh's limit (1022 bytes).
    #[error("a pattern is longer than ssh's limit of {} bytes", MAX_PATTERN_BYTES - 1)]
    PatternTooLong,
    /// Principals but no key.
    #[error("missing key")]
    MissingKey,
    /// The key does not parse.
    #[error("invalid key: {source}")]
    BadKey {
        /// ssh-key's reason.
        #[source]
        source: ssh_key::Error,
    },
    /// A key meshseal cannot verify signatures with.
    #[error("{problem}")]
    UnsupportedKey {
        /// Why.
        #[source]
        problem: KeyProblem,
    },
    /// An option ssh-keygen's allowed signers format does not have.
    #[error("unknown option {option:?}")]
    UnknownOption {
        /// The option, as written (shortened).
        option: String,
    },
    /// The same option given twice (ssh-keygen refuses this too).
    #[error("multiple {option:?} options")]
    DuplicateOption {
        /// The option's name.
        option: &'static str,
    },
    /// Options end with a comma.
    #[error("unexpected end of options after a comma")]
    TrailingComma,
    /// An option value does not start with `"`.
    #[error("the value of {option:?} must be quoted")]
    MissingStartQuote {
        /// The option's name.
        option: &'static str,
    },
    /// An option value with a backslash (meshseal could not write it back
    /// unambiguously).
    #[error("the value of {option:?} contains a backslash")]
    Backslash {
        /// The option's name.
        option: &'static str,
    },
    /// A `valid-after`/`valid-before` that is not a `YYYYMMDD[HHMM[SS]]Z` time.
    #[error("invalid {option:?} time {value:?}")]
    BadTime {
        /// The option's name.
        option: &'static str,
        /// The value, as written (shortened).
        value: String,
    },
    /// A `valid-after`/`valid-before` without a time zone.
    #[error("{option:?} time {value:?} has no time zone")]
    LocalTime {
        /// The option's name.
        option: &'static str,
        /// The value, as written (shortened).
        value: String,
    },
    /// `valid-before` is not after `valid-after`.
    #[error("\"valid-before\" time is not after \"valid-after\"")]
    TimeOrder,
}

impl LineProblem {
    /// What the user can do about it.
    pub(super) fn hint(&self) -> Option<String> {
        Some(match self {
            LineProblem::UnknownOption { .. } | LineProblem::TrailingComma => {
                "options are cert-authority, namespaces=\"...\", valid-after=\"...\" and valid-before=\"...\", separated by commas".to_string()
            }
            LineProblem::MissingStartQuote { .. } => {
                "write the value in double quotes, e.g. namespaces=\"meshseal\"".to_string()
            }
            LineProblem::LocalTime { value, .. } => format!(
                "append Z to give the time in UTC (\"{value}Z\"): without a zone each machine would read it in its own time zone"
            ),
            LineProblem::BadTime { .. } | LineProblem::TimeOrder => {
                "times are YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS followed by Z (UTC), after 1970".to_string()
            }
            LineProblem::UnsupportedKey { .. } => {
                "use an ssh-ed25519, sk-ssh-ed25519@openssh.com, ECDSA or RSA (2048 to 4096 bits) key".to_string()
            }
            LineProblem::BadKey { .. } | LineProblem::MissingKey => {
                "each line is: principals [options] key-type base64-key [comment]".to_string()
            }
            LineProblem::BadPrincipals { .. } | LineProblem::UnterminatedQuote => {
                "principals are a comma-separated list without spaces, or one list in double quotes".to_string()
            }
            LineProblem::Nul
            | LineProblem::PatternTooLong
            | LineProblem::DuplicateOption { .. }
            | LineProblem::Backslash { .. } => return None,
        })
    }
}

pub(super) fn needs_quotes(principals: &str) -> bool {
    principals.starts_with('#') || principals.contains([' ', '\t', '\r'])
}

/// A key in OpenSSH's one-line form, comment included.
/// A comment with a control character (a newline could smuggle in a line of
/// its own) is left out.
pub(super) fn openssh(key: &PublicKey) -> String {
    let mut key = key.clone();
    let comment = printable_comment(key.comment()).to_string();
    key.set_comment(comment);
    // Encoding a parsed, supported key cannot fail; fall back to the type.
    key.to_openssh()
        .unwrap_or_else(|_| key.algorithm().as_str().to_string())
}

/// The comment, or nothing when it holds a control character.
fn printable_comment(comment: &str) -> &str {
    if comment.chars().any(char::is_control) {
        ""
    } else {
        comment
    }
}

const BLANKS: [char; 2] = [' ', '\t'];

/// One line: `None` for a blank or comment line.
pub(super) fn parse_line(raw: &str, line: usize) -> Result<Option<Entry>, LineProblem> {
    let text = raw.strip_suffix('\r').unwrap_or(raw);
    if text.contains('\0') {
        return Err(LineProblem::Nul);
    }
    let rest = text.trim_start_matches([' ', '\t', '\r']);
    if rest.is_empty() || rest.starts_with('#') {
        return Ok(None);
    }
    let (principals, rest) = split_principals(rest)?;
    if principals.split(',').any(|p| p.len() >= MAX_PATTERN_BYTES) {
        return Err(LineProblem::PatternTooLong);
    }
    let rest = rest.trim_start_matches([' ', '\t', '\r']);
    if rest.is_empty() {
        return Err(LineProblem::MissingKey);
    }
    // As ssh-keygen: a key right after the principals, else options first.
    let (options, key) = match parse_key(rest) {
        Ok(key) => (Options::default(), key),
        Err(first) => {
            // `ssh-ed25519 <bad base64>`: the key is what is wrong.
            if looks_like_key_type(rest.split(BLANKS).next().unwrap_or_default()) {
                return Err(first);
            }
            let end = end_of_options(rest)?;
            let (options, after) = rest.split_at(end);
            let after = after.trim_start_matches(BLANKS);
            if after.is_empty() {
                return Err(LineProblem::MissingKey);
            }
            let key = parse_key(after)?;
            (parse_options(options)?, key)
        }
    };
    Ok(Some(Entry {
        line,
        principals: principals.to_string(),
        cert_authority: options.cert_authority,
        namespaces: options.namespaces,
        valid_after: options.valid_after,
        valid_before: options.valid_before,
        key,
    }))
}

/// The principals field and what follows it.
fn split_principals(rest: &str) -> Result<(&str, &str), LineProblem> {
    let (principals, after) = if let Some(quoted) = rest.strip_prefix('"') {
        let end = quoted.find('"').ok_or(LineProblem::UnterminatedQuote)?;
        let after = &quoted[end + 1..];
        if !after.is_empty() && !after.starts_with(BLANKS) {
            return Err(LineProblem::BadPrincipals {
                reason: "text right after the closing quote",
            });
        }
        (&quoted[..end], after)
    } else {
        let end = rest.find([' ', '\t', '\r']).unwrap_or(rest.len());
        let principals = &rest[..end];
        if principals.contains('"') {
            return Err(LineProblem::BadPrincipals {
                reason: "a quote inside the principals",
            });
        }
        (principals, &rest[end..])
    };
    if principals.is_empty() {
        return Err(LineProblem::BadPrincipals { reason: "empty" });
    }
    Ok((principals, after))
}

fn looks_like_key_type(token: &str) -> bool {
    matches!(
        token.parse::<ssh_key::Algorithm>(),
        Ok(alg) if !matches!(alg, ssh_key::Algorithm::Other(_))
    )
}

/// `type base64 [comment]`, a key meshseal can verify with.
fn parse_key(text: &str) -> Result<PublicKey, LineProblem> {
    let (kind, rest) = text.split_once(BLANKS).unwrap_or((text, ""));
    let rest = rest.trim_start_matches(BLANKS);
    let (blob, comment) = rest.split_once(BLANKS).unwrap_or((rest, ""));
    let mut key = PublicKey::from_openssh(&format!("{kind} {blob}"))
        .map_err(|source| LineProblem::BadKey { source })?;
    keys::check(key.key_data()).map_err(|problem| LineProblem::UnsupportedKey { problem })?;
    key.set_comment(printable_comment(comment.trim_matches([' ', '\t', '\r'])));
    Ok(key)
}

/// Where the options end: the first blank outside quotes (ssh's
/// `sshkey_advance_past_options`, where `\"` does not toggle quoting).
fn end_of_options(text: &str) -> Result<usize, LineProblem> {
    let bytes = text.as_bytes();
    let mut quoted = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if bytes.get(i + 1) == Some(&b'"') => i += 1,
            b'"' => quoted = !quoted,
            b' ' | b'\t' if !quoted => return Ok(i),
            _ => {}
        }
        i += 1;
    }
    if quoted {
        return Err(LineProblem::UnterminatedQuote);
    }
    Ok(bytes.len())
}

#[derive(Default)]
struct Options {
    cert_authority: bool,
    namespaces: Option<String>,
    valid_after: Option<u64>,
    valid_before: Option<u64>,
}

/// ssh-keygen's `sshsigopt_parse`: option names are case-insensitive,
/// values are quoted, and anything unknown is an error.
fn parse_options(mut s: &str) -> Result<Options, LineProblem> {
    let mut options = Options::default();
    while !s.is_empty() {
        if let Some(rest) = strip_prefix_ci(s, "cert-authority") {
            options.cert_authority = true;
            s = rest;
        } else if let Some(rest) = strip_prefix_ci(s, "namespaces=") {
            let (value, rest) = option_value("namespaces", rest, options.namespaces.is_some())?;
            if value.split(',').any(|p| p.len() >= MAX_PATTERN_BYTES) {
                return Err(LineProblem::PatternTooLong);
            }
            options.namespaces = Some(value);
            s = rest;
        } else if let Some(rest) = strip_prefix_ci(s, "valid-after=") {
            let (value, rest) = option_value("valid-after", rest, options.valid_after.is_some())?;
            options.valid_after = Some(parse_time("valid-after", &value)?);
            s = rest;
        } else if let Some(rest) = strip_prefix_ci(s, "valid-before=") {
            let (value, rest) = option_value("valid-before", rest, options.valid_before.is_some())?;
            options.valid_before = Some(parse_time("valid-before", &value)?);
            s = rest;
        }
        if s.is_empty() {
            break;
        }
        let Some(rest) = s.strip_prefix(',') else {
            let name = s.split([',', '=']).next().unwrap_or(s);
            return Err(LineProblem::UnknownOption {
                option: shorten(name),
            });
        };
        if rest.is_empty() {
            return Err(LineProblem::TrailingComma);
        }
        s = rest;
    }
    if let (Some(after), Some(before)) = (options.valid_after, options.valid_before) {
        if before <= after {
            return Err(LineProblem::TimeOrder);
        }
    }
    Ok(options)
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// A quoted option value (ssh's `opt_dequote`: `\"` is a quote) and the rest.
fn option_value<'a>(
    option: &'static str,
    s: &'a str,
    duplicate: bool,
) -> Result<(String, &'a str), LineProblem> {
    if duplicate {
        return Err(LineProblem::DuplicateOption { option });
    }
    let Some(body) = s.strip_prefix('"') else {
        return Err(LineProblem::MissingStartQuote { option });
    };
    let bytes = body.as_bytes();
    let mut value = Vec::new();
    let mut i = 0;
    while i < bytes.len() && bytes[i] != b'"' {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'"') {
            i += 1;
        }
        value.push(bytes[i]);
        i += 1;
    }
    if i == bytes.len() {
        return Err(LineProblem::UnterminatedQuote);
    }
    let value = String::from_utf8(value).map_err(|_| LineProblem::UnterminatedQuote)?;
    if body[..i].contains('\\') {
        return Err(LineProblem::Backslash { option });
    }
    Ok((value, &body[i + 1..]))
}

/// ssh's `parse_absolute_time`, UTC only: `YYYYMMDD`, `YYYYMMDDHHMM` or
/// `YYYYMMDDHHMMSS`, then `Z` or `UTC` (any case).
pub(super) fn parse_time(option: &'static str, value: &str) -> Result<u64, LineProblem> {
    let bad = || LineProblem::BadTime {
        option,
        value: shorten(value),
    };
    let digits = if value.len() > 1 && value.ends_with(['z', 'Z']) {
        &value[..value.len() - 1]
    } else if value.len() > 3
        && value.is_char_boundary(value.len() - 3)
        && value[value.len() - 3..].eq_ignore_ascii_case("utc")
    {
        &value[..value.len() - 3]
    } else {
        if matches!(value.len(), 8 | 12 | 14) && value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LineProblem::LocalTime {
                option,
                value: shorten(value),
            });
        }
        return Err(bad());
    };
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let field = |from: usize, to: usize| -> u32 {
        digits
            .get(from..to)
            .and_then(|d| d.parse().ok())
            .unwrap_or(0)
    };
    let year = field(0, 4) as i32;
    let month = time::Month::try_from(field(4, 6) as u8).map_err(|_| bad())?;
    let date = time::Date::from_calendar_date(year, month, field(6, 8) as u8).map_err(|_| bad())?;
    let clock = time::Time::from_hms(field(8, 10) as u8, field(10, 12) as u8, field(12, 14) as u8)
        .map_err(|_| bad())?;
    let seconds = time::PrimitiveDateTime::new(date, clock)
        .assume_utc()
        .unix_timestamp();
    // ssh-keygen refuses 0, and a time before 1970 wraps around in its u64.
    u64::try_from(seconds)
        .ok()
        .filter(|&s| s > 0)
        .ok_or_else(bad)
}

/// `YYYYMMDDHHMMSSZ`, which [`parse_time`] reads back.
pub(super) fn format_time(seconds: u64) -> String {
    match i64::try_from(seconds)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
    {
        Some(t) => format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        None => seconds.to_string(),
    }
}

/// Text from the file, shortened and made printable for a message.
pub(super) fn shorten(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(64)
        .flat_map(char::escape_default)
        .collect();
    if text.chars().count() > 64 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::ED;
    use super::super::{AllowedSigners, AllowedSignersError};
    use super::*;
    use crate::problem::Diagnostic;
    use crate::signing::keys::tests::{DSA, RSA_1024};

    fn problem(text: &str) -> (usize, LineProblem) {
        match AllowedSigners::parse(text).unwrap_err() {
            AllowedSignersError::Line { line, problem } => (line, problem),
            e => panic!("{e}"),
        }
    }

    fn t(s: &str) -> u64 {
        parse_time("valid-after", s).unwrap()
    }
    #[test]
    fn lines_comments_options_and_quotes() {
        let text = format!(
            "# admins\n\n  \t# indented comment\nalice,bob {ED}\n\"ci bot\" NAMESPACES=\"meshseal,meshseal-scope\",valid-after=\"20250101Z\" {ED}\n*@example.com cert-authority,valid-before=\"203001011200UTC\" {ED}\r\n"
        );
        let signers = AllowedSigners::parse(&text).unwrap();
        let e = signers.entries();
        assert_eq!(e.len(), 3);
        assert_eq!((e[0].line(), e[0].principals()), (4, "alice,bob"));
        assert_eq!(e[0].key().comment(), "user@example.com");
        assert_eq!(e[1].principals(), "ci bot");
        assert_eq!(e[1].namespaces(), Some("meshseal,meshseal-scope"));
        assert_eq!(e[1].valid_after(), Some(1_735_689_600));
        assert!(e[2].cert_authority());
        assert_eq!(e[2].valid_before(), Some(t("20300101120000Z")));
        assert_eq!(e[2].line(), 6);
    }

    #[test]
    fn what_meshseal_cannot_honour_is_refused_with_its_line() {
        type Expect = fn(&LineProblem) -> bool;
        let cases: Vec<(String, Expect)> = vec![
            (
                format!("a foo=\"x\" {ED}"),
                |p| matches!(p, LineProblem::UnknownOption { option } if option == "foo"),
            ),
            (format!("a no-touch-required {ED}"), |p| {
                matches!(p, LineProblem::UnknownOption { .. })
            }),
            (format!("a cert-authority, {ED}"), |p| {
                matches!(p, LineProblem::TrailingComma)
            }),
            (format!("a namespaces=meshseal {ED}"), |p| {
                matches!(p, LineProblem::MissingStartQuote { .. })
            }),
            (format!("a namespaces=\"x\",namespaces=\"y\" {ED}"), |p| {
                matches!(p, LineProblem::DuplicateOption { .. })
            }),
            (format!("a valid-after=\"20250101\" {ED}"), |p| {
                matches!(p, LineProblem::LocalTime { .. })
            }),
            (format!("a valid-after=\"20250231Z\" {ED}"), |p| {
                matches!(p, LineProblem::BadTime { .. })
            }),
            (format!("a valid-after=\"2025010Z\" {ED}"), |p| {
                matches!(p, LineProblem::BadTime { .. })
            }),
            (format!("a valid-after=\"19700101Z\" {ED}"), |p| {
                matches!(p, LineProblem::BadTime { .. })
            }),
            (format!("a valid-after=\"19000101Z\" {ED}"), |p| {
                matches!(p, LineProblem::BadTime { .. })
            }),
            (
                format!("a valid-after=\"20250102Z\",valid-before=\"20250101Z\" {ED}"),
                |p| matches!(p, LineProblem::TimeOrder),
            ),
            (format!("a namespaces=\"x {ED}"), |p| {
                matches!(p, LineProblem::UnterminatedQuote)
            }),
            (format!("a namespaces=\"x\\\"y\" {ED}"), |p| {
                matches!(p, LineProblem::Backslash { .. })
            }),
            ("a ssh-ed25519 AAAAnotbase64!".to_string(), |p| {
                matches!(p, LineProblem::BadKey { .. })
            }),
            ("a".to_string(), |p| matches!(p, LineProblem::MissingKey)),
            ("a namespaces=\"x\"".to_string(), |p| {
                matches!(p, LineProblem::MissingKey)
            }),
            (format!("a {DSA}"), |p| {
                matches!(p, LineProblem::UnsupportedKey { .. })
            }),
            (format!("a {RSA_1024}"), |p| {
                matches!(p, LineProblem::UnsupportedKey { .. })
            }),
            (format!("a\"b {ED}"), |p| {
                matches!(p, LineProblem::BadPrincipals { .. })
            }),
            (format!("\"a\"b {ED}"), |p| {
                matches!(p, LineProblem::BadPrincipals { .. })
            }),
            (format!("\"\" {ED}"), |p| {
                matches!(p, LineProblem::BadPrincipals { .. })
            }),
            (format!("\"a {ED}"), |p| {
                matches!(p, LineProblem::UnterminatedQuote)
            }),
            (format!("a\0 {ED}"), |p| matches!(p, LineProblem::Nul)),
            (format!("{} {ED}", "x".repeat(1023)), |p| {
                matches!(p, LineProblem::PatternTooLong)
            }),
        ];
        for (body, expected) in cases {
            let text = format!("# header\n{body}\n");
            let (line, problem) = problem(&text);
            assert_eq!(line, 2, "{body}");
            assert!(expected(&problem), "{body}: {problem:?}");
            // Problems never carry the key material.
            assert!(!problem.to_string().contains("AAAAC3Nza"), "{problem}");
        }
    }

    #[test]
    fn problems_lists_every_bad_line() {
        let text = format!("a foo {ED}\nb {ED}\nc\n");
        let all = AllowedSigners::problems(&text);
        let lines: Vec<_> = all.iter().map(|e| e.line()).collect();
        assert_eq!(lines, [Some(1), Some(3)]);
        assert_eq!(all[0].code(), "invalid-allowed-signers");
        assert!(all[0].hint().unwrap().contains("namespaces="));
    }

    #[test]
    fn local_time_hint_says_append_z() {
        let err = AllowedSigners::parse(&format!("a valid-before=\"20250101\" {ED}")).unwrap_err();
        assert!(
            err.hint().unwrap().contains("\"20250101Z\""),
            "{:?}",
            err.hint()
        );
    }

    #[test]
    fn a_comment_never_makes_a_line_of_its_own() {
        let key = PublicKey::from_openssh(ED).unwrap();
        let mut sneaky = key.clone();
        sneaky.set_comment(format!("x\nmallory {ED}"));
        assert!(!openssh(&sneaky).contains('\n'));
        let signers = AllowedSigners::parse(&format!("a {ED} tab\there\n")).unwrap();
        assert_eq!(signers.entries()[0].key().comment(), "");
    }

    #[test]
    fn time_round_trips() {
        for s in ["20250101Z", "202501011230Z", "20991231235959Z"] {
            let secs = t(s);
            assert_eq!(t(&format_time(secs)), secs);
        }
        assert_eq!(t("20250101utc"), t("20250101Z"));
    }
}
