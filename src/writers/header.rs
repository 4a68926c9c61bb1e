//! The first line of a signed scope file (SPEC 9):
//!
//! ```text
//! # meshseal writers 5c1d0a3f9e27b846 mesh:payments generation 3
//! ```
//!
//! A comment to age and to ssh-keygen, so `recipients.txt` still works with
//! `age -R` and `writers.txt` with `ssh-keygen -Y verify -f`; to meshseal it
//! binds the file (under the admin's signature) to its kind, store and scope,
//! and numbers its versions so an older signed file is a rollback.

use crate::scope::{Scope, ScopeFile};

const PREFIX: &str = "# meshseal ";

/// What a scope file's first line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeHeader {
    /// `recipients` or `writers`.
    pub file: ScopeFile,
    /// The store's id.
    pub store_id: String,
    /// The scope.
    pub scope: Scope,
    /// The version's generation.
    pub generation: u64,
}

impl ScopeHeader {
    /// The header of `text`'s first line: `None` when that line is not a
    /// meshseal header at all, `Some(Err)` when it tries to be one and is
    /// malformed (the reason, for a `wrong-binding` message).
    pub fn parse(text: &str) -> Option<Result<ScopeHeader, String>> {
        let first = text.lines().next()?;
        let rest = first.strip_prefix(PREFIX)?;
        let words: Vec<&str> = rest.split_whitespace().collect();
        let parsed = match words.as_slice() {
            [file, store, scope, "generation", n] => {
                let file = match *file {
                    "recipients" => ScopeFile::Recipients,
                    "writers" => ScopeFile::Writers,
                    _ => return Some(Err(format!("unknown scope file kind {file:?}"))),
                };
                if !crate::config::is_valid_store_id(store) {
                    return Some(Err("invalid store id".to_string()));
                }
                let Some(scope) = Scope::from_tag(scope) else {
                    return Some(Err("invalid scope".to_string()));
                };
                let canonical = n.bytes().all(|b| b.is_ascii_digit())
                    && !n.is_empty()
                    && (*n == "0" || !n.starts_with('0'));
                let Some(generation) = n.parse().ok().filter(|_| canonical) else {
                    return Some(Err("invalid generation".to_string()));
                };
                Ok(ScopeHeader {
                    file,
                    store_id: store.to_string(),
                    scope,
                    generation,
                })
            }
            _ => Err(
                "expected `# meshseal <recipients|writers> <store-id> <scope> generation <N>`"
                    .to_string(),
            ),
        };
        Some(parsed)
    }

    /// The line, without its line end.
    pub fn line(&self) -> String {
        format!(
            "{PREFIX}{} {} {} generation {}",
            self.file.as_str(),
            self.store_id,
            self.scope.to_tag(),
            self.generation
        )
    }

    /// Whether this header binds a file of kind `file` of `scope` in the
    /// store `store_id`; the reason when it does not.
    pub fn binds(
        &self,
        file: ScopeFile,
        store_id: Option<&str>,
        scope: &Scope,
    ) -> Result<(), String> {
        if self.file != file {
            return Err(format!(
                "its header says it is a {} file, but it is at the place of the {} file",
                self.file.as_str(),
                file.as_str()
            ));
        }
        if &self.scope != scope {
            return Err(format!(
                "its header binds it to {}, but it is in {}",
                self.scope, scope
            ));
        }
        match store_id {
            Some(id) if id == self.store_id => Ok(()),
            Some(id) => Err(format!(
                "its header binds it to store {}, but this store is {id}",
                self.store_id
            )),
            None => Err(format!(
                "its header binds it to store {}, but meshseal.toml has no store_id",
                self.store_id
            )),
        }
    }
}

/// `text` with `header` as its first line: an existing meshseal header is
/// replaced, else the header is put on top.
pub fn with_header(text: &str, header: &ScopeHeader) -> String {
    let body = match ScopeHeader::parse(text) {
        Some(_) => text.split_once('\n').map_or("", |(_, rest)| rest),
        None => text,
    };
    format!("{}\n{body}", header.line())
}

/// The generation `text`'s header says, 0 without one.
pub fn generation_of(text: &str) -> u64 {
    match ScopeHeader::parse(text) {
        Some(Ok(h)) => h.generation,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let h = ScopeHeader {
            file: ScopeFile::Writers,
            store_id: "0123456789abcdef".to_string(),
            scope: Scope::Mesh("pay".into()),
            generation: 3,
        };
        let text = with_header("alice ssh-ed25519 AAAA\n", &h);
        assert_eq!(
            text,
            "# meshseal writers 0123456789abcdef mesh:pay generation 3\nalice ssh-ed25519 AAAA\n"
        );
        assert_eq!(ScopeHeader::parse(&text), Some(Ok(h.clone())));
        let next = ScopeHeader {
            generation: 4,
            ..h.clone()
        };
        assert_eq!(
            with_header(&text, &next),
            "# meshseal writers 0123456789abcdef mesh:pay generation 4\nalice ssh-ed25519 AAAA\n"
        );
        assert_eq!(generation_of(&with_header(&text, &next)), 4);
        let scope = Scope::Mesh("pay".into());
        assert!(h
            .binds(ScopeFile::Writers, Some("0123456789abcdef"), &scope)
            .is_ok());
        assert!(h
            .binds(ScopeFile::Recipients, Some("0123456789abcdef"), &scope)
            .is_err());
        assert!(h
            .binds(ScopeFile::Writers, Some("fedcba9876543210"), &scope)
            .is_err());
        assert!(h.binds(ScopeFile::Writers, None, &scope).is_err());
        assert!(h
            .binds(ScopeFile::Writers, Some("0123456789abcdef"), &Scope::Global)
            .is_err());
    }

    #[test]
    fn malformed_headers_are_told_from_none() {
        assert_eq!(ScopeHeader::parse("# just a comment\n"), None);
        assert_eq!(ScopeHeader::parse(""), None);
        for bad in [
            "# meshseal writers x mesh:p generation 1",
            "# meshseal readers 0123456789abcdef mesh:p generation 1",
            "# meshseal writers 0123456789abcdef mesh:P generation 1",
            "# meshseal writers 0123456789abcdef mesh:p generation 01",
            "# meshseal writers 0123456789abcdef mesh:p generation -1",
            "# meshseal writers 0123456789abcdef mesh:p",
        ] {
            assert!(matches!(ScopeHeader::parse(bad), Some(Err(_))), "{bad}");
        }
    }
}
