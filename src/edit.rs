//! `meshseal edit`: change a secret's value in `$VISUAL`/`$EDITOR` without
//! ever writing plaintext to a persistent disk.
//!
//! The decoded value goes to a file (mode 0600) in a private folder (mode
//! 0700) on a RAM-backed filesystem (`/dev/shm`) where one exists. The folder
//! is removed afterwards whatever happens: editor failure, invalid result, or
//! an interrupt (SIGINT/SIGTERM/SIGHUP are caught while the editor runs, so
//! meshseal lives to clean up, and the edit is then abandoned). Saving the
//! value unchanged leaves the secret file untouched.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use thiserror::Error;
use zeroize::Zeroizing;

use crate::document::{check_data, Document, DocumentError, SecretData};
use crate::identity::Identities;
use crate::problem::Diagnostic;
use crate::scope::SecretId;
use crate::store::{LoadError, Store, WriteError, WriteOutcome};

/// What an edit did.
#[derive(Debug, PartialEq, Eq)]
pub enum EditOutcome {
    /// The value was saved unchanged; the file is untouched.
    Unchanged,
    /// The secret was re-encrypted with the new value.
    Updated,
}

/// The editor command: `$VISUAL`, else `$EDITOR`, else `vi`.
pub fn editor_from_env() -> String {
    ["VISUAL", "EDITOR"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "vi".to_string())
}

/// Where the private folder goes: RAM-backed `/dev/shm` where available.
pub fn private_base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Prefix of the private folders of `edit`.
pub const EDIT_PREFIX: &str = "meshseal-edit-";

/// Removes the private folders that killed edits left in `base` (their
/// plaintext value included): folders with our prefix, owned by this user,
/// whose lock nobody holds. Best effort, never fails: every command runs it,
/// so a leftover lives only until meshseal next runs. Returns how many were
/// removed.
pub fn sweep_leftovers(base: &Path) -> usize {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = fs::read_dir(base) else {
        return 0;
    };
    let me = rustix::process::geteuid().as_raw();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(EDIT_PREFIX) {
            continue;
        }
        // `DirEntry::metadata` does not follow links: a planted link is
        // never followed, and someone else's folder never touched.
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_dir() || meta.uid() != me {
            continue;
        }
        let path = entry.path();
        let Ok(handle) = fs::File::open(&path) else {
            continue;
        };
        match handle.try_lock() {
            Ok(()) => {
                if fs::remove_dir_all(&path).is_ok() {
                    removed += 1;
                }
            }
            // An edit at work holds it.
            Err(_) => continue,
        }
    }
    removed
}

/// Why an edit changed nothing.
#[derive(Debug, Error)]
pub enum EditError {
    /// The secret could not be loaded (boxed: a load error is large).
    #[error(transparent)]
    Load(Box<LoadError>),
    /// The private folder or file could not be made.
    #[error("{source}")]
    Private {
        /// The folder or file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The editor could not be started.
    #[error("cannot run editor {editor:?}: {source}")]
    Spawn {
        /// The secret's file.
        file: PathBuf,
        /// The editor command.
        editor: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A signal arrived while the editor ran.
    #[error("interrupted; nothing changed")]
    Interrupted {
        /// The secret's file.
        file: PathBuf,
    },
    /// The editor exited with a failure.
    #[error("editor exited with {status}; nothing changed")]
    EditorFailed {
        /// The secret's file.
        file: PathBuf,
        /// How it exited.
        status: ExitStatus,
    },
    /// The edited value could not be read back.
    #[error("cannot read the edited value back ({source}); nothing changed")]
    ReadBack {
        /// The secret's file (the private folder is gone when this is told).
        file: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The edited value is not valid secret data (empty, too large).
    #[error("{source}; nothing changed")]
    Invalid {
        /// The secret's file.
        file: PathBuf,
        /// The rule.
        #[source]
        source: DocumentError,
    },
    /// The new value could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl Diagnostic for EditError {
    fn code(&self) -> &'static str {
        match self {
            EditError::Load(e) => e.code(),
            EditError::Private { .. } => "io",
            EditError::Spawn { .. }
            | EditError::EditorFailed { .. }
            | EditError::ReadBack { .. } => "editor",
            EditError::Interrupted { .. } => "interrupted",
            EditError::Invalid { source, .. } => source.code(),
            EditError::Write(e) => e.code(),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            EditError::Load(e) => e.hint(),
            EditError::EditorFailed { .. } => {
                Some("fix the editor command in $VISUAL or $EDITOR".to_string())
            }
            EditError::ReadBack { .. } => {
                Some("the editor must save the value to the file it was given".to_string())
            }
            EditError::Write(e) => e.hint(),
            _ => None,
        }
    }

    fn line(&self) -> Option<usize> {
        match self {
            EditError::Load(e) => e.line(),
            EditError::Write(e) => e.line(),
            _ => None,
        }
    }

    fn file(&self) -> Option<&Path> {
        match self {
            EditError::Load(e) => e.file(),
            EditError::Write(e) => e.file(),
            EditError::Private { path: file, .. }
            | EditError::Spawn { file, .. }
            | EditError::Interrupted { file }
            | EditError::EditorFailed { file, .. }
            | EditError::ReadBack { file, .. }
            | EditError::Invalid { file, .. } => Some(file),
        }
    }
}

/// Edits one secret's value with `editor` (a shell command line; the file
/// path is appended as its last argument).
pub fn edit(
    store: &Store,
    id: &SecretId,
    identities: &Identities,
    editor: &str,
    base: &Path,
) -> Result<EditOutcome, EditError> {
    let loaded = store
        .load(id, identities)
        .map_err(|e| EditError::Load(Box::new(e)))?;
    let original = loaded.doc.data.expose();
    let private = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EditError::Private { path, source }
    };

    sweep_leftovers(base);
    let dir = tempfile::Builder::new()
        .prefix(EDIT_PREFIX)
        .tempdir_in(base)
        .map_err(private(base))?;
    set_mode(dir.path(), 0o700).map_err(private(dir.path()))?;
    // Held until the folder is removed: a sweep by a later command sees an
    // edit at work; if this process is killed (-9, the OOM killer) the
    // kernel drops the lock and the next command removes the plaintext.
    let lock = fs::File::open(dir.path()).map_err(private(dir.path()))?;
    lock.lock().map_err(private(dir.path()))?;
    let file = dir.path().join(&id.name);
    write_private(&file, original).map_err(private(&file))?;

    let interrupted = Arc::new(AtomicBool::new(false));
    let mut registered = Vec::new();
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        if let Ok(id) = signal_hook::flag::register(sig, Arc::clone(&interrupted)) {
            registered.push(id);
        }
    }
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("meshseal-edit")
        .arg(&file)
        .status();
    for r in registered {
        signal_hook::low_level::unregister(r);
    }
    let status = status.map_err(|source| EditError::Spawn {
        file: id.path(),
        editor: editor.to_string(),
        source,
    })?;
    if interrupted.load(Ordering::SeqCst) {
        return Err(EditError::Interrupted { file: id.path() });
    }
    if !status.success() {
        return Err(EditError::EditorFailed {
            file: id.path(),
            status,
        });
    }
    // The private folder is gone by the time this is printed: name the secret.
    let mut edited = Zeroizing::new(fs::read(&file).map_err(|source| EditError::ReadBack {
        file: id.path(),
        source,
    })?);
    // Editors add a final newline on save; do not let that change a value
    // that had none.
    if !original.ends_with(b"\n") && edited.ends_with(b"\n") {
        edited.pop();
        if edited.ends_with(b"\r") {
            edited.pop();
        }
    }
    drop(dir); // remove the plaintext before anything else can fail
    drop(lock);
    if edited.as_slice() == original {
        return Ok(EditOutcome::Unchanged);
    }
    check_data(&edited, store.config().limits.max_data_bytes).map_err(|source| {
        EditError::Invalid {
            file: id.path(),
            source,
        }
    })?;
    let mut doc = Document::new(id.clone(), SecretData::new(edited.to_vec()));
    doc.labels = loaded.doc.labels.clone();
    match store.put(&doc, Some(identities))? {
        WriteOutcome::Unchanged => Ok(EditOutcome::Unchanged),
        _ => Ok(EditOutcome::Updated),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}
