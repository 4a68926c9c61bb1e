//! Replays every fuzz target's committed corpus and past findings through the
//! same properties the fuzzer checks (`fuzz/properties.rs`), so that CI runs
//! them on every change without cargo-fuzz or a nightly toolchain (a debug
//! build samples the slowest corpus deterministically: see [`stride`]).

use std::fs;
use std::path::{Path, PathBuf};

#[allow(dead_code)]
#[path = "../../fuzz/properties.rs"]
mod properties;

fn inputs(dir: &Path) -> Vec<PathBuf> {
    match fs::read_dir(dir) {
        Ok(entries) => {
            let mut files: Vec<PathBuf> = entries
                .map(|e| e.expect("read corpus entry").path())
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            files
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", dir.display()),
    }
}

/// Which corpus inputs a target replays: every `n`th, in name order. In a
/// debug build the policy property (eight parses, a Kubernetes round trip
/// per resource and two exports applied back, per input) takes about 14 s
/// over its 3,040 inputs on two shared cores, most of this test's time; every
/// second input keeps it near 7 s. A release build (`cargo test --release`)
/// replays every input, and past findings are always replayed.
fn stride(target: &str) -> usize {
    if cfg!(debug_assertions) && target == "policy" {
        2
    } else {
        1
    }
}

#[test]
fn every_corpus_input_and_past_finding_holds_its_property() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (target, property) in properties::TARGETS {
        let corpus = inputs(&fuzz.join("corpus").join(target));
        // A corpus that went missing would make this test pass vacuously.
        assert!(
            corpus.len() >= 50,
            "fuzz/corpus/{target} holds {} inputs; the committed corpus is missing",
            corpus.len()
        );
        let regressions = inputs(&fuzz.join("regressions").join(target));
        let start = std::time::Instant::now();
        let step = stride(target);
        let replayed: Vec<&PathBuf> = corpus.iter().step_by(step).collect();
        for file in replayed.iter().copied().chain(&regressions) {
            let data = fs::read(file).expect("read input");
            let outcome = std::panic::catch_unwind(|| property(&data));
            assert!(
                outcome.is_ok(),
                "{}: the {target} property fails on this input (replay: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run {target} {})",
                file.display(),
                file.display()
            );
        }
        let sampled = if step > 1 {
            format!(" (one in {step}: a debug build)")
        } else {
            String::new()
        };
        eprintln!(
            "{target}: {} of {} corpus inputs{sampled}, {} regressions, {:.1} s",
            replayed.len(),
            corpus.len(),
            regressions.len(),
            start.elapsed().as_secs_f64()
        );
    }
}
