//! Reloads: from a write (one file, a 1,000-file checkout, 1,000 files
//! renamed into place) to the new values being served, minus the debounce.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use rayon::prelude::*;

use crate::api::secret_path;
use crate::client::{self, Client};
use crate::report::{count, median, ms, verdict, Row};
use crate::{gen, Bench};

impl Bench {
    /// From the write of one file to its new value being served, minus the
    /// debounce window.
    pub fn reload_one(&mut self, client: &mut Client, n: usize) {
        let mut samples = Vec::new();
        for run in 0..self.options.runs {
            let i = (run * 7919 + 13) % n;
            let version = 1 + run as u64;
            let bytes = gen::ciphertext(&self.key, i, version);
            let path = self.store_dir(n).join(gen::secret_id(i).path());
            gen::overwrite(&path, &bytes);
            let written = Instant::now();
            wait_value(client, i, version);
            samples.push(written.elapsed().saturating_sub(self.options.debounce));
            std::thread::sleep(self.options.debounce * 2);
        }
        let d = median(&mut samples);
        self.rows.push(Row {
            measurement: format!(
                "reload: one changed file served, minus debounce ({} ms)",
                self.options.debounce.as_millis()
            ),
            secrets: count(n),
            meshseal: ms(d),
            reference: "-".into(),
            ratio: "-".into(),
            target: "≤ 20 ms".into(),
            result: verdict(d <= Duration::from_millis(20), true),
        });
    }

    /// A checkout that rewrites 1,000 files: from the last write to the new
    /// values (first and last file) being served, minus the debounce window.
    pub fn reload_many(&mut self, client: &mut Client, n: usize) {
        let k = n.min(1_000);
        let mut samples = Vec::new();
        let mut write_spans = Vec::new();
        let mut from_first = Vec::new();
        for run in 0..self.options.runs {
            let version = 100 + run as u64;
            let first = (run * 1_000) % n;
            let files: Vec<(usize, PathBuf, Vec<u8>)> = (0..k)
                .into_par_iter()
                .map(|j| {
                    let i = (first + j) % n;
                    let path = self.store_dir(n).join(gen::secret_id(i).path());
                    (i, path, gen::ciphertext(&self.key, i, version))
                })
                .collect();
            let writing = Instant::now();
            for (_, path, bytes) in &files {
                gen::overwrite(path, bytes);
            }
            write_spans.push(writing.elapsed());
            let ends = (files[0].0, files[k - 1].0);
            samples.push(self.served_after(client, ends, version, Instant::now()));
            from_first.push(writing.elapsed().saturating_sub(self.options.debounce));
            std::thread::sleep(self.options.debounce * 2);
        }
        let measurement = format!(
            "reload: checkout rewriting {} files (written in {:.0} ms; {:.0} ms from the first write), from the last write, minus debounce",
            count(k),
            median(&mut write_spans).as_secs_f64() * 1e3,
            median(&mut from_first).as_secs_f64() * 1e3
        );
        self.checkout_row(measurement, n, k, &mut samples);
    }

    /// Waits until both ends of a checkout serve `version`; the time since
    /// `since`, minus the debounce window.
    fn served_after(
        &self,
        client: &mut Client,
        (first, last): (usize, usize),
        version: u64,
        since: Instant,
    ) -> Duration {
        wait_value(client, last, version);
        wait_value(client, first, version);
        since.elapsed().saturating_sub(self.options.debounce)
    }

    fn checkout_row(&mut self, measurement: String, n: usize, k: usize, samples: &mut [Duration]) {
        let d = median(samples);
        self.rows.push(Row {
            measurement,
            secrets: count(n),
            meshseal: ms(d),
            reference: "-".into(),
            ratio: "-".into(),
            target: "≤ 100 ms".into(),
            result: verdict(d <= Duration::from_millis(100), k == 1_000),
        });
    }

    /// The hardest checkout for the watcher: 1,000 new versions written
    /// beforehand and renamed into place in a few milliseconds, so that every
    /// one of them lands in the batch after the debounce window (where a
    /// slow writer lets earlier files be decrypted while later ones are
    /// still being written).
    pub fn reload_renamed(&mut self, client: &mut Client, n: usize) {
        let k = n.min(1_000);
        let staging = self.work.join("staging");
        let mut samples = Vec::new();
        let mut rename_spans = Vec::new();
        for run in 0..self.options.runs {
            let version = 200 + run as u64;
            let first = (run * 1_000 + 500) % n;
            fs::create_dir_all(&staging).expect("staging folder");
            let files: Vec<(usize, PathBuf, PathBuf)> = (0..k)
                .into_par_iter()
                .map(|j| {
                    let i = (first + j) % n;
                    let staged = staging.join(format!("{j}.age"));
                    fs::write(&staged, gen::ciphertext(&self.key, i, version)).expect("stage");
                    (i, staged, self.store_dir(n).join(gen::secret_id(i).path()))
                })
                .collect();
            let renaming = Instant::now();
            for (_, staged, path) in &files {
                fs::rename(staged, path).expect("rename into the store");
            }
            rename_spans.push(renaming.elapsed());
            let ends = (files[0].0, files[k - 1].0);
            samples.push(self.served_after(client, ends, version, Instant::now()));
            std::thread::sleep(self.options.debounce * 2);
        }
        let measurement = format!(
            "reload: checkout renaming {} new files into place (in {:.0} ms), from the last rename, minus debounce",
            count(k),
            median(&mut rename_spans).as_secs_f64() * 1e3
        );
        self.checkout_row(measurement, n, k, &mut samples);
    }
}

/// Polls the API until secret `i` serves `version`'s data.
pub(crate) fn wait_value(client: &mut Client, i: usize, version: u64) {
    let want = base64::engine::general_purpose::STANDARD.encode(gen::secret_data(i, version));
    let path = format!("/meshes/{}", secret_path(i));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = client.get(&path).expect("poll");
        if status == 200 && client::data_field(&body).as_deref() == Some(want.as_str()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never served the new value"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}
