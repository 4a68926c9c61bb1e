//! The CLI's own errors: what goes wrong wiring input and output, before or
//! after the library's part. Library errors pass through as themselves.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use meshseal::document::DocumentError;
use meshseal::problem::Diagnostic;

/// Why a command could not read its input or find itself.
#[derive(Debug, Error)]
pub enum CliError {
    /// A file named on the command line (or stdin) could not be read.
    #[error("{source}")]
    Read {
        /// The file, or `<stdin>`.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A new secret's value is not valid data (empty, too large).
    #[error("{source}")]
    Value {
        /// Where the value came from: a file, `<stdin>` or `--from-literal`.
        input: PathBuf,
        /// The rule.
        #[source]
        source: DocumentError,
    },
    /// `recipients remove` would leave a scope with nobody to encrypt to.
    #[error(
        "this would remove the last recipient: nobody could read or add secrets of this scope"
    )]
    LastRecipient {
        /// The scope's recipients file.
        file: PathBuf,
        /// `-m MESH` or `--global`.
        scope_flag: String,
    },
    /// `rekey` without a trust root, and recipients.txt gained keys since
    /// the secrets were written (SPEC 9).
    #[error("recipients.txt gained keys since these secrets were written; anyone who can push can add one")]
    RecipientsAdded,
    /// A path given to `check` that names no file or folder of the store.
    #[error("no such file or folder in the store")]
    NoSuchPath {
        /// The path as given.
        path: PathBuf,
    },
    /// meshseal's own path, which the hook and the diff driver run.
    #[error("cannot find meshseal's own path: {0}")]
    OwnPath(#[source] io::Error),
}

impl Diagnostic for CliError {
    fn code(&self) -> &'static str {
        match self {
            CliError::Read { .. } | CliError::OwnPath(_) => "io",
            CliError::LastRecipient { .. } => "last-recipient",
            CliError::RecipientsAdded => "recipients-added",
            CliError::NoSuchPath { .. } => "no-such-path",
            CliError::Value { source, .. } => source.code(),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            CliError::Value { source, .. } => source.hint(),
            CliError::LastRecipient { scope_flag, .. } => Some(format!(
                "add the new key first (`meshseal recipients add {scope_flag} KEY`), or pass --force"
            )),
            CliError::RecipientsAdded => Some(
                "check that every added key (+ above) belongs to a reader you trust, then run again with --yes; with a trust root, admins sign recipients.txt instead (docs/writers.md)"
                    .to_string(),
            ),
            CliError::NoSuchPath { .. } => Some(
                "give a path inside the store (e.g. `meshes/MESH` or a secret's file), or no path to check everything"
                    .to_string(),
            ),
            _ => None,
        }
    }

    fn line(&self) -> Option<usize> {
        match self {
            CliError::Value { source, .. } => source.line(),
            _ => None,
        }
    }

    fn file(&self) -> Option<&Path> {
        match self {
            CliError::Read { path, .. } => Some(path),
            CliError::Value { input, .. } => Some(input),
            CliError::LastRecipient { file, .. } => Some(file),
            CliError::NoSuchPath { path } => Some(path),
            CliError::OwnPath(_) | CliError::RecipientsAdded => None,
        }
    }
}
