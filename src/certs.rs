//! When the certificates the watcher serves expire (SPEC 8): a secret whose
//! data holds PEM certificates (a builtin or provided CA, a gateway's TLS
//! certificate, a client certificate...) expires with the earliest
//! `notAfter` among them.
//!
//! Parsing certificates is the cost, so it happens once per published
//! index generation, and then only for secrets whose file changed: an
//! [`ExpiryCache`] keeps each secret version's expiry by the sha256 of its
//! ciphertext file, and the expiries of the last generation it saw. A scrape
//! of `/metrics` only subtracts the clock. The first time a certificate
//! version is seen within the warning threshold (30 days unless told), or
//! expired, a warning is logged, once per version.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::pem::Pem;

use crate::index::Index;
use crate::scope::SecretId;

/// How many days before expiry a certificate is warned about, unless told.
pub const DEFAULT_WARN_DAYS: u64 = 30;

/// The same as a duration.
pub const DEFAULT_WARN_WITHIN: Duration = Duration::from_secs(DEFAULT_WARN_DAYS * 24 * 60 * 60);

/// The most PEM blocks read from one secret (a CA bundle has a few).
const MAX_BLOCKS: usize = 64;

/// One certificate of a secret, as far as expiry is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// Its subject, as X.509 prints it (`CN=edge, O=Example`); empty when
    /// it has none.
    pub subject: String,
    /// Its `notAfter`, in Unix seconds.
    pub not_after: i64,
}

/// The PEM certificates in `data` (a certificate, a chain, a CA bundle, a
/// combined key and certificate), in order; blocks that do not parse are
/// skipped. Empty when it holds none.
pub fn certificates(data: &[u8]) -> Vec<Certificate> {
    // Most secrets are no PEM at all: one scan for the marker first.
    const MARKER: &[u8] = b"-----BEGIN CERTIFICATE-----";
    if !data.windows(MARKER.len()).any(|w| w == MARKER) {
        return Vec::new();
    }
    Pem::iter_from_buffer(data)
        .take(MAX_BLOCKS)
        .map_while(Result::ok)
        .filter(|pem| pem.label == "CERTIFICATE")
        .filter_map(|pem| {
            pem.parse_x509().ok().map(|cert| Certificate {
                subject: cert.subject().to_string(),
                not_after: cert.validity().not_after.timestamp(),
            })
        })
        .collect()
}

/// The earliest `notAfter` (Unix seconds) of the PEM certificates in
/// `data`; `None` when it holds none (or none that parses).
pub fn not_after(data: &[u8]) -> Option<i64> {
    certificates(data).iter().map(|c| c.not_after).min()
}

/// `not_after` (Unix seconds) in RFC 3339 (`2030-01-31T12:00:00Z`); empty
/// when out of range.
pub fn rfc3339(not_after: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(not_after)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// One served certificate's expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    /// The secret.
    pub id: SecretId,
    /// The earliest `notAfter` of its certificates, in Unix seconds.
    pub not_after: i64,
}

impl Expiry {
    /// Seconds from `now` (Unix seconds) until it expires; negative once
    /// expired.
    pub fn seconds_left(&self, now: i64) -> i64 {
        self.not_after - now
    }
}

/// The current time in Unix seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What the cache knows.
#[derive(Default)]
struct State {
    /// The generation the expiries are of (a weak handle: no index is kept
    /// alive, and a new generation is a new allocation).
    index: Weak<Index>,
    /// Its expiries, sorted by secret.
    expiries: Arc<Vec<Expiry>>,
    /// Each secret version's expiry (by its file's sha256), parsed once,
    /// with the pass that last saw it served. Updated in place: rebuilding
    /// it (a `BTreeMap` of every version) each generation, on the API's
    /// thread, held a one-file reload at 100,000 secrets 65–77 ms after
    /// the debounce window (3–5 ms since).
    by_file: HashMap<[u8; 32], (Option<i64>, u64)>,
    /// How many generations were computed.
    pass: u64,
    /// The versions already warned about.
    warned: BTreeSet<[u8; 32]>,
}

/// The expiries of the certificates an index serves, computed once per
/// generation (see the module's text).
pub struct ExpiryCache {
    warn_within: Duration,
    state: Mutex<State>,
}

impl Default for ExpiryCache {
    fn default() -> Self {
        ExpiryCache::new(DEFAULT_WARN_WITHIN)
    }
}

impl ExpiryCache {
    /// A cache that warns about certificates expiring within `warn_within`.
    pub fn new(warn_within: Duration) -> ExpiryCache {
        ExpiryCache {
            warn_within,
            state: Mutex::new(State::default()),
        }
    }

    /// The expiries of `index`'s certificates: the cached ones when `index`
    /// is the generation last seen, else computed (parsing only secret
    /// versions not seen before) and warned about.
    pub fn expiries(&self, index: &Arc<Index>) -> Arc<Vec<Expiry>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if Weak::ptr_eq(&state.index, &Arc::downgrade(index)) {
            return state.expiries.clone();
        }
        state.pass += 1;
        let pass = state.pass;
        let mut expiries = Vec::new();
        let mut certificates = Vec::new();
        for secret in index.secrets() {
            let sha = secret.file_sha256;
            let (expiry, seen) = state
                .by_file
                .entry(sha)
                .or_insert_with(|| (not_after(secret.doc.data.expose()), pass));
            *seen = pass;
            if let Some(not_after) = *expiry {
                expiries.push(Expiry {
                    id: secret.doc.id.clone(),
                    not_after,
                });
                certificates.push((sha, expiries.len() - 1));
            }
        }
        let now = unix_now();
        let within = self.warn_within.as_secs() as i64;
        for (sha, i) in certificates {
            let e = &expiries[i];
            if e.seconds_left(now) < within && state.warned.insert(sha) {
                warn(e, now);
            }
        }
        // Versions no longer served are forgotten.
        state.by_file.retain(|_, (_, seen)| *seen == pass);
        let State {
            by_file, warned, ..
        } = &mut *state;
        warned.retain(|sha| by_file.contains_key(sha));
        state.expiries = Arc::new(expiries);
        state.index = Arc::downgrade(index);
        state.expiries.clone()
    }
}

fn warn(e: &Expiry, now: i64) {
    let left = e.seconds_left(now);
    let file = e.id.path().display().to_string();
    let when = rfc3339(e.not_after);
    let message = if left < 0 {
        "certificate has expired"
    } else {
        "certificate expires soon"
    };
    let days = left / 86_400;
    match e.id.scope.mesh_name() {
        Some(mesh) => tracing::warn!(
            mesh,
            name = %e.id.name,
            file = %file,
            not_after = %when,
            days_left = days,
            "{message}"
        ),
        None => tracing::warn!(
            name = %e.id.name,
            file = %file,
            not_after = %when,
            days_left = days,
            "{message}"
        ),
    }
}

/// The cache the watcher's `/metrics` uses: one per process, as there is
/// one watcher.
pub fn served() -> &'static ExpiryCache {
    static CACHE: std::sync::OnceLock<ExpiryCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(ExpiryCache::default)
}

/// Follows the published generations: each one's expiries are computed
/// (and warned about) when it is published, not at the next scrape. The
/// watcher runs this beside its API: `tokio::spawn(certs::follow(live,
/// publisher.changes.subscribe()))`. It ends when the publisher is gone.
///
/// The work (a look at every served secret) runs on the runtime's blocking
/// pool, not on the thread that answers the API and SDS.
pub async fn follow(live: Arc<crate::index::Live>, mut changes: tokio::sync::watch::Receiver<u64>) {
    loop {
        let index = live.load_full();
        let computed = tokio::task::spawn_blocking(move || {
            served().expiries(&index);
        });
        if computed.await.is_err() {
            return;
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// The `meshseal_certificate_expiry_seconds` gauge in Prometheus' text
/// format: one sample per certificate-holding secret, labelled by `mesh`
/// (empty for a global secret, which Prometheus reads as absent) and
/// `name`, the seconds left at `now`.
pub fn render(expiries: &[Expiry], now: i64) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let name = "meshseal_certificate_expiry_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Seconds until the earliest notAfter of the PEM certificates in a served secret (negative once expired)."
    );
    let _ = writeln!(out, "# TYPE {name} gauge");
    for e in expiries {
        let mesh = e.id.scope.mesh_name().unwrap_or("");
        let _ = writeln!(
            out,
            "{name}{{mesh=\"{mesh}\",name=\"{}\"}} {}",
            e.id.name,
            e.seconds_left(now)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::document::{Document, SecretData};
    use crate::identity::Identities;
    use crate::recipients::Recipient;
    use crate::scope::Scope;
    use crate::store::Store;

    fn cert_pem(days: i64) -> String {
        let mut params = rcgen::CertificateParams::new(vec!["a.example".to_string()]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(days);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    /// A store (mesh `default` and global) and its key.
    fn store() -> (tempfile::TempDir, Store, Identities) {
        let dir = tempfile::tempdir().unwrap();
        let (text, public) = crate::identity::generate();
        let ids = Identities::from_age_text(&text).unwrap();
        let recipient: Recipient = public.parse().unwrap();
        let (store, _) = crate::init::init(dir.path(), &[recipient]).unwrap();
        (dir, store, ids)
    }

    fn put(store: &Store, scope: Scope, name: &str, data: &[u8]) {
        let id = SecretId::new(scope, name).unwrap();
        store
            .put(&Document::new(id, SecretData::new(data.to_vec())), None)
            .unwrap();
    }

    fn mesh() -> Scope {
        Scope::Mesh("default".into())
    }

    #[test]
    fn the_earliest_certificate_of_a_bundle_decides() {
        let soon = cert_pem(3);
        let late = cert_pem(400);
        let bundle = format!("{late}{soon}");
        let t = not_after(bundle.as_bytes()).unwrap();
        let left = t - unix_now();
        assert!((2 * 86_400..4 * 86_400).contains(&left), "{left}");
        assert_eq!(not_after(b"hunter2"), None);
        assert_eq!(
            not_after(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"),
            None
        );
        // A key before the certificate (a combined PEM file) is skipped.
        let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        assert!(not_after(format!("{key}{late}").as_bytes()).is_some());
        let both = certificates(bundle.as_bytes());
        assert_eq!(both.len(), 2);
        assert_eq!(both[0].subject, "CN=rcgen self signed cert");
        assert!(
            both[0].not_after > both[1].not_after,
            "in the bundle's order"
        );
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn computed_once_per_generation_and_rendered_per_scrape() {
        let (_dir, store, ids) = store();
        let soon = cert_pem(10);
        put(&store, mesh(), "edge-cert", soon.as_bytes());
        put(&store, mesh(), "db-password", b"hunter2");
        put(&store, Scope::Global, "ca", cert_pem(100).as_bytes());
        let index = Arc::new(Index::load(&store, &ids).unwrap());
        let cache = ExpiryCache::default();
        let first = cache.expiries(&index);
        assert_eq!(first.len(), 2, "{first:?}");
        let again = cache.expiries(&index);
        assert!(
            Arc::ptr_eq(&first, &again),
            "the same generation is not computed again"
        );
        let text = render(&first, unix_now());
        assert!(text.contains("# TYPE meshseal_certificate_expiry_seconds gauge"));
        let line = text
            .lines()
            .find(|l| {
                l.starts_with(
                    "meshseal_certificate_expiry_seconds{mesh=\"default\",name=\"edge-cert\"} ",
                )
            })
            .unwrap_or_else(|| panic!("{text}"));
        let left: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((9 * 86_400..11 * 86_400).contains(&left), "{left}");
        assert!(text.contains("{mesh=\"\",name=\"ca\"}"), "{text}");
        assert!(!text.contains("db-password"));
        // A new generation is computed again, and lists only what it serves.
        crate::atomic::remove(&store.root().join("global/secrets/ca.age")).unwrap();
        let next = Arc::new(Index::load(&store, &ids).unwrap());
        let second = cache.expiries(&next);
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].id.name, "edge-cert");
        assert_eq!(
            cache.state.lock().unwrap().by_file.len(),
            2,
            "what is no longer served is forgotten"
        );
    }

    #[test]
    fn a_version_is_warned_about_once() {
        let (_dir, store, ids) = store();
        put(&store, mesh(), "edge-cert", cert_pem(5).as_bytes());
        let index = Arc::new(Index::load(&store, &ids).unwrap());
        let cache = ExpiryCache::new(Duration::from_secs(30 * 86_400));
        cache.expiries(&index);
        assert_eq!(cache.state.lock().unwrap().warned.len(), 1);
        let relaxed = ExpiryCache::new(Duration::from_secs(86_400));
        relaxed.expiries(&index);
        assert!(
            relaxed.state.lock().unwrap().warned.is_empty(),
            "5 days left, a 1-day threshold"
        );
    }
}
