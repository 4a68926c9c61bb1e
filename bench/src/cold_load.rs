//! Cold loads: `watch --once` as a process and `serve::load` in-process,
//! each next to the floor, plus the peers' one-process-per-file decryptions,
//! interleaved run by run.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::report::{count, median, ms, paired_ratio, ratio, verdict, Row};
use crate::timing::{cpu_time, timed_cpu};
use crate::{floor, Bench};

/// Cold-load medians of one store size: wall time, and CPU time (user +
/// system, all threads), which other people's work on the machine moves less.
struct ColdLoad {
    process: Duration,
    floor_process: Duration,
    in_process: Duration,
    floor_in_process: Duration,
    process_cpu: Duration,
    floor_process_cpu: Duration,
    in_process_cpu: Duration,
    floor_in_process_cpu: Duration,
    /// The median of each run's ratio (`watch --once` over the floor timed
    /// next to it), and the same in-process.
    process_paired: f64,
    in_process_paired: f64,
}

impl Bench {
    fn watch_once(&self, n: usize) -> (Duration, Duration) {
        self.warm(&self.store_dir(n));
        let mut cmd = self.meshseal_cmd();
        cmd.arg("-C")
            .arg(self.store_dir(n))
            .arg("-i")
            .arg(&self.key.identity_file)
            .args(["watch", "--once"]);
        timed_cpu(cmd)
    }

    pub(crate) fn floor_process(&self, n: usize) -> (Duration, Duration) {
        self.warm(&self.store_dir(n));
        let mut cmd = Command::new(std::env::current_exe().expect("own path"));
        cmd.arg("floor")
            .arg(self.store_dir(n))
            .arg(&self.key.identity_file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        timed_cpu(cmd)
    }

    fn in_process(&self, n: usize) -> (Duration, Duration) {
        self.warm(&self.store_dir(n));
        let cpu = cpu_time(libc::RUSAGE_SELF);
        let start = Instant::now();
        let ids =
            meshseal::identity::Identities::load(std::slice::from_ref(&self.key.identity_file))
                .expect("identity");
        let (_, index) = meshseal::serve::load(&self.store_dir(n), &ids).expect("load");
        let elapsed = (start.elapsed(), cpu_time(libc::RUSAGE_SELF) - cpu);
        assert_eq!(index.len(), n, "every secret loads");
        assert_eq!(index.problem_count(), 0, "no problems");
        elapsed
    }

    fn floor_in_process(&self, n: usize) -> (Duration, Duration) {
        self.warm(&self.store_dir(n));
        let cpu = cpu_time(libc::RUSAGE_SELF);
        let start = Instant::now();
        let key = floor::identity(&self.key.identity_file);
        let bytes = floor::load(&self.store_dir(n), &key);
        let elapsed = (start.elapsed(), cpu_time(libc::RUSAGE_SELF) - cpu);
        assert!(bytes > 0);
        elapsed
    }

    /// Cold loads of every size and the peers' per-file decryptions,
    /// interleaved run by run so that machine load hits them all alike.
    pub fn cold_loads_and_peers(&mut self) {
        let sizes = self.options.sizes.clone();
        let reference = self.options.reference_size();
        let peers = self.options.peers.then(|| self.prepare_peers(reference));
        let mut samples: Vec<[Vec<Duration>; 4]> =
            sizes.iter().map(|_| Default::default()).collect();
        let mut cpu_samples: Vec<[Vec<Duration>; 4]> =
            sizes.iter().map(|_| Default::default()).collect();
        let mut age_per_file = Vec::new();
        let mut sops_per_file = Vec::new();
        for run in 0..self.options.runs {
            for (k, &n) in sizes.iter().enumerate() {
                // Alternate who goes first: a warm or a loaded machine favours neither.
                let order: [usize; 4] = if run % 2 == 0 {
                    [0, 1, 2, 3]
                } else {
                    [1, 0, 3, 2]
                };
                for which in order {
                    let (wall, cpu) = match which {
                        0 => self.watch_once(n),
                        1 => self.floor_process(n),
                        2 => self.in_process(n),
                        _ => self.floor_in_process(n),
                    };
                    samples[k][which].push(wall);
                    cpu_samples[k][which].push(cpu);
                }
            }
            if let Some(peers) = &peers {
                if let Some(files) = &peers.age {
                    age_per_file.push(self.age_decrypt(files) / files.len() as u32);
                }
                if let Some(files) = &peers.sops {
                    sops_per_file.push(self.sops_decrypt(files) / files.len() as u32);
                }
            }
            eprintln!("cold-load run {}/{} done", run + 1, self.options.runs);
        }
        let loads: Vec<ColdLoad> = samples
            .into_iter()
            .zip(cpu_samples)
            .map(|(mut s, mut c)| ColdLoad {
                process_paired: paired_ratio(&s[0], &s[1]),
                in_process_paired: paired_ratio(&s[2], &s[3]),
                process: median(&mut s[0]),
                floor_process: median(&mut s[1]),
                in_process: median(&mut s[2]),
                floor_in_process: median(&mut s[3]),
                process_cpu: median(&mut c[0]),
                floor_process_cpu: median(&mut c[1]),
                in_process_cpu: median(&mut c[2]),
                floor_in_process_cpu: median(&mut c[3]),
            })
            .collect();
        for (load, &n) in loads.iter().zip(&sizes) {
            let ratio = ratio(load.process, load.floor_process);
            let cpu = self::ratio(load.process_cpu, load.floor_process_cpu);
            self.rows.push(Row {
                measurement: "cold load: `watch --once` vs floor process".into(),
                secrets: count(n),
                meshseal: ms(load.process),
                reference: ms(load.floor_process),
                ratio: format!(
                    "{ratio:.2}x (paired {:.2}x, CPU {cpu:.2}x)",
                    load.process_paired
                ),
                target: "≤ 1.15x (paired)".into(),
                result: verdict(load.process_paired <= 1.15, n == reference),
            });
            let ratio = self::ratio(load.in_process, load.floor_in_process);
            let cpu = self::ratio(load.in_process_cpu, load.floor_in_process_cpu);
            self.rows.push(Row {
                measurement: "cold load: in-process `Index::load` vs floor".into(),
                secrets: count(n),
                meshseal: ms(load.in_process),
                reference: ms(load.floor_in_process),
                ratio: format!(
                    "{ratio:.2}x (paired {:.2}x, CPU {cpu:.2}x)",
                    load.in_process_paired
                ),
                target: "≤ 1.15x (paired)".into(),
                result: verdict(load.in_process_paired <= 1.15, n == reference),
            });
        }
        let at = |n: usize| sizes.iter().position(|&s| s == n).map(|i| &loads[i]);
        if let (Some(big), Some(ten)) = (at(100_000), at(10_000)) {
            let r = ratio(big.process, ten.process);
            self.rows.push(Row {
                measurement: "scaling: 100,000 vs 10,000 `watch --once`".into(),
                secrets: "100,000".into(),
                meshseal: ms(big.process),
                reference: ms(ten.process),
                ratio: format!("{r:.2}x"),
                target: "≤ 10.5x".into(),
                result: verdict(r <= 10.5, true),
            });
        }
        let base = at(reference).expect("reference size").process;
        self.cold_load = Some(base);
        let scaled = |per_file: Duration| per_file * reference as u32;
        if let Some(peers) = &peers {
            let mut peer_row = |name: &str,
                                per_file: &mut Vec<Duration>,
                                sample: usize,
                                goal: f64| {
                if per_file.is_empty() {
                    self.rows.push(Row {
                        measurement: format!("peer: {name} one process per file"),
                        secrets: count(reference),
                        meshseal: ms(base),
                        reference: "not installed".into(),
                        ratio: "-".into(),
                        target: format!("≥ {goal}x faster"),
                        result: "skipped".into(),
                    });
                    return;
                }
                let per = median(per_file);
                let r = ratio(scaled(per), base);
                self.rows.push(Row {
                    measurement: format!(
                        "peer: {name} one process per file ({:.2} ms/file, {sample}-file sample, scaled)",
                        per.as_secs_f64() * 1e3
                    ),
                    secrets: count(reference),
                    meshseal: ms(base),
                    reference: ms(scaled(per)),
                    ratio: format!("{r:.0}x faster"),
                    target: format!("≥ {goal}x faster"),
                    result: verdict(r >= goal, true),
                });
            };
            let age_sample = peers.age.as_ref().map_or(0, Vec::len);
            let sops_sample = peers.sops.as_ref().map_or(0, Vec::len);
            peer_row("`age -d`", &mut age_per_file, age_sample, 50.0);
            peer_row("`sops -d`", &mut sops_per_file, sops_sample, 500.0);
        }
    }
}
