//! The report shape: a problem with a file, a line, a stable code, a message
//! and a hint, made from a typed error at the edge.
//!
//! Functions return typed errors, one enum per operation (rage's
//! `DecryptError`, `EncryptError`), with their sources kept. The
//! [`Diagnostic`] trait gives each variant a stable machine code, a hint and,
//! where the error knows it, the file; [`Problem::from`] (or `?` into a
//! `Result<_, Problem>`) turns any of them into the report, and [`Problem::at`]
//! pins an error that does not know its file. `check` collects many problems,
//! commands fail with one; both print them the same way, like rage and
//! kumactl:
//!
//! ```text
//! error: meshes/payments/secrets/db.age: document name "db2" does not match its path (name "db")
//! hint: the ciphertext was renamed or copied; recreate it with `meshseal create secret db -m payments`
//! ```
//!
//! A problem never carries secret bytes: messages are built by this crate from
//! names and paths, never from decrypted values.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// What an error enum tells about each of its variants.
pub trait Diagnostic: fmt::Display {
    /// A short, stable, kebab-case code (for `check -o json` and scripts).
    fn code(&self) -> &'static str;
    /// What the user can do about it, if there is something to say.
    fn hint(&self) -> Option<String> {
        None
    }
    /// The 1-based line in the file the problem is about, where known.
    fn line(&self) -> Option<usize> {
        None
    }
    /// The file the problem is about, where the error itself knows it.
    fn file(&self) -> Option<&Path> {
        None
    }
}

/// What an error means for a long-running process (watchexec's critical
/// versus recoverable): whether the watcher must stop, or logs it and keeps
/// serving the last good state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consequence {
    /// The process cannot go on (it cannot start, or lost what it serves from).
    Critical,
    /// One file or one event is affected: log it, keep the last good state.
    Recoverable,
}

/// Any typed error becomes its report with `?`: the file from the error
/// itself, when it knows it.
impl<E: Diagnostic> From<E> for Problem {
    fn from(err: E) -> Problem {
        Problem::report(&err)
    }
}

/// One problem, located.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file, relative to the store root where possible.
    pub file: Option<PathBuf>,
    /// 1-based line number.
    pub line: Option<usize>,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// The problem line, without the file prefix.
    pub message: String,
    /// A recommendation.
    pub hint: Option<String>,
}

impl Problem {
    /// A problem from a diagnostic, about `file`.
    pub fn at(file: impl AsRef<Path>, err: &dyn Diagnostic) -> Self {
        Problem {
            file: Some(file.as_ref().to_path_buf()),
            line: err.line(),
            code: err.code(),
            message: err.to_string(),
            hint: err.hint(),
        }
    }

    /// The report of an error, located where the error says (or nowhere).
    pub fn report(err: &dyn Diagnostic) -> Self {
        Problem {
            file: err.file().map(Path::to_path_buf),
            line: err.line(),
            code: err.code(),
            message: err.to_string(),
            hint: err.hint(),
        }
    }

    /// A problem that is not about one file.
    pub fn general(err: &dyn Diagnostic) -> Self {
        Problem {
            file: None,
            ..Problem::report(err)
        }
    }

    /// Adds or replaces the hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Rewrites the file path relative to `root`, if it lies under it.
    pub fn relative_to(mut self, root: &Path) -> Self {
        if let Some(file) = &self.file {
            if let Ok(rel) = file.strip_prefix(root) {
                self.file = Some(rel.to_path_buf());
            }
        }
        self
    }
}

impl fmt::Display for Problem {
    /// `file:line: message` (the hint is printed separately by the CLI).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{}: {}", file.display(), line, self.message),
            (Some(file), None) => write!(f, "{}: {}", file.display(), self.message),
            (None, _) => write!(f, "{}", self.message),
        }
    }
}

impl std::error::Error for Problem {}

/// 1-based line number of a byte offset in a text.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_numbers_are_one_based() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
        assert_eq!(line_of("a", 99), 1);
    }

    #[test]
    fn display_names_file_and_line() {
        let p = Problem {
            file: Some("meshes/m/secrets/x.age".into()),
            line: Some(3),
            code: "x",
            message: "bad".into(),
            hint: None,
        };
        assert_eq!(p.to_string(), "meshes/m/secrets/x.age:3: bad");
    }
}
