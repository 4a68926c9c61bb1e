//! `meshseal-bench`: meshseal side by side with the floor and the peers
//! (SPEC section 5), on stores it generates itself. See BENCHMARKS.md.
//!
//! ```text
//! cargo run --release -p meshseal-bench               # the full run (~15 min on 2 cores)
//! meshseal-bench --smoke                              # 20 secrets, 1 run, no peers (tests)
//! meshseal-bench floor STORE IDENTITY                 # the floor program alone
//! ```
//!
//! Everything it times runs on this machine; the watcher listens on 127.0.0.1.
//! It is its own crate in the workspace so the library carries no benchmark
//! code. One module per thing measured: `cold_load` (and its `peers`),
//! `watcher` (peak RSS, and the `api` and `reload` runs against it), `check`,
//! `apply`, `signed` (SPEC 9's verified cold load and hook), `sds` (a real Envoy, with `envoy` and `pki`) and `sds_streams`;
//! `report` prints the table.

mod api;
mod apply;
mod check;
mod client;
mod cold_load;
mod envoy;
mod floor;
mod gen;
mod options;
mod peers;
mod pin;
mod pki;
mod reload;
mod report;
mod sds;
mod sds_streams;
mod signed;
mod timing;
mod watcher;
mod zones;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use gen::Key;
use options::{Options, USAGE};
use report::{print_machine, Row};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("floor") {
        let [_, store, identity] = &args[..] else {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        };
        let bytes = floor::load(Path::new(store), &floor::identity(Path::new(identity)));
        println!("{bytes} plaintext bytes");
        return ExitCode::SUCCESS;
    }
    let options = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let work = options.work.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("meshseal-bench-{}", std::process::id()))
    });
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(work.join("home")).expect("work dir");
    let keep = options.keep;
    let mut bench = Bench::new(options, work.clone());
    bench.run();
    if !keep {
        let _ = fs::remove_dir_all(&work);
    }
    ExitCode::SUCCESS
}

/// One run's settings, its store keys and the rows it has measured so far;
/// each measuring module adds its own methods.
struct Bench {
    options: Options,
    work: PathBuf,
    meshseal: PathBuf,
    key: Key,
    rows: Vec<Row>,
    /// The median `watch --once` of the reference store, once measured (the
    /// bulk apply is judged against it).
    cold_load: Option<std::time::Duration>,
}

impl Bench {
    fn new(options: Options, work: PathBuf) -> Bench {
        let meshseal = options.meshseal.clone().unwrap_or_else(sibling_meshseal);
        assert!(
            meshseal.is_file(),
            "no meshseal binary at {} (build it, or pass --meshseal PATH)",
            meshseal.display()
        );
        let key = Key::generate(&work);
        Bench {
            options,
            work,
            meshseal,
            key,
            rows: Vec::new(),
            cold_load: None,
        }
    }

    fn store_dir(&self, n: usize) -> PathBuf {
        self.work.join(format!("store-{n}"))
    }

    fn run(&mut self) {
        print_machine();
        let started = Instant::now();
        for &n in &self.options.sizes {
            let t = Instant::now();
            gen::store(&self.store_dir(n), &self.key, n);
            eprintln!(
                "generated {n} secrets in {:.1} s",
                t.elapsed().as_secs_f64()
            );
        }
        let reference = self.options.reference_size();
        let runs = |group: &str| self.options.runs_group(group);
        let (cold, watcher, warm, swaps, check, apply, sds) = (
            runs("cold"),
            runs("watcher"),
            runs("warm"),
            runs("swaps"),
            runs("check"),
            runs("apply"),
            runs("sds"),
        );
        let signed = runs("signed");
        if cold {
            self.cold_loads_and_peers();
        }
        // Before the groups that remove many files: see `apply`'s docs.
        if apply {
            self.apply();
        }
        if watcher {
            self.watcher(reference, true);
            for &n in &self.options.sizes.clone() {
                if n > reference {
                    self.watcher(n, false);
                }
            }
        }
        if warm {
            self.warm_restart(reference);
        }
        if swaps {
            self.swaps(reference);
        }
        if check {
            self.check_staged();
        }
        if signed {
            self.signed(reference);
        }
        if sds {
            // Last: it adds two certificate secrets to the reference store.
            self.sds(reference);
        }
        eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
        self.print_table();
    }

    /// `meshseal` with the bench's home (so no default identity leaks in).
    /// [`timing::warm_page_cache`] for a cold load of `store`.
    fn warm(&self, store: &Path) {
        let own = std::env::current_exe().expect("own path");
        timing::warm_page_cache(store, &[&self.meshseal, &own]);
    }

    fn meshseal_cmd(&self) -> Command {
        let mut cmd = Command::new(&self.meshseal);
        cmd.env("HOME", self.work.join("home"))
            .env("XDG_CONFIG_HOME", self.work.join("home"))
            .env_remove("MESHSEAL_IDENTITY")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }
}

/// `meshseal` next to this binary; under `cargo run`, built first (same profile).
fn sibling_meshseal() -> PathBuf {
    let me = std::env::current_exe().expect("own path");
    let dir = me.parent().expect("exe dir");
    if let Some(cargo) = std::env::var_os("CARGO") {
        // The workspace's manifest, wherever `cargo run` was started.
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "meshseal", "--bin", "meshseal"])
            .arg("--manifest-path")
            .arg(manifest);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(
            status.success(),
            "cargo build -p meshseal --bin meshseal failed"
        );
    }
    dir.join("meshseal")
}
