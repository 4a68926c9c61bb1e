//! The command line: flags into a plain `Options`.

use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "usage: meshseal-bench [--smoke] [--sizes N,N,..] [--runs N] [--sample N] \
[--requests N] [--sds-streams N] [--debounce MS] [--no-peers] [--only GROUP,..] [--meshseal PATH] [--work DIR] [--keep]
       meshseal-bench floor STORE IDENTITY";

/// Row groups, in the order a run measures them (`--only`).
pub const GROUPS: [&str; 8] = [
    "cold", "apply", "watcher", "warm", "swaps", "check", "signed", "sds",
];

pub struct Options {
    pub smoke: bool,
    pub sizes: Vec<usize>,
    pub runs: usize,
    pub sample: usize,
    pub requests: usize,
    pub sds_streams: usize,
    pub debounce: Duration,
    pub peers: bool,
    /// Row groups to run (`--only`); empty: all.
    pub only: Vec<String>,
    pub meshseal: Option<PathBuf>,
    pub work: Option<PathBuf>,
    pub keep: bool,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            smoke: false,
            sizes: vec![1_000, 10_000, 100_000],
            runs: 5,
            sample: 100,
            requests: 20_000,
            sds_streams: 1_000,
            debounce: Duration::from_millis(meshseal::serve::DEFAULT_DEBOUNCE_MS),
            peers: true,
            only: Vec::new(),
            meshseal: None,
            work: None,
            keep: false,
        };
        let mut it = args.iter();
        let num = |v: Option<&String>, flag: &str| -> Result<usize, String> {
            v.and_then(|v| v.replace('_', "").parse().ok())
                .ok_or(format!("{flag} needs a number"))
        };
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--smoke" => {
                    o.smoke = true;
                    o.sizes = vec![20];
                    o.runs = 1;
                    o.requests = 200;
                    o.sds_streams = 20;
                    o.debounce = Duration::from_millis(50);
                    o.peers = false;
                }
                "--sizes" => {
                    let v = it.next().ok_or("--sizes needs a list")?;
                    o.sizes = v
                        .split(',')
                        .map(|n| n.replace('_', "").parse().map_err(|_| "bad --sizes"))
                        .collect::<Result<_, _>>()?;
                }
                "--runs" => o.runs = num(it.next(), "--runs")?.max(1),
                "--sample" => o.sample = num(it.next(), "--sample")?.max(1),
                "--requests" => o.requests = num(it.next(), "--requests")?.max(10),
                "--sds-streams" => o.sds_streams = num(it.next(), "--sds-streams")?.max(1),
                "--debounce" => {
                    o.debounce = Duration::from_millis(num(it.next(), "--debounce")? as u64)
                }
                "--no-peers" => o.peers = false,
                "--only" => {
                    let v = it.next().ok_or("--only needs a list")?;
                    o.only = v.split(',').map(str::to_string).collect();
                    if let Some(bad) = o.only.iter().find(|g| !GROUPS.contains(&g.as_str())) {
                        return Err(format!(
                            "--only: unknown group {bad:?} (groups: {})",
                            GROUPS.join(", ")
                        ));
                    }
                }
                "--meshseal" => {
                    o.meshseal = Some(it.next().ok_or("--meshseal needs a path")?.into())
                }
                "--work" => o.work = Some(it.next().ok_or("--work needs a path")?.into()),
                "--keep" => o.keep = true,
                "-h" | "--help" => return Err(USAGE.to_string()),
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        if o.sizes.is_empty() {
            return Err("--sizes needs at least one size".to_string());
        }
        Ok(o)
    }

    /// Whether row group `group` (one of [`GROUPS`]) runs.
    pub fn runs_group(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }

    /// The store the SPEC's targets are stated for: 10,000, or the closest.
    pub fn reference_size(&self) -> usize {
        *self
            .sizes
            .iter()
            .min_by_key(|&&n| n.abs_diff(10_000))
            .expect("sizes")
    }
}
