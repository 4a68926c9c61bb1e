//! Bulk `apply -f` into an empty store.

use std::fs;
use std::time::Duration;

use crate::report::{count, median, ms, ratio, verdict, Row};
use crate::timing::timed;
use crate::{floor, gen, Bench};

impl Bench {
    /// `apply -f` of the reference store's secrets into an empty store.
    pub fn apply(&mut self) {
        // SPEC 5's bulk apply is of 10,000 secrets; a larger document would
        // exceed the apply input limit (`--sizes 100000` alone).
        let n = self.options.reference_size().min(10_000);
        let yaml = self.work.join("apply.yaml");
        fs::write(&yaml, gen::apply_yaml(n)).expect("apply yaml");
        let mut samples = Vec::new();
        for run in 0..self.options.runs {
            let root = self.work.join(format!("apply-{run}"));
            gen::empty_store(&root, &self.key);
            let mut cmd = self.meshseal_cmd();
            cmd.arg("-C")
                .arg(&root)
                .arg("-i")
                .arg(&self.key.identity_file)
                .arg("apply")
                .arg("-f")
                .arg(&yaml);
            samples.push(timed(cmd));
            let written = floor::secret_files(&root).len();
            assert_eq!(written, n, "apply wrote every secret");
            fs::remove_dir_all(&root).expect("remove apply store");
        }
        let d = median(&mut samples);
        // SPEC 5: under 2 s, and within 3x the cold load of the same run.
        let cold = self
            .cold_load
            .filter(|_| n == self.options.reference_size());
        let (reference, ratio, within) = match cold {
            Some(cold) => {
                let r = ratio(d, cold);
                (
                    format!("cold load {}", ms(cold)),
                    format!("{r:.2}x"),
                    r <= 3.0,
                )
            }
            None => ("-".to_string(), "-".to_string(), true),
        };
        self.rows.push(Row {
            measurement: format!(
                "bulk `apply -f` into an empty store ({:.0} secrets/s)",
                n as f64 / d.as_secs_f64()
            ),
            secrets: count(n),
            meshseal: ms(d),
            reference,
            ratio,
            target: "< 2 s and ≤ 3x the cold load".into(),
            result: verdict(
                d < Duration::from_secs(2) && within,
                n == 10_000 && cold.is_some(),
            ),
        });
    }
}
