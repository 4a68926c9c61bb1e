//! The peers: one `age -d` or `sops -d` process per file, on a sample of the
//! reference store (each marked skipped when its tool is not on `PATH`).

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::{gen, Bench};

pub struct Peers {
    pub age: Option<Vec<PathBuf>>,
    pub sops: Option<Vec<PathBuf>>,
}

impl Bench {
    pub fn prepare_peers(&self, reference: usize) -> Peers {
        let sample = self.options.sample.min(reference);
        let pick = |k: usize| k * reference / sample;
        let age = which("age").map(|_| {
            (0..sample)
                .map(|k| {
                    self.store_dir(reference)
                        .join(gen::secret_id(pick(k)).path())
                })
                .collect()
        });
        let sops = which("sops").map(|_| {
            let dir = self.work.join("sops");
            fs::create_dir_all(&dir).expect("sops dir");
            let t = Instant::now();
            let files: Vec<PathBuf> = (0..sample)
                .into_par_iter()
                .map(|k| {
                    let plain = dir.join(format!("plain-{k}.yaml"));
                    fs::write(&plain, gen::sops_plain_yaml(pick(k))).expect("plain yaml");
                    let out = Command::new("sops")
                        .args(["-e", "--age", &self.key.public])
                        .args(["--input-type", "yaml", "--output-type", "yaml"])
                        .arg(&plain)
                        .env("HOME", self.work.join("home"))
                        .output()
                        .expect("run sops -e");
                    assert!(
                        out.status.success(),
                        "sops -e: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    fs::remove_file(&plain).expect("remove plaintext");
                    let encrypted = dir.join(format!("secret-{k}.sops.yaml"));
                    fs::write(&encrypted, out.stdout).expect("sops file");
                    encrypted
                })
                .collect();
            eprintln!(
                "encrypted {sample} sops files in {:.1} s",
                t.elapsed().as_secs_f64()
            );
            files
        });
        Peers { age, sops }
    }

    pub fn age_decrypt(&self, files: &[PathBuf]) -> Duration {
        let start = Instant::now();
        for file in files {
            let out = Command::new("age")
                .arg("-d")
                .arg("-i")
                .arg(&self.key.identity_file)
                .arg(file)
                .stderr(Stdio::piped())
                .output()
                .expect("run age");
            assert!(
                out.status.success(),
                "age -d: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        start.elapsed()
    }

    pub fn sops_decrypt(&self, files: &[PathBuf]) -> Duration {
        let start = Instant::now();
        for file in files {
            let out = Command::new("sops")
                .args(["-d", "--input-type", "yaml", "--output-type", "yaml"])
                .arg(file)
                .env("SOPS_AGE_KEY_FILE", &self.key.identity_file)
                .env("HOME", self.work.join("home"))
                .stderr(Stdio::piped())
                .output()
                .expect("run sops");
            assert!(
                out.status.success(),
                "sops -d: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        start.elapsed()
    }
}

pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    })
}
