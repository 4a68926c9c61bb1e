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
    /// meshseal's own path, which the hook and the diff driver run.
    #[error("cannot find meshseal's own path: {0}")]
    OwnPath(#[source] io::Error),
}

impl Diagnostic for CliError {
    fn code(&self) -> &'static str {
        match self {
            CliError::Read { .. } | CliError::OwnPath(_) => "io",
            CliError::Value { source, .. } => source.code(),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            CliError::Value { source, .. } => source.hint(),
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
            CliError::OwnPath(_) => None,
        }
    }
}
