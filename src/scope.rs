//! Names and scopes: which mesh (or the global scope) a secret belongs to, what
//! names are valid, and where each secret lives in a store.
//!
//! The path of a secret *is* its identity: `meshes/<mesh>/secrets/<name>.age` is
//! the Secret `name` of mesh `mesh`, `global/secrets/<name>.age` the GlobalSecret
//! `name`. Every load checks the decrypted document against the identity its
//! path gives (see `document::Document::bind`), so a ciphertext that is moved or
//! renamed stops loading. The validation texts follow Kuma's (and Kubernetes')
//! so that users see the messages they already know.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use thiserror::Error;

use crate::problem::Diagnostic;

/// Longest secret name: an RFC 1123 subdomain.
pub const MAX_NAME_LEN: usize = 253;
/// Longest mesh name we accept (Kubernetes label values are 63; Kuma allows more
/// on Universal, so we stop at the subdomain limit).
pub const MAX_MESH_LEN: usize = 253;
/// The mesh kumactl uses when `-m` is not given.
pub const DEFAULT_MESH: &str = "default";
/// Extension of secret files.
pub const SECRET_EXT: &str = "age";
/// Longest name kept in one file name: `<name>.age.sig` must fit the file
/// system's 255-byte limit (SPEC 2).
pub const MAX_FLAT_NAME_LEN: usize = 255 - ".age.sig".len();
/// A longer name is split: `secrets/<its first 128 characters>/<the rest>.age`.
pub const LONG_NAME_DIR_LEN: usize = 128;

const RFC1123_MESSAGE: &str = "invalid characters. A lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/// Why a name or mesh name is invalid. Texts follow Kuma's validators.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    /// The name is empty.
    #[error("name: cannot be empty")]
    EmptyName,
    /// The name is longer than 253 characters.
    #[error("name: must be no more than {MAX_NAME_LEN} characters")]
    NameTooLong,
    /// The name is not a lowercase RFC 1123 subdomain.
    #[error("name: {RFC1123_MESSAGE}")]
    InvalidName,
    /// The mesh name is empty.
    #[error("mesh: cannot be empty")]
    EmptyMesh,
    /// The mesh name is too long.
    #[error("mesh: must be no more than {MAX_MESH_LEN} characters")]
    MeshTooLong,
    /// The mesh name has characters outside `[0-9a-z-_.]`, or is `.`/`..`-like.
    #[error("mesh: invalid characters: must consist of lower case alphanumeric characters, '-', '_' or '.', and must not start with '.'")]
    InvalidMesh,
}

impl Diagnostic for NameError {
    fn code(&self) -> &'static str {
        match self {
            NameError::EmptyName | NameError::NameTooLong | NameError::InvalidName => {
                "invalid-name"
            }
            NameError::EmptyMesh | NameError::MeshTooLong | NameError::InvalidMesh => {
                "invalid-mesh"
            }
        }
    }
}

/// Checks a secret name: a lowercase RFC 1123 subdomain of at most 253 characters.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::EmptyName);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::NameTooLong);
    }
    let label_ok = |label: &str| {
        let b = label.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    };
    if name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(NameError::InvalidName)
    }
}

/// Checks a mesh name: non-empty, `[0-9a-z-_.]`, not starting with `.` (which
/// would make `.` and `..` path components possible).
pub fn validate_mesh(mesh: &str) -> Result<(), NameError> {
    if mesh.is_empty() {
        return Err(NameError::EmptyMesh);
    }
    if mesh.len() > MAX_MESH_LEN {
        return Err(NameError::MeshTooLong);
    }
    let chars_ok = mesh
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.'));
    if chars_ok && !mesh.starts_with('.') {
        Ok(())
    } else {
        Err(NameError::InvalidMesh)
    }
}

/// Where a secret belongs: one mesh, or the whole installation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Global-scoped: for internal use, never usable by mesh policies.
    Global,
    /// Mesh-scoped: usable by the policies of this mesh only.
    Mesh(String),
}

impl Scope {
    /// A mesh scope, validating the mesh name.
    pub fn mesh(mesh: &str) -> Result<Self, NameError> {
        validate_mesh(mesh)?;
        Ok(Scope::Mesh(mesh.to_string()))
    }

    /// The Kuma resource type of secrets in this scope.
    pub fn resource_type(&self) -> &'static str {
        match self {
            Scope::Global => "GlobalSecret",
            Scope::Mesh(_) => "Secret",
        }
    }

    /// The mesh, for mesh scopes.
    pub fn mesh_name(&self) -> Option<&str> {
        match self {
            Scope::Global => None,
            Scope::Mesh(m) => Some(m),
        }
    }

    /// The scope's directory relative to the store root.
    pub fn dir(&self) -> PathBuf {
        match self {
            Scope::Global => PathBuf::from("global"),
            Scope::Mesh(m) => Path::new("meshes").join(m),
        }
    }

    /// The scope's recipients file relative to the store root.
    pub fn recipients_path(&self) -> PathBuf {
        self.dir().join("recipients.txt")
    }

    /// The scope's `writers.txt` relative to the store root (SPEC 9).
    pub fn writers_path(&self) -> PathBuf {
        self.dir().join("writers.txt")
    }

    /// One of the scope's signed files relative to the store root.
    pub fn file_path(&self, file: ScopeFile) -> PathBuf {
        match file {
            ScopeFile::Recipients => self.recipients_path(),
            ScopeFile::Writers => self.writers_path(),
        }
    }

    /// The admin signature of one of the scope's files.
    pub fn sig_path(&self, file: ScopeFile) -> PathBuf {
        sig_path(&self.file_path(file))
    }

    /// The scope's secrets folder relative to the store root.
    pub fn secrets_dir(&self) -> PathBuf {
        self.dir().join("secrets")
    }

    /// The compact form used in header metadata: `global` or `mesh:<mesh>`.
    pub fn to_tag(&self) -> String {
        match self {
            Scope::Global => "global".to_string(),
            Scope::Mesh(m) => format!("mesh:{m}"),
        }
    }

    /// Parses [`Scope::to_tag`]'s output.
    pub fn from_tag(tag: &str) -> Option<Self> {
        if tag == "global" {
            return Some(Scope::Global);
        }
        let mesh = tag.strip_prefix("mesh:")?;
        Scope::mesh(mesh).ok()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Global => f.write_str("global"),
            Scope::Mesh(m) => write!(f, "mesh \"{m}\""),
        }
    }
}

/// The identity of one secret: its scope and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretId {
    /// Global or one mesh.
    pub scope: Scope,
    /// The secret's name (valid RFC 1123 subdomain).
    pub name: String,
}

impl SecretId {
    /// A validated secret identity.
    pub fn new(scope: Scope, name: &str) -> Result<Self, NameError> {
        validate_name(name)?;
        if let Scope::Mesh(m) = &scope {
            validate_mesh(m)?;
        }
        Ok(SecretId {
            scope,
            name: name.to_string(),
        })
    }

    /// The file of this secret relative to the store root:
    /// `secrets/<name>.age`, or for a name too long for one file name
    /// (over [`MAX_FLAT_NAME_LEN`]) `secrets/<first 128>/<rest>.age`.
    pub fn path(&self) -> PathBuf {
        let dir = self.scope.secrets_dir();
        if self.name.len() > MAX_FLAT_NAME_LEN {
            // Names are ASCII: any byte index is a character boundary.
            let (head, tail) = self.name.split_at(LONG_NAME_DIR_LEN);
            dir.join(head).join(format!("{tail}.{SECRET_EXT}"))
        } else {
            dir.join(format!("{}.{SECRET_EXT}", self.name))
        }
    }

    /// The writer's signature of the secret's file: `<name>.age.sig`.
    pub fn sig_path(&self) -> PathBuf {
        sig_path(&self.path())
    }

    /// Kuma's wording for the resource, as used in `resource not found` and
    /// `resource already exists` messages.
    pub fn kuma_ref(&self) -> String {
        match &self.scope {
            Scope::Global => format!("type=\"GlobalSecret\" name=\"{}\"", self.name),
            Scope::Mesh(m) => format!("type=\"Secret\" name=\"{}\" mesh=\"{m}\"", self.name),
        }
    }
}

impl fmt::Display for SecretId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            Scope::Global => write!(f, "global secret \"{}\"", self.name),
            Scope::Mesh(m) => write!(f, "secret \"{}\" of mesh \"{m}\"", self.name),
        }
    }
}

/// What a path relative to the store root is, by the store layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorePath {
    /// `…/secrets/<name>.age` with a valid scope and name.
    Secret(SecretId),
    /// A file in a `secrets/` folder that is not a validly named `.age` file.
    StraySecret {
        /// The scope whose secrets folder holds it.
        scope: Scope,
        /// Why it is not a secret.
        reason: StrayReason,
    },
    /// `global/recipients.txt` or `meshes/<m>/recipients.txt`.
    Recipients(Scope),
    /// `…/secrets/<first 128 characters>`: the folder of names too long
    /// for one file name (see [`SecretId::path`]).
    LongNameDir(Scope),
    /// `…/secrets/<name>.age.sig`: a writer's signature of the secret (SPEC 9).
    SecretSig(SecretId),
    /// `writers.txt`: who may sign the scope's secrets.
    Writers(Scope),
    /// `recipients.txt.sig` or `writers.txt.sig`: an admin's signature.
    ScopeSig(Scope, ScopeFile),
    /// `meshes/<m>/mesh.yaml` or `meshes/<m>/mesh.toml`.
    Mesh(String),
    /// `meshes/<m>/policies/<name>.yaml`, `.yml` or `.toml`.
    Policy {
        /// The mesh.
        mesh: String,
        /// The file stem.
        name: String,
    },
    /// `meshes/<m>` whose name is not a valid mesh name.
    BadMeshDir(NameError),
    /// Anything else under `meshes/` or `global/`.
    Unexpected,
}

/// A scope's files that admins sign (SPEC 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScopeFile {
    /// `recipients.txt`: who can read the scope's secrets.
    Recipients,
    /// `writers.txt`: who may sign the scope's secrets.
    Writers,
}

impl ScopeFile {
    /// The word in the file's header line and in reason codes.
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeFile::Recipients => "recipients",
            ScopeFile::Writers => "writers",
        }
    }
}

/// `<file>.sig`, the detached signature beside a file.
pub fn sig_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_os_string();
    name.push(".sig");
    PathBuf::from(name)
}

/// Why a file in a `secrets/` folder is not a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrayReason {
    /// The file does not end in `.age`.
    NotAge,
    /// The file stem is not a valid secret name.
    BadName(NameError),
    /// A valid name at another path than its own (a long name kept flat,
    /// or a short one in a long-name folder); its path is given.
    NotCanonical(PathBuf),
}

impl StorePath {
    /// Classifies a path relative to the store root (separators of this OS).
    pub fn classify(rel: &Path) -> StorePath {
        let parts: Vec<&str> = match rel
            .components()
            .map(|c| match c {
                Component::Normal(s) => s.to_str(),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
        {
            Some(p) => p,
            None => return StorePath::Unexpected,
        };
        match parts.as_slice() {
            ["global", file] => Self::scope_file(Scope::Global, file),
            ["global", "secrets", file] => Self::secret_file(Scope::Global, None, file),
            ["global", "secrets", dir, file] => Self::secret_file(Scope::Global, Some(dir), file),
            ["meshes", mesh, rest @ ..] if !rest.is_empty() => {
                let scope = match Scope::mesh(mesh) {
                    Ok(s) => s,
                    Err(e) => return StorePath::BadMeshDir(e),
                };
                match rest {
                    [file @ ("recipients.txt" | "writers.txt" | "recipients.txt.sig"
                    | "writers.txt.sig")] => Self::scope_file(scope, file),
                    ["mesh.yaml" | "mesh.toml"] => StorePath::Mesh(mesh.to_string()),
                    ["secrets", file] => Self::secret_file(scope, None, file),
                    ["secrets", dir, file] => Self::secret_file(scope, Some(dir), file),
                    ["policies", file] => match [".yaml", ".yml", ".toml"]
                        .iter()
                        .find_map(|x| file.strip_suffix(x))
                    {
                        Some(stem) => StorePath::Policy {
                            mesh: mesh.to_string(),
                            name: stem.to_string(),
                        },
                        None => StorePath::Unexpected,
                    },
                    _ => StorePath::Unexpected,
                }
            }
            _ => StorePath::Unexpected,
        }
    }

    fn scope_file(scope: Scope, file: &str) -> StorePath {
        match file {
            "recipients.txt" => StorePath::Recipients(scope),
            "writers.txt" => StorePath::Writers(scope),
            "recipients.txt.sig" => StorePath::ScopeSig(scope, ScopeFile::Recipients),
            "writers.txt.sig" => StorePath::ScopeSig(scope, ScopeFile::Writers),
            _ => StorePath::Unexpected,
        }
    }

    /// A file in a secrets folder, `dir` the long-name folder it is in.
    fn secret_file(scope: Scope, dir: Option<&str>, file: &str) -> StorePath {
        let stray = |reason| StorePath::StraySecret {
            scope: scope.clone(),
            reason,
        };
        if dir.is_none() && is_long_name_dir(file) {
            return StorePath::LongNameDir(scope);
        }
        if dir.is_some_and(|d| !is_long_name_dir(d)) {
            return StorePath::Unexpected;
        }
        let name = |stem: &str| format!("{}{stem}", dir.unwrap_or(""));
        // One path per name: long names only split, short ones only flat.
        let canonical = |name: &str| (name.len() > MAX_FLAT_NAME_LEN) == dir.is_some();
        if let Some(stem) = file.strip_suffix(".age.sig") {
            let name = name(stem);
            if let Ok(id) = SecretId::new(scope.clone(), &name) {
                if canonical(&name) {
                    return StorePath::SecretSig(id);
                }
            }
        }
        let Some(stem) = file.strip_suffix(".age") else {
            return stray(StrayReason::NotAge);
        };
        let name = name(stem);
        match SecretId::new(scope.clone(), &name) {
            Ok(id) if canonical(&name) => StorePath::Secret(id),
            Ok(id) => stray(StrayReason::NotCanonical(id.path())),
            Err(e) => stray(StrayReason::BadName(e)),
        }
    }
}

/// Whether a name in a secrets folder is a long-name folder: exactly
/// [`LONG_NAME_DIR_LEN`] characters that can begin a secret name.
fn is_long_name_dir(name: &str) -> bool {
    name.len() == LONG_NAME_DIR_LEN
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1123_names() {
        for ok in ["a", "db-password", "a.b", "x1", "1x", &"a".repeat(253)] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_name(""), Err(NameError::EmptyName));
        assert_eq!(validate_name(&"a".repeat(254)), Err(NameError::NameTooLong));
        for bad in [
            "A", "-a", "a-", "a..b", ".a", "a_b", "a/b", "..", "a b", "é",
        ] {
            assert_eq!(validate_name(bad), Err(NameError::InvalidName), "{bad}");
        }
    }

    #[test]
    fn mesh_names() {
        for ok in ["default", "pay_ments", "a.b", "a-", "0"] {
            assert_eq!(validate_mesh(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_mesh(""), Err(NameError::EmptyMesh));
        for bad in [".", "..", ".hidden", "A", "a/b", "a b"] {
            assert_eq!(validate_mesh(bad), Err(NameError::InvalidMesh), "{bad}");
        }
    }

    #[test]
    fn kuma_texts() {
        assert_eq!(NameError::EmptyName.to_string(), "name: cannot be empty");
        assert!(NameError::InvalidName.to_string().starts_with(
            "name: invalid characters. A lowercase RFC 1123 subdomain must consist of"
        ));
    }

    #[test]
    fn classify_paths() {
        let id = |s: Scope, n: &str| StorePath::Secret(SecretId::new(s, n).unwrap());
        assert_eq!(
            StorePath::classify(Path::new("meshes/pay/secrets/db.age")),
            id(Scope::Mesh("pay".into()), "db")
        );
        assert_eq!(
            StorePath::classify(Path::new("global/secrets/ca.age")),
            id(Scope::Global, "ca")
        );
        assert!(matches!(
            StorePath::classify(Path::new("global/secrets/ca.txt")),
            StorePath::StraySecret {
                reason: StrayReason::NotAge,
                ..
            }
        ));
        assert!(matches!(
            StorePath::classify(Path::new("global/secrets/Bad.age")),
            StorePath::StraySecret {
                reason: StrayReason::BadName(_),
                ..
            }
        ));
        assert_eq!(
            StorePath::classify(Path::new("meshes/pay/recipients.txt")),
            StorePath::Recipients(Scope::Mesh("pay".into()))
        );
        assert!(matches!(
            StorePath::classify(Path::new("meshes/Pay/secrets/x.age")),
            StorePath::BadMeshDir(_)
        ));
        assert_eq!(
            StorePath::classify(Path::new("meshes/pay/notes.md")),
            StorePath::Unexpected
        );
        assert_eq!(
            StorePath::classify(Path::new("../x")),
            StorePath::Unexpected
        );
    }

    #[test]
    fn paths_round_trip() {
        let id = SecretId::new(Scope::Mesh("pay".into()), "db").unwrap();
        assert_eq!(
            StorePath::classify(&id.path()),
            StorePath::Secret(id.clone())
        );
        assert_eq!(Scope::from_tag("mesh:pay"), Some(Scope::Mesh("pay".into())));
        assert_eq!(Scope::from_tag("global"), Some(Scope::Global));
        assert_eq!(Scope::from_tag("mesh:.."), None);
        assert_eq!(
            StorePath::classify(&id.sig_path()),
            StorePath::SecretSig(id.clone())
        );
        let scope = Scope::Mesh("pay".into());
        assert_eq!(
            StorePath::classify(&scope.writers_path()),
            StorePath::Writers(scope.clone())
        );
        for file in [ScopeFile::Recipients, ScopeFile::Writers] {
            assert_eq!(
                StorePath::classify(&scope.sig_path(file)),
                StorePath::ScopeSig(scope.clone(), file)
            );
            assert_eq!(
                StorePath::classify(&Scope::Global.sig_path(file)),
                StorePath::ScopeSig(Scope::Global, file)
            );
        }
        assert_eq!(
            StorePath::classify(Path::new("global/other.txt")),
            StorePath::Unexpected
        );
    }

    #[test]
    fn the_longest_names_split_into_a_folder_and_round_trip() {
        for len in [MAX_FLAT_NAME_LEN, MAX_FLAT_NAME_LEN + 1, MAX_NAME_LEN] {
            for name in [
                "a".repeat(len),
                format!(
                    "{}.{}",
                    "a".repeat(LONG_NAME_DIR_LEN - 1),
                    "b".repeat(len - LONG_NAME_DIR_LEN)
                ),
            ] {
                assert_eq!(name.len(), len);
                for scope in [Scope::Global, Scope::Mesh("m".into())] {
                    let id = SecretId::new(scope, &name).unwrap();
                    let path = id.path();
                    for c in path.components() {
                        assert!(c.as_os_str().len() + 4 <= 255, "{path:?}");
                    }
                    assert_eq!(StorePath::classify(&path), StorePath::Secret(id.clone()));
                    assert_eq!(
                        StorePath::classify(&id.sig_path()),
                        StorePath::SecretSig(id.clone())
                    );
                    assert_eq!(
                        path.components().count(),
                        if len > MAX_FLAT_NAME_LEN { 5 } else { 4 }
                            - usize::from(id.scope == Scope::Global)
                    );
                    if len > MAX_FLAT_NAME_LEN {
                        let dir = path.parent().unwrap();
                        assert_eq!(
                            StorePath::classify(dir),
                            StorePath::LongNameDir(id.scope.clone())
                        );
                        // The same name kept flat is not its file.
                        let flat = id.scope.secrets_dir().join(format!("{name}.age"));
                        assert!(matches!(
                            StorePath::classify(&flat),
                            StorePath::StraySecret {
                                reason: StrayReason::NotCanonical(_),
                                ..
                            }
                        ));
                    }
                }
            }
        }
        // A short name in a long-name folder is not a secret either.
        let dir = "a".repeat(LONG_NAME_DIR_LEN);
        assert!(matches!(
            StorePath::classify(Path::new(&format!("global/secrets/{dir}/b.age"))),
            StorePath::StraySecret {
                reason: StrayReason::NotCanonical(_),
                ..
            }
        ));
        assert_eq!(
            StorePath::classify(Path::new("global/secrets/short/b.age")),
            StorePath::Unexpected
        );
    }
}
