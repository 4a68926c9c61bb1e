//! Counters of the SDS server, as plain numbers for `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, shared by every stream of every SDS listener that was
/// given the same [`super::SdsState`].
#[derive(Debug, Default)]
pub struct SdsMetrics {
    open_streams: AtomicU64,
    streams: AtomicU64,
    pushes: AtomicU64,
    acks: AtomicU64,
    nacks: AtomicU64,
    refused_versions: AtomicU64,
    denied: AtomicU64,
}

/// One reading of [`SdsMetrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SdsCounters {
    /// Streams open now (StreamSecrets and DeltaSecrets).
    pub open_streams: u64,
    /// Streams opened since start.
    pub streams: u64,
    /// Responses sent on streams, and answers to FetchSecrets.
    pub pushes: u64,
    /// Responses a client accepted.
    pub acks: u64,
    /// Responses a client rejected (`error_detail` set).
    pub nacks: u64,
    /// New secret versions refused (PEM that does not parse, a key that does
    /// not match, an expired certificate), each counted once.
    pub refused_versions: u64,
    /// Calls refused: no or unknown token (UNAUTHENTICATED), another mesh
    /// (PERMISSION_DENIED), too many streams.
    pub denied: u64,
}

impl SdsCounters {
    /// The counters in Prometheus' text format (`meshseal_sds_*`), to
    /// append to `/metrics`. Counts only, never names.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, kind, help, value) in [
            ("meshseal_sds_open_streams", "gauge", "SDS streams open now.", self.open_streams),
            ("meshseal_sds_streams_total", "counter", "SDS streams opened since start.", self.streams),
            ("meshseal_sds_pushes_total", "counter", "SDS responses sent.", self.pushes),
            ("meshseal_sds_acks_total", "counter", "SDS responses a client accepted.", self.acks),
            ("meshseal_sds_nacks_total", "counter", "SDS responses a client rejected (NACK).", self.nacks),
            ("meshseal_sds_refused_versions_total", "counter", "New secret versions refused for SDS (bad PEM, mismatched key, expired certificate).", self.refused_versions),
            ("meshseal_sds_denied_total", "counter", "SDS calls refused (no or unknown token, another mesh, too many streams).", self.denied),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        out
    }
}

impl SdsMetrics {
    /// The counters now.
    pub fn snapshot(&self) -> SdsCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SdsCounters {
            open_streams: get(&self.open_streams),
            streams: get(&self.streams),
            pushes: get(&self.pushes),
            acks: get(&self.acks),
            nacks: get(&self.nacks),
            refused_versions: get(&self.refused_versions),
            denied: get(&self.denied),
        }
    }

    pub(super) fn stream_opened(&self) {
        self.open_streams.fetch_add(1, Ordering::Relaxed);
        self.streams.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn stream_closed(&self) {
        self.open_streams.fetch_sub(1, Ordering::Relaxed);
    }

    pub(super) fn pushed(&self) {
        self.pushes.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn acked(&self) {
        self.acks.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn nacked(&self) {
        self.nacks.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn refused_version(&self) {
        self.refused_versions.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn denied(&self) {
        self.denied.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_read_back() {
        let m = SdsMetrics::default();
        m.stream_opened();
        m.stream_opened();
        m.stream_closed();
        m.pushed();
        m.nacked();
        m.denied();
        let c = m.snapshot();
        assert_eq!((c.open_streams, c.streams), (1, 2));
        assert_eq!((c.pushes, c.nacks, c.denied, c.acks), (1, 1, 1, 0));
        let text = c.render();
        assert!(
            text.contains("# TYPE meshseal_sds_nacks_total counter\nmeshseal_sds_nacks_total 1\n"),
            "{text}"
        );
        assert!(text.contains("meshseal_sds_open_streams 1\n"), "{text}");
    }
}
