//! The trust root: the `allowed_signers` file of admins, kept outside the
//! repository, that every scope file's signature is checked against.
//!
//! Found at `--trust FILE`, else `MESHSEAL_TRUST`, else
//! `<config dir>/meshseal/trust.txt`. Nothing at the default path means "no
//! trust root" (meshseal then behaves as before signatures existed); a file
//! named explicitly must exist. Whoever can change the trust root decides
//! what verifies, so a file that group or others can write, or that sits in
//! a folder they can write (they could replace it), is refused. Reading is
//! fine: it holds public keys.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::allowed_signers::{AllowedSigners, AllowedSignersError, MAX_ALLOWED_SIGNERS_BYTES};
use crate::problem::Diagnostic;

/// Environment variable naming the trust root when `--trust` is not given.
pub const TRUST_ENV: &str = "MESHSEAL_TRUST";

/// `<config dir>/meshseal/trust.txt`, where the trust root is looked for by
/// default.
pub fn default_path() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("meshseal").join("trust.txt"))
}

/// Where the trust root's path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustSource {
    /// `--trust FILE`.
    Flag,
    /// `MESHSEAL_TRUST`.
    Env,
    /// The default path.
    Default,
}

/// Why the trust root is refused. Each knows its file ([`path`](TrustError::path),
/// [`Diagnostic::file`]), which the messages leave to the report.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A trust root named by `--trust` or `MESHSEAL_TRUST` does not exist.
    #[error("trust root does not exist")]
    NotFound {
        /// The file.
        path: PathBuf,
        /// Who named it.
        source_of_path: TrustSource,
    },
    /// The file could not be read.
    #[error("cannot read trust root: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Not a regular file, too large, or not UTF-8 text.
    #[error("trust root is not an allowed signers file: {reason}")]
    NotAFile {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        reason: &'static str,
    },
    /// Group or others can write the file.
    #[error("permissions {mode:04o} for trust root are too open: group and others must not be able to write it")]
    WritableFile {
        /// The file (for a symlink, its target).
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// Group or others can write the folder holding the file (or the link
    /// to it).
    #[error("permissions {mode:04o} for folder {} of the trust root are too open: group and others must not be able to write it", .folder.display())]
    WritableFolder {
        /// The trust root.
        path: PathBuf,
        /// The folder.
        folder: PathBuf,
        /// The folder's mode bits.
        mode: u32,
    },
    /// A line meshseal cannot honour.
    #[error("invalid trust root: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The parse error (with its line).
        #[source]
        source: AllowedSignersError,
    },
    /// The file lists no admin key (nothing could ever verify).
    #[error("trust root lists no admin keys")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

impl TrustError {
    /// The trust root file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            TrustError::NotFound { path, .. }
            | TrustError::Unreadable { path, .. }
            | TrustError::NotAFile { path, .. }
            | TrustError::WritableFile { path, .. }
            | TrustError::WritableFolder { path, .. }
            | TrustError::Invalid { path, .. }
            | TrustError::Empty { path } => path,
        }
    }
}

impl Diagnostic for TrustError {
    fn code(&self) -> &'static str {
        match self {
            TrustError::NotFound { .. } => "trust-missing",
            TrustError::Unreadable { .. } => "trust-unreadable",
            TrustError::WritableFile { .. } | TrustError::WritableFolder { .. } => {
                "trust-permissions"
            }
            TrustError::NotAFile { .. } | TrustError::Invalid { .. } | TrustError::Empty { .. } => {
                "invalid-trust"
            }
        }
    }

    fn line(&self) -> Option<usize> {
        match self {
            TrustError::Invalid { source, .. } => source.line(),
            _ => None,
        }
    }

    fn file(&self) -> Option<&Path> {
        Some(self.path())
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            TrustError::NotFound {
                source_of_path: TrustSource::Env,
                ..
            } => {
                format!("create it, or unset {TRUST_ENV} to verify nothing")
            }
            TrustError::NotFound { .. } => {
                "create it: one line per admin, `PRINCIPAL KEY` (OpenSSH allowed_signers)"
                    .to_string()
            }
            TrustError::WritableFile { path, .. } => format!("run `chmod go-w {}`", path.display()),
            TrustError::WritableFolder { folder, .. } => {
                format!("run `chmod go-w {}`", folder.display())
            }
            TrustError::Invalid { source, .. } => return source.hint(),
            TrustError::Empty { .. } | TrustError::NotAFile { .. } => {
                "list the admins, one line each: `PRINCIPAL KEY` (OpenSSH allowed_signers)"
                    .to_string()
            }
            TrustError::Unreadable { .. } => return None,
        })
    }
}

/// The admins' `allowed_signers`, read from a file that only its owner can
/// change.
#[derive(Debug, Clone)]
pub struct TrustRoot {
    path: PathBuf,
    source: TrustSource,
    signers: AllowedSigners,
}

impl TrustRoot {
    /// The trust root from `--trust` (when given), `MESHSEAL_TRUST`, or the
    /// default path; `Ok(None)` when none is configured.
    pub fn locate(flag: Option<&Path>) -> Result<Option<TrustRoot>, TrustError> {
        let env = std::env::var_os(TRUST_ENV);
        TrustRoot::locate_from(flag, env.as_deref(), default_path().as_deref())
    }

    /// [`locate`](Self::locate) with the environment value and the default
    /// path given. An empty environment value counts as unset.
    pub fn locate_from(
        flag: Option<&Path>,
        env: Option<&OsStr>,
        default: Option<&Path>,
    ) -> Result<Option<TrustRoot>, TrustError> {
        if let Some(path) = flag {
            return TrustRoot::load_from(path, TrustSource::Flag).map(Some);
        }
        if let Some(path) = env.filter(|v| !v.is_empty()) {
            return TrustRoot::load_from(Path::new(path), TrustSource::Env).map(Some);
        }
        let Some(path) = default else {
            return Ok(None);
        };
        // Only nothing at all is "none": a dangling link or an unreadable
        // file there is a trust root that failed, not a missing one.
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            _ => TrustRoot::load_from(path, TrustSource::Default).map(Some),
        }
    }

    /// Loads `path`, which must exist.
    pub fn load(path: &Path) -> Result<TrustRoot, TrustError> {
        TrustRoot::load_from(path, TrustSource::Flag)
    }

    fn load_from(path: &Path, source: TrustSource) -> Result<TrustRoot, TrustError> {
        let text = read(path, source)?;
        let signers = AllowedSigners::parse(&text).map_err(|e| TrustError::Invalid {
            path: path.to_path_buf(),
            source: e,
        })?;
        if signers.is_empty() {
            return Err(TrustError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(TrustRoot {
            path: path.to_path_buf(),
            source,
            signers,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Who named the file.
    pub fn source(&self) -> TrustSource {
        self.source
    }

    /// The admins.
    pub fn signers(&self) -> &AllowedSigners {
        &self.signers
    }
}

fn read(path: &Path, source: TrustSource) -> Result<String, TrustError> {
    let unreadable = |e: io::Error| TrustError::Unreadable {
        path: path.to_path_buf(),
        source: e,
    };
    let file = match open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(TrustError::NotFound {
                path: path.to_path_buf(),
                source_of_path: source,
            })
        }
        Err(e) => return Err(unreadable(e)),
    };
    let meta = file.metadata().map_err(unreadable)?;
    let not_a_file = |reason| TrustError::NotAFile {
        path: path.to_path_buf(),
        reason,
    };
    if !meta.is_file() {
        return Err(not_a_file("not a regular file"));
    }
    check_permissions(path, &meta)?;
    let max = MAX_ALLOWED_SIGNERS_BYTES as u64;
    if meta.len() > max {
        return Err(not_a_file("too large"));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > max {
        return Err(not_a_file("too large"));
    }
    String::from_utf8(bytes).map_err(|_| not_a_file("not UTF-8 text"))
}

#[cfg(unix)]
fn open(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// The file (judged by the open handle) and the folders that could swap it:
/// the target's folder and, for a symlink, the link's folder.
#[cfg(unix)]
fn check_permissions(path: &Path, meta: &fs::Metadata) -> Result<(), TrustError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    let target = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if mode & 0o022 != 0 {
        return Err(TrustError::WritableFile { path: target, mode });
    }
    let mut folders = vec![crate::atomic::parent(&target).to_path_buf()];
    let given = crate::atomic::parent(path);
    if let Ok(given) = fs::canonicalize(given) {
        if !folders.contains(&given) {
            folders.push(given);
        }
    }
    for folder in folders {
        let meta = fs::metadata(&folder).map_err(|source| TrustError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(TrustError::WritableFolder {
                path: path.to_path_buf(),
                folder,
                mode,
            });
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path, _meta: &fs::Metadata) -> Result<(), TrustError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const ADMIN: &str = "admin@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti\n";

    fn chmod(p: &Path, mode: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn setup(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        let path = dir.path().join("trust.txt");
        fs::write(&path, text).unwrap();
        chmod(&path, 0o644);
        (dir, path)
    }

    #[test]
    fn a_readable_trust_root_loads() {
        let (_dir, path) = setup(ADMIN);
        let root = TrustRoot::locate_from(Some(&path), None, None)
            .unwrap()
            .unwrap();
        assert_eq!(root.signers().entries().len(), 1);
        assert_eq!(root.source(), TrustSource::Flag);
    }

    #[test]
    fn flag_then_env_then_default() {
        let (_d1, flag) = setup(ADMIN);
        let (_d2, env) = setup(ADMIN);
        let (_d3, default) = setup(ADMIN);
        let pick = |f: Option<&Path>, e: Option<&OsStr>| {
            TrustRoot::locate_from(f, e, Some(&default))
                .unwrap()
                .unwrap()
        };
        assert_eq!(pick(Some(&flag), Some(env.as_os_str())).path(), flag);
        let from_env = pick(None, Some(env.as_os_str()));
        assert_eq!(
            (from_env.path(), from_env.source()),
            (env.as_path(), TrustSource::Env)
        );
        assert_eq!(
            pick(None, Some(OsStr::new(""))).source(),
            TrustSource::Default
        );
    }

    #[test]
    fn a_missing_default_is_none_a_missing_named_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.txt");
        assert!(TrustRoot::locate_from(None, None, Some(&missing))
            .unwrap()
            .is_none());
        assert!(TrustRoot::locate_from(None, None, None).unwrap().is_none());
        let err = TrustRoot::locate_from(Some(&missing), None, None).unwrap_err();
        assert!(matches!(err, TrustError::NotFound { .. }), "{err}");
        assert_eq!(err.code(), "trust-missing");
        let err = TrustRoot::locate_from(None, Some(missing.as_os_str()), None).unwrap_err();
        assert!(err.hint().unwrap().contains(TRUST_ENV));
        // A dangling link at the default path is a broken trust root.
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink(&missing, &link).unwrap();
        assert!(TrustRoot::locate_from(None, None, Some(&link)).is_err());
    }

    #[test]
    fn writable_by_others_is_refused_with_chmod_hint() {
        let (dir, path) = setup(ADMIN);
        chmod(&path, 0o664);
        let err = TrustRoot::load(&path).unwrap_err();
        assert!(
            matches!(err, TrustError::WritableFile { mode: 0o664, .. }),
            "{err}"
        );
        assert_eq!(
            err.hint().unwrap(),
            format!(
                "run `chmod go-w {}`",
                fs::canonicalize(&path).unwrap().display()
            )
        );
        chmod(&path, 0o644);
        chmod(dir.path(), 0o777);
        let err = TrustRoot::load(&path).unwrap_err();
        assert!(
            matches!(err, TrustError::WritableFolder { mode: 0o777, .. }),
            "{err}"
        );
        assert_eq!(err.code(), "trust-permissions");
        chmod(dir.path(), 0o700);
    }

    #[test]
    fn a_link_from_a_writable_folder_is_refused() {
        let (_dir, path) = setup(ADMIN);
        let open = tempfile::tempdir().unwrap();
        chmod(open.path(), 0o777);
        let link = open.path().join("trust.txt");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(
            TrustRoot::load(&link),
            Err(TrustError::WritableFolder { .. })
        ));
        chmod(open.path(), 0o700);
    }

    #[test]
    fn a_bad_line_names_the_line_and_an_empty_file_is_refused() {
        let (_dir, path) = setup(&format!(
            "# admins\n{ADMIN}admin2 unknown-opt {}",
            &ADMIN[18..]
        ));
        let err = TrustRoot::load(&path).unwrap_err();
        assert_eq!(err.line(), Some(3));
        assert_eq!(err.code(), "invalid-trust");
        let (_dir, path) = setup("# nobody\n");
        assert!(matches!(
            TrustRoot::load(&path),
            Err(TrustError::Empty { .. })
        ));
    }
}
