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
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::document::{check_data, Document, SecretData};
use crate::identity::Identities;
use crate::problem::{Diagnostic, Problem};
use crate::scope::SecretId;
use crate::store::{Store, StoreError, WriteOutcome};

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

fn problem(id: &SecretId, code: &'static str, message: impl Into<String>) -> Problem {
    Problem::new(Some(id.path()), code, message)
}

/// Edits one secret's value with `editor` (a shell command line; the file
/// path is appended as its last argument).
pub fn edit(
    store: &Store,
    id: &SecretId,
    identities: &Identities,
    editor: &str,
    base: &Path,
) -> Result<EditOutcome, Problem> {
    let loaded = store.load(id, identities)?;
    let original = loaded.doc.data.expose();

    let dir = tempfile::Builder::new()
        .prefix("meshseal-edit-")
        .tempdir_in(base)
        .map_err(|e| Problem::at(base, &StoreError::Io(e)))?;
    set_mode(dir.path(), 0o700).map_err(|e| Problem::at(dir.path(), &StoreError::Io(e)))?;
    let file = dir.path().join(&id.name);
    write_private(&file, original).map_err(|e| Problem::at(&file, &StoreError::Io(e)))?;

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
    let status =
        status.map_err(|e| problem(id, "editor", format!("cannot run editor {editor:?}: {e}")))?;
    if interrupted.load(Ordering::SeqCst) {
        return Err(problem(id, "interrupted", "interrupted; nothing changed"));
    }
    if !status.success() {
        return Err(problem(
            id,
            "editor",
            format!("editor exited with {status}; nothing changed"),
        )
        .with_hint("fix the editor command in $VISUAL or $EDITOR"));
    }
    // The private folder is gone by the time this is printed: name the secret.
    let mut edited = Zeroizing::new(fs::read(&file).map_err(|e| {
        problem(
            id,
            "editor",
            format!("cannot read the edited value back ({e}); nothing changed"),
        )
        .with_hint("the editor must save the value to the file it was given")
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
    if edited.as_slice() == original {
        return Ok(EditOutcome::Unchanged);
    }
    check_data(&edited, store.config().limits.max_data_bytes)
        .map_err(|e| Problem::new(Some(id.path()), e.code(), format!("{e}; nothing changed")))?;
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
