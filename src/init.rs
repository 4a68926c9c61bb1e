//! `meshseal init`: lay out a new store.
//!
//! Creates `meshseal.toml`, `global/recipients.txt` and
//! `meshes/default/recipients.txt` (Kuma's default mesh), and the
//! `.gitattributes` line that keeps ciphertext out of text diffs and routes
//! `git diff` through `meshseal textconv`. Existing files are kept: running
//! init twice changes nothing.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::atomic;
use crate::config::{new_store_id, Config, CONFIG_FILE};
use crate::problem::Diagnostic;
use crate::recipients::{add_to_text, Recipient, RecipientError};
use crate::scope::{Scope, DEFAULT_MESH};
use crate::store::{OpenError, Store, WriteError};

/// The `.gitattributes` line for secret files.
pub const GITATTRIBUTES_LINE: &str = "*.age -text diff=meshseal";
/// Signatures (SPEC 9) are armored text nobody needs to diff.
pub const GITATTRIBUTES_SIG_LINE: &str = "*.sig -diff";
const GITATTRIBUTES_LINES: [&str; 2] = [GITATTRIBUTES_LINE, GITATTRIBUTES_SIG_LINE];

/// What `init` created (paths relative to the root).
#[derive(Debug, Default)]
pub struct InitReport {
    /// Files written.
    pub created: Vec<String>,
    /// Files that existed and were kept.
    pub kept: Vec<String>,
}

/// Why `init` stopped (the files it made before stay; a second run keeps
/// them and makes the rest).
#[derive(Debug, Error)]
pub enum InitError {
    /// A file or folder could not be read or written.
    #[error("{source}")]
    Io {
        /// The file, relative to the root (`.` for the root itself).
        file: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The new store (its config) could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A recipient cannot be written to a recipients file.
    #[error("{source}")]
    Recipients {
        /// The recipients file.
        file: PathBuf,
        /// What is wrong.
        #[source]
        source: RecipientError,
    },
    /// A recipients file could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl Diagnostic for InitError {
    fn code(&self) -> &'static str {
        match self {
            InitError::Io { .. } => "io",
            InitError::Open(e) => e.code(),
            InitError::Recipients { source, .. } => source.code(),
            InitError::Write(e) => e.code(),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            InitError::Io { .. } => None,
            InitError::Open(e) => e.hint(),
            InitError::Recipients { source, .. } => source.hint(),
            InitError::Write(e) => e.hint(),
        }
    }

    fn line(&self) -> Option<usize> {
        match self {
            InitError::Recipients { source, .. } => source.line(),
            InitError::Open(e) => e.line(),
            _ => None,
        }
    }

    fn file(&self) -> Option<&Path> {
        match self {
            InitError::Io { file, .. } | InitError::Recipients { file, .. } => Some(file),
            InitError::Open(e) => e.file(),
            InitError::Write(e) => e.file(),
        }
    }
}

/// Creates a store at `root` with `recipients` in the global and default scopes.
pub fn init(root: &Path, recipients: &[Recipient]) -> Result<(Store, InitReport), InitError> {
    let io_err = |rel: &str, source: io::Error| InitError::Io {
        file: PathBuf::from(rel),
        source,
    };
    fs::create_dir_all(root).map_err(|e| io_err(".", e))?;
    let mut report = InitReport::default();

    let config_path = root.join(CONFIG_FILE);
    if config_path.exists() {
        report.kept.push(CONFIG_FILE.to_string());
    } else {
        let text = format!(
            "# meshseal store configuration\n{}",
            toml::to_string(&Config {
                store_id: Some(new_store_id()),
                ..Config::default()
            })
            .expect("config serializes")
        );
        atomic::write(&config_path, text.as_bytes(), 0o644).map_err(|e| io_err(CONFIG_FILE, e))?;
        report.created.push(CONFIG_FILE.to_string());
    }

    let store = Store::with_config(root.to_path_buf())?;
    for scope in [Scope::Global, Scope::Mesh(DEFAULT_MESH.to_string())] {
        let file = scope.recipients_path();
        let rel = file.display().to_string();
        if root.join(&file).exists() {
            report.kept.push(rel);
            continue;
        }
        let header = format!(
            "# Recipients of {scope} secrets, in age's recipients-file format (works with `age -R`).\n# One age1… or ssh-ed25519/ssh-rsa public key per line.\n"
        );
        let (text, _) = add_to_text(&header, recipients)
            .map_err(|source| InitError::Recipients { file, source })?;
        store.write_recipients(&scope, &text)?;
        report.created.push(rel);
    }

    let attributes = root.join(".gitattributes");
    let existing = match fs::read_to_string(&attributes) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_err(".gitattributes", e)),
    };
    let missing: Vec<&str> = GITATTRIBUTES_LINES
        .iter()
        .copied()
        .filter(|line| !existing.lines().any(|l| l.trim() == *line))
        .collect();
    if missing.is_empty() {
        report.kept.push(".gitattributes".to_string());
    } else {
        let mut text = existing;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        for line in missing {
            text.push_str(line);
            text.push('\n');
        }
        atomic::write(&attributes, text.as_bytes(), 0o644)
            .map_err(|e| io_err(".gitattributes", e))?;
        report.created.push(".gitattributes".to_string());
    }
    Ok((store, report))
}
