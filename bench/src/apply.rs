//! Bulk `apply -f` into an empty store: in the work folder (the disk), and
//! again on tmpfs (`/dev/shm`, when it is one) to tell meshseal's own work
//! from the file system's; then `rekey --all --force` of each applied store
//! on the disk (every file decrypted and written again, as one batch).
//!
//! On ext4 without a journal (this project's VM), the inode allocator will
//! not reuse an inode freed in the last 60 s (6 minutes while its inode
//! table block is dirty, as the blocks a batch of creates fills are) and
//! looks at every such free inode of the group, one by one, for every file
//! it creates (`find_inode_bit` → `recently_deleted`): 10,000 files created
//! within minutes of the removal of as many cost 2–6 s more kernel CPU
//! (BENCHMARKS.md, bulk apply). So this group runs right after the cold
//! loads, before the groups that remove hundreds of thousands of files
//! under the work folder (the swaps' worktrees and volume copies), after a
//! `sync` (no write of an earlier group left for the apply's `syncfs`); and
//! the disk stores are kept until the work folder goes at the end of the
//! run, so that neither the next run of the row nor a later group follows
//! their removal.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::report::{count, median, ms, ratio, verdict, Row};
use crate::timing::timed_cpu;
use crate::{floor, gen, Bench};

impl Bench {
    /// `apply -f` of the reference store's secrets into an empty store.
    pub fn apply(&mut self) {
        // SPEC 5's bulk apply is of 10,000 secrets; a larger document would
        // exceed the apply input limit (`--sizes 100000` alone).
        let n = self.options.reference_size().min(10_000);
        let yaml = self.work.join("apply.yaml");
        fs::write(&yaml, gen::apply_yaml(n)).expect("apply yaml");
        if !self.options.smoke {
            flush_earlier_writes();
        }
        let (d, cpu, stores) = self.apply_runs(&self.work.join("apply"), &yaml, n);
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
                "bulk `apply -f` into an empty store ({:.0} secrets/s; CPU {})",
                n as f64 / d.as_secs_f64(),
                ms(cpu)
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
        // The applied stores, each rekeyed once (every file rewritten):
        // the same writes as the apply, after a decryption of each file.
        // They stay until the work folder goes (see the module's docs).
        let (rekey, rekey_cpu) = self.rekey_runs(&stores, n);
        self.rows.push(Row {
            measurement: format!(
                "`rekey --all --force` of every secret ({:.0} secrets/s; CPU {})",
                n as f64 / rekey.as_secs_f64(),
                ms(rekey_cpu)
            ),
            secrets: count(n),
            meshseal: ms(rekey),
            reference: format!("bulk apply {}", ms(d)),
            ratio: format!("{:.2}x", crate::report::ratio(rekey, d)),
            target: "-".into(),
            result: "info".into(),
        });
        let shm = Path::new("/dev/shm");
        if is_tmpfs(shm) {
            let dir = shm.join(format!("meshseal-bench-{}", std::process::id()));
            // Memory, not the disk: removed at once.
            let (d, cpu, _) = self.apply_runs(&dir, &yaml, n);
            let _ = fs::remove_dir_all(&dir);
            self.rows.push(Row {
                measurement: format!(
                    "bulk `apply -f` into an empty store on tmpfs (no disk; CPU {})",
                    ms(cpu)
                ),
                secrets: count(n),
                meshseal: ms(d),
                reference: "-".into(),
                ratio: "-".into(),
                target: "-".into(),
                result: "info".into(),
            });
        }
    }

    /// The medians (wall, CPU) of `--runs` applies of `yaml` into empty
    /// stores under `dir`, and those stores (none removed here).
    fn apply_runs(&self, dir: &Path, yaml: &Path, n: usize) -> (Duration, Duration, Vec<PathBuf>) {
        let mut walls = Vec::new();
        let mut cpus = Vec::new();
        let mut roots: Vec<PathBuf> = Vec::new();
        for run in 0..self.options.runs {
            let root = dir.join(format!("apply-{run}"));
            gen::empty_store(&root, &self.key);
            let mut cmd = self.meshseal_cmd();
            cmd.arg("-C")
                .arg(&root)
                .arg("-i")
                .arg(&self.key.identity_file)
                .arg("apply")
                .arg("-f")
                .arg(yaml);
            let (wall, cpu) = timed_cpu(cmd);
            walls.push(wall);
            cpus.push(cpu);
            let written = floor::secret_files(&root).len();
            assert_eq!(written, n, "apply wrote every secret");
            roots.push(root);
        }
        (median(&mut walls), median(&mut cpus), roots)
    }

    /// The medians (wall, CPU) of `rekey --all --force` of each store of
    /// `stores` (`n` secrets each), once.
    fn rekey_runs(&self, stores: &[PathBuf], n: usize) -> (Duration, Duration) {
        let mut walls = Vec::new();
        let mut cpus = Vec::new();
        for root in stores {
            let files = floor::secret_files(root);
            let first = fs::read(&files[0]).expect("read a secret");
            let mut cmd = self.meshseal_cmd();
            cmd.arg("-C")
                .arg(root)
                .arg("-i")
                .arg(&self.key.identity_file)
                .args(["rekey", "--all", "--force"]);
            let (wall, cpu) = timed_cpu(cmd);
            walls.push(wall);
            cpus.push(cpu);
            assert_eq!(
                floor::secret_files(root).len(),
                n,
                "rekey kept every secret"
            );
            let now = fs::read(&files[0]).expect("read a secret");
            assert_ne!(now, first, "rekey --force rewrote the files");
        }
        (median(&mut walls), median(&mut cpus))
    }
}

/// Writes back every dirty file of the earlier groups (the generated
/// stores), so that the apply's `syncfs` is not the one that writes them
/// (another process's writes it still waits for).
fn flush_earlier_writes() {
    let synced = std::process::Command::new("sync").status();
    assert!(synced.is_ok_and(|s| s.success()), "sync failed");
}

/// Whether `dir` is the mount point of a tmpfs (from /proc/mounts).
fn is_tmpfs(dir: &Path) -> bool {
    fs::read_to_string("/proc/mounts").is_ok_and(|mounts| {
        mounts.lines().any(|l| {
            let mut f = l.split_whitespace();
            let (_, point, kind) = (f.next(), f.next(), f.next());
            point == dir.to_str() && kind == Some("tmpfs")
        })
    })
}
