//! `/metrics`: the Prometheus text exposition of an index generation, a pure
//! function of it (so it is tested without a server).

use std::fmt::Write as _;

use crate::index::Index;
use crate::scope::Scope;

/// The metrics of one generation, in Prometheus' text format.
pub fn render(index: &Index) -> String {
    let c = index.counters();
    let global = index.scope_secrets(&Scope::Global).count();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    metric(
        "meshseal_index_generation",
        "gauge",
        "Generation of the published index (1 after the cold load).",
        &[("", index.generation() as f64)],
    );
    metric(
        "meshseal_secrets",
        "gauge",
        "Secrets in the index.",
        &[
            ("{scope=\"mesh\"}", (index.len() - global) as f64),
            ("{scope=\"global\"}", global as f64),
        ],
    );
    metric(
        "meshseal_meshes",
        "gauge",
        "Meshes with at least one secret.",
        &[("", index.meshes().len() as f64)],
    );
    metric(
        "meshseal_problems",
        "gauge",
        "Files whose current version failed to load (the last good version is served).",
        &[("", index.problem_count() as f64)],
    );
    metric(
        "meshseal_stale_secrets",
        "gauge",
        "Secrets encrypted to a recipient set other than their scope's current one.",
        &[("", index.stale().count() as f64)],
    );
    metric(
        "meshseal_cold_load_seconds",
        "gauge",
        "Duration of the initial full load.",
        &[("", c.cold_load.as_secs_f64())],
    );
    metric(
        "meshseal_last_reload_seconds",
        "gauge",
        "Duration of the latest update or rescan.",
        &[("", c.last_update.as_secs_f64())],
    );
    metric(
        "meshseal_reloads_total",
        "counter",
        "Index updates after the cold load.",
        &[("", c.updates as f64)],
    );
    metric(
        "meshseal_rescans_total",
        "counter",
        "Full rescans after the cold load.",
        &[("", c.rescans as f64)],
    );
    metric(
        "meshseal_load_errors_total",
        "counter",
        "New file versions that failed to load.",
        &[("", c.load_errors as f64)],
    );
    metric(
        "meshseal_decrypted_total",
        "counter",
        "Files decrypted since start.",
        &[("", c.decrypted as f64)],
    );
    if index.verifies() {
        let labels: Vec<String> = crate::index::REFUSAL_CODES
            .iter()
            .map(|code| format!("{{reason=\"{code}\"}}"))
            .collect();
        let samples: Vec<(&str, f64)> = labels
            .iter()
            .zip(c.refusals)
            .map(|(l, n)| (l.as_str(), n as f64))
            .collect();
        metric(
            "meshseal_signature_refusals_total",
            "counter",
            "New secret versions refused by signature (SPEC 9), by reason.",
            &samples,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_help_type_and_a_sample() {
        let text = render(&Index::default());
        for name in [
            "meshseal_index_generation",
            "meshseal_secrets",
            "meshseal_decrypted_total",
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "{text}");
            assert!(text.contains(&format!("# TYPE {name} ")), "{text}");
        }
        assert!(text.contains("meshseal_decrypted_total 0\n"), "{text}");
        assert!(
            text.contains("meshseal_secrets{scope=\"global\"} 0\n"),
            "{text}"
        );
        // Counts only: no line names a secret or a mesh.
        assert!(!text.contains("name="), "{text}");
    }
}
