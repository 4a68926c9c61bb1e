//! `--audit FILE`: one JSON line per request for secrets or policies (which
//! carry secret data), allowed or not: when, which token (a prefix of its
//! sha256, never the token), its scope, the resource and the result. Never
//! data.
//!
//! The file is opened once, append-only, mode 0600, never through a link;
//! each line is one `write` to an `O_APPEND` descriptor, so lines from
//! concurrent requests never interleave.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;
use thiserror::Error;
use tracing::warn;

use crate::problem::Diagnostic;

/// The audit file could not be opened.
#[derive(Debug, Error)]
#[error("cannot open the audit file: {source}")]
pub struct AuditError {
    /// The file.
    pub file: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

impl Diagnostic for AuditError {
    fn code(&self) -> &'static str {
        "audit"
    }

    fn hint(&self) -> Option<String> {
        Some(
            "--audit names a file the watcher may create or append to; it must not be a symlink"
                .to_string(),
        )
    }

    fn file(&self) -> Option<&Path> {
        Some(&self.file)
    }
}

/// One audited request.
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    /// RFC 3339, UTC.
    pub time: String,
    /// `sha256:` and the first 16 hex digits of the presented token's
    /// digest; absent when no token was presented.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The token's scope, when it is a known token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The request path.
    pub resource: &'a str,
    /// The HTTP status answered.
    pub status: u16,
    /// `allowed` (2xx), `denied` (401, 403) or `failed` (anything else).
    pub result: &'static str,
}

/// The audit log.
#[derive(Debug)]
pub struct Audit {
    file: PathBuf,
    out: Mutex<File>,
}

impl Audit {
    /// Opens (or creates, 0600) the audit file for appending.
    pub fn open(path: &Path) -> Result<Audit, AuditError> {
        let out = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| AuditError {
                file: path.to_path_buf(),
                source,
            })?;
        Ok(Audit {
            file: path.to_path_buf(),
            out: Mutex::new(out),
        })
    }

    /// Appends one record; a failed write is logged, never fatal.
    pub fn record(&self, record: &Record<'_>) {
        let mut line = match serde_json::to_vec(record) {
            Ok(l) => l,
            Err(_) => return,
        };
        line.push(b'\n');
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = out.write_all(&line) {
            warn!(file = %self.file.display(), error = %e, "cannot write the audit log");
        }
    }
}

/// The result word of a status.
pub fn result_of(status: u16) -> &'static str {
    match status {
        200..=299 => "allowed",
        401 | 403 => "denied",
        _ => "failed",
    }
}

/// Now, as RFC 3339.
pub fn now() -> String {
    time::OffsetDateTime::from(SystemTime::now())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_json_lines_without_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::open(&path).unwrap();
        for status in [200, 403] {
            audit.record(&Record {
                time: now(),
                token: Some("sha256:0123456789abcdef".into()),
                scope: Some("mesh:payments".into()),
                resource: "/meshes/payments/secrets/db",
                status,
                result: result_of(status),
            });
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["result"], "allowed");
        assert_eq!(lines[1]["result"], "denied");
        assert_eq!(lines[1]["scope"], "mesh:payments");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_symlinked_audit_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, b"").unwrap();
        let link = dir.path().join("audit.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(Audit::open(&link).is_err());
    }
}
