//! `meshseal-bench`: meshseal side by side with the floor and the peers
//! (SPEC section 5), on stores it generates itself. See BENCHMARKS.md.
//!
//! ```text
//! cargo run --release --bin meshseal-bench            # the full run (~15 min on 2 cores)
//! meshseal-bench --smoke                              # 20 secrets, 1 run, no peers (tests)
//! meshseal-bench floor STORE IDENTITY                 # the floor program alone
//! ```
//!
//! Everything it times runs on this machine; the watcher listens on 127.0.0.1.
//! It lives outside the library so the library carries no benchmark code.

mod client;
mod floor;
mod gen;

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use rayon::prelude::*;

use client::Client;
use gen::Key;

const USAGE: &str = "usage: meshseal-bench [--smoke] [--sizes N,N,..] [--runs N] [--sample N] \
[--requests N] [--debounce MS] [--no-peers] [--meshseal PATH] [--work DIR] [--keep]
       meshseal-bench floor STORE IDENTITY";

struct Options {
    smoke: bool,
    sizes: Vec<usize>,
    runs: usize,
    sample: usize,
    requests: usize,
    debounce: Duration,
    peers: bool,
    meshseal: Option<PathBuf>,
    work: Option<PathBuf>,
    keep: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            smoke: false,
            sizes: vec![1_000, 10_000, 100_000],
            runs: 5,
            sample: 100,
            requests: 20_000,
            debounce: Duration::from_millis(meshseal::watch::DEFAULT_DEBOUNCE_MS),
            peers: true,
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
                "--debounce" => {
                    o.debounce = Duration::from_millis(num(it.next(), "--debounce")? as u64)
                }
                "--no-peers" => o.peers = false,
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

    /// The store the SPEC's targets are stated for: 10,000, or the closest.
    fn reference_size(&self) -> usize {
        *self
            .sizes
            .iter()
            .min_by_key(|&&n| n.abs_diff(10_000))
            .expect("sizes")
    }
}

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

/// One line of the result table.
struct Row {
    measurement: String,
    secrets: String,
    meshseal: String,
    reference: String,
    ratio: String,
    target: String,
    result: String,
}

struct Bench {
    options: Options,
    work: PathBuf,
    meshseal: PathBuf,
    key: Key,
    rows: Vec<Row>,
}

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
        self.cold_loads_and_peers();
        self.watcher(self.options.reference_size(), true);
        for &n in &self.options.sizes.clone() {
            if n > self.options.reference_size() {
                self.watcher(n, false);
            }
        }
        self.check_staged();
        self.apply();
        eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
        self.print_table();
    }

    /// `meshseal` with the bench's home (so no default identity leaks in).
    fn meshseal_cmd(&self) -> Command {
        let mut cmd = Command::new(&self.meshseal);
        cmd.env("HOME", self.work.join("home"))
            .env("XDG_CONFIG_HOME", self.work.join("home"))
            .env_remove("MESHSEAL_IDENTITY")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    fn watch_once(&self, n: usize) -> (Duration, Duration) {
        let mut cmd = self.meshseal_cmd();
        cmd.arg("-C")
            .arg(self.store_dir(n))
            .arg("-i")
            .arg(&self.key.identity_file)
            .args(["watch", "--once"]);
        timed_cpu(cmd)
    }

    fn floor_process(&self, n: usize) -> (Duration, Duration) {
        let mut cmd = Command::new(std::env::current_exe().expect("own path"));
        cmd.arg("floor")
            .arg(self.store_dir(n))
            .arg(&self.key.identity_file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        timed_cpu(cmd)
    }

    fn in_process(&self, n: usize) -> (Duration, Duration) {
        let cpu = cpu_time(libc::RUSAGE_SELF);
        let start = Instant::now();
        let ids =
            meshseal::identity::Identities::load(std::slice::from_ref(&self.key.identity_file))
                .expect("identity");
        let (_, index) = meshseal::watch::load(&self.store_dir(n), &ids).expect("load");
        let elapsed = (start.elapsed(), cpu_time(libc::RUSAGE_SELF) - cpu);
        assert_eq!(index.len(), n, "every secret loads");
        assert_eq!(index.problem_count(), 0, "no problems");
        elapsed
    }

    fn floor_in_process(&self, n: usize) -> (Duration, Duration) {
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
    fn cold_loads_and_peers(&mut self) {
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
                ratio: format!("{ratio:.2}x (CPU {cpu:.2}x)"),
                target: "≤ 1.25x".into(),
                result: verdict(ratio <= 1.25, n == reference),
            });
            let ratio = self::ratio(load.in_process, load.floor_in_process);
            let cpu = self::ratio(load.in_process_cpu, load.floor_in_process_cpu);
            self.rows.push(Row {
                measurement: "cold load: in-process `Index::load` vs floor".into(),
                secrets: count(n),
                meshseal: ms(load.in_process),
                reference: ms(load.floor_in_process),
                ratio: format!("{ratio:.2}x (CPU {cpu:.2}x)"),
                target: "≤ 1.25x".into(),
                result: verdict(ratio <= 1.25, n == reference),
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

    fn prepare_peers(&self, reference: usize) -> Peers {
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

    fn age_decrypt(&self, files: &[PathBuf]) -> Duration {
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

    fn sops_decrypt(&self, files: &[PathBuf]) -> Duration {
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

    /// Starts a watcher on store `n`; with `full`, also times the API and
    /// reloads. Always records the watcher's peak RSS.
    fn watcher(&mut self, n: usize, full: bool) {
        let root = self.store_dir(n);
        let tokens = self.work.join(format!("tokens-{n}"));
        let token =
            meshseal::tokens::create(&tokens, &meshseal::tokens::TokenScope::Admin).expect("token");
        let addr = free_loopback_port();
        let log = fs::File::create(self.work.join(format!("watch-{n}.log"))).expect("log");
        let child = Command::new(&self.meshseal)
            .arg("-C")
            .arg(&root)
            .arg("-i")
            .arg(&self.key.identity_file)
            .args(["watch", "--listen", &addr.to_string(), "--tokens"])
            .arg(&tokens)
            .args(["--debounce", &self.options.debounce.as_millis().to_string()])
            .env("HOME", self.work.join("home"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start watcher");
        let mut watcher = Watcher(child);
        let started = Instant::now();
        let mut client = wait_ready(addr, &token, &mut watcher.0);
        let ready = started.elapsed();
        eprintln!("watcher on {n} secrets ready in {} ms", ready.as_millis());
        let probe = format!("/meshes/{}", secret_path(0));
        let (status, _) = client.get(&probe).expect("first read");
        assert_eq!(status, 200, "GET {probe}");
        if full {
            self.api_latency(&mut client, &probe, n);
            self.reload_one(&mut client, n);
            self.reload_many(&mut client, n);
            self.reload_renamed(&mut client, n);
        }
        let hwm = vm_hwm(watcher.0.id());
        let secret_bytes = (n * gen::SECRET_BYTES) as u64;
        let limit = 64 * 1024 * 1024 + 2 * secret_bytes;
        self.rows.push(Row {
            measurement: "peak RSS of the watcher (VmHWM)".into(),
            secrets: count(n),
            meshseal: format!("{:.1} MiB", hwm as f64 / 1048576.0),
            reference: format!("limit {:.1} MiB", limit as f64 / 1048576.0),
            ratio: format!("{:.0}% of limit", 100.0 * hwm as f64 / limit as f64),
            target: "< 64 MiB + 2x secret bytes".into(),
            result: verdict(hwm < limit, true),
        });
    }

    fn api_latency(&mut self, client: &mut Client, path: &str, n: usize) {
        let (_, body) = client.get(path).expect("read");
        let floor_addr = client::echo_server(body).expect("floor server");
        let mut floor = Client::connect(floor_addr, "floor").expect("connect to the floor");
        for _ in 0..self.options.requests / 10 {
            client.get(path).expect("warm-up read");
            floor.get(path).expect("warm-up read");
        }
        let requests = self.options.requests;
        let time_run = |client: &mut Client| {
            let mut latencies = Vec::with_capacity(requests);
            let start = Instant::now();
            for _ in 0..requests {
                let t = Instant::now();
                let (status, _) = client.get(path).expect("read");
                latencies.push(t.elapsed());
                assert_eq!(status, 200);
            }
            let per_request = start.elapsed() / requests as u32;
            latencies.sort();
            [
                percentile(&latencies, 50.0),
                percentile(&latencies, 99.0),
                per_request,
            ]
        };
        let mut ours: [Vec<Duration>; 3] = Default::default();
        let mut theirs: [Vec<Duration>; 3] = Default::default();
        for run in 0..self.options.runs {
            let (a, b) = if run % 2 == 0 {
                let a = time_run(client);
                (a, time_run(&mut floor))
            } else {
                let b = time_run(&mut floor);
                (time_run(client), b)
            };
            for k in 0..3 {
                ours[k].push(a[k]);
                theirs[k].push(b[k]);
            }
        }
        let [p50, p99, per_request] = ours.map(|mut v| median(&mut v));
        let [floor_p50, floor_p99, floor_per_request] = theirs.map(|mut v| median(&mut v));
        self.rows.push(Row {
            measurement: format!(
                "API read of one secret, keep-alive, p50 (p99 {:.0} µs, floor p99 {:.0} µs; {} requests x {} runs)",
                us(p99),
                us(floor_p99),
                self.options.requests,
                self.options.runs
            ),
            secrets: count(n),
            meshseal: format!("{:.0} µs", us(p50)),
            reference: format!("floor {:.0} µs", us(floor_p50)),
            ratio: format!("+{:.0} µs", us(p50.saturating_sub(floor_p50))),
            target: "p50 < 100 µs".into(),
            result: verdict(p50 < Duration::from_micros(100), true),
        });
        self.rows.push(Row {
            measurement: "API throughput, one keep-alive connection, sequential".into(),
            secrets: count(n),
            meshseal: format!("{:.0} req/s", 1.0 / per_request.as_secs_f64()),
            reference: format!("floor {:.0} req/s", 1.0 / floor_per_request.as_secs_f64()),
            ratio: "-".into(),
            target: "-".into(),
            result: "info".into(),
        });
    }

    /// From the write of one file to its new value being served, minus the
    /// debounce window.
    fn reload_one(&mut self, client: &mut Client, n: usize) {
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
    fn reload_many(&mut self, client: &mut Client, n: usize) {
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
    fn reload_renamed(&mut self, client: &mut Client, n: usize) {
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

    /// `check --staged` (no key, as the pre-commit hook runs it) for a
    /// 10-file commit in a git repository holding the reference store.
    fn check_staged(&mut self) {
        let n = self.options.reference_size();
        let root = self.store_dir(n);
        let git = |args: &[&str]| {
            let out = Command::new("git")
                .arg("-C")
                .arg(&root)
                .args(["-c", "user.name=bench", "-c", "user.email=bench@localhost"])
                .args(["-c", "core.hooksPath=/dev/null", "-c", "gc.auto=0"])
                .args(["-c", "maintenance.auto=false"])
                .args(args)
                .env("HOME", self.work.join("home"))
                .output()
                .expect("run git");
            assert!(
                out.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let t = Instant::now();
        git(&["init", "-q"]);
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "store"]);
        eprintln!(
            "committed the {n}-secret store in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let changed = n.min(10);
        let mut paths = Vec::new();
        for j in 0..changed {
            let i = j * n / changed;
            let rel = gen::secret_id(i).path();
            gen::overwrite(&root.join(&rel), &gen::ciphertext(&self.key, i, 10_000));
            paths.push(rel.to_string_lossy().into_owned());
        }
        let mut add = vec!["add", "--"];
        add.extend(paths.iter().map(String::as_str));
        git(&add);
        let mut without_key = Vec::new();
        let mut with_key = Vec::new();
        for _ in 0..self.options.runs {
            let mut cmd = self.meshseal_cmd();
            cmd.arg("-C").arg(&root).args(["check", "--staged"]);
            without_key.push(timed(cmd));
            let mut cmd = self.meshseal_cmd();
            cmd.arg("-C")
                .arg(&root)
                .arg("-i")
                .arg(&self.key.identity_file)
                .args(["check", "--staged"]);
            with_key.push(timed(cmd));
        }
        let d = median(&mut without_key);
        self.rows.push(Row {
            measurement: format!("`check --staged`, {changed}-file commit, no key (the hook)"),
            secrets: count(n),
            meshseal: ms(d),
            reference: "-".into(),
            ratio: "-".into(),
            target: "< 50 ms".into(),
            result: verdict(d < Duration::from_millis(50), true),
        });
        let d = median(&mut with_key);
        self.rows.push(Row {
            measurement: "`check --staged -i KEY` (decrypts every staged secret)".into(),
            secrets: count(n),
            meshseal: ms(d),
            reference: "-".into(),
            ratio: "-".into(),
            target: "-".into(),
            result: "info".into(),
        });
    }

    /// `apply -f` of the reference store's secrets into an empty store.
    fn apply(&mut self) {
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
        self.rows.push(Row {
            measurement: format!(
                "bulk `apply -f` into an empty store ({:.0} secrets/s)",
                n as f64 / d.as_secs_f64()
            ),
            secrets: count(n),
            meshseal: ms(d),
            reference: "-".into(),
            ratio: "-".into(),
            target: "-".into(),
            result: "info".into(),
        });
    }

    fn print_table(&self) {
        let header = Row {
            measurement: "measurement".into(),
            secrets: "secrets".into(),
            meshseal: "meshseal".into(),
            reference: "floor / peer".into(),
            ratio: "ratio".into(),
            target: "target".into(),
            result: "result".into(),
        };
        let cells = |r: &Row| {
            [
                r.measurement.clone(),
                r.secrets.clone(),
                r.meshseal.clone(),
                r.reference.clone(),
                r.ratio.clone(),
                r.target.clone(),
                r.result.clone(),
            ]
        };
        let mut widths = [0usize; 7];
        for row in std::iter::once(&header).chain(&self.rows) {
            for (w, c) in widths.iter_mut().zip(cells(row)) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |r: &Row| {
            let padded: Vec<String> = cells(r)
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                .collect();
            format!("| {} |", padded.join(" | "))
        };
        println!();
        println!(
            "runs: {} (medians), debounce: {} ms, machine load at the end: {}",
            self.options.runs,
            self.options.debounce.as_millis(),
            load_average()
        );
        println!("{}", line(&header));
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        println!("|-{}-|", rule.join("-|-"));
        for row in &self.rows {
            println!("{}", line(row));
        }
    }
}

struct Peers {
    age: Option<Vec<PathBuf>>,
    sops: Option<Vec<PathBuf>>,
}

/// Kills the watcher however the bench ends.
struct Watcher(Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `meshseal` next to this binary; under `cargo run`, built first (same profile).
fn sibling_meshseal() -> PathBuf {
    let me = std::env::current_exe().expect("own path");
    let dir = me.parent().expect("exe dir");
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--bin", "meshseal"]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build --bin meshseal failed");
    }
    dir.join("meshseal")
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    })
}

fn timed(mut cmd: Command) -> Duration {
    let start = Instant::now();
    let out = cmd.output().expect("run command");
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

/// Runs `cmd` to success: its wall time and its CPU time.
fn timed_cpu(cmd: Command) -> (Duration, Duration) {
    let before = cpu_time(libc::RUSAGE_CHILDREN);
    let wall = timed(cmd);
    (wall, cpu_time(libc::RUSAGE_CHILDREN) - before)
}

/// User + system CPU time of this process (`RUSAGE_SELF`) or of its waited-for
/// children (`RUSAGE_CHILDREN`).
fn cpu_time(who: libc::c_int) -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one rusage into the buffer we own and does
    // nothing else; a zeroed rusage is a valid value either way.
    let usage = unsafe {
        libc::getrusage(who, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn free_loopback_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.local_addr().expect("local addr")
}

fn wait_ready(addr: SocketAddr, token: &str, child: &mut Child) -> Client {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(status) = child.try_wait().expect("watcher status") {
            panic!("the watcher exited early: {status}");
        }
        if let Ok(mut client) = Client::connect(addr, token) {
            if let Ok((200, _)) = client.get("/ready") {
                return client;
            }
        }
        assert!(Instant::now() < deadline, "the watcher never got ready");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn secret_path(i: usize) -> String {
    let id = gen::secret_id(i);
    format!(
        "{}/secrets/{}",
        id.scope.mesh_name().expect("mesh scope"),
        id.name
    )
}

/// Polls the API until secret `i` serves `version`'s data.
fn wait_value(client: &mut Client, i: usize, version: u64) {
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

fn vm_hwm(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

fn print_machine() {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "machine: {cores} cores, {cpu}; load at start: {}",
        load_average()
    );
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (k, c) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Targets are judged on the store size the SPEC states them for.
fn verdict(met: bool, judged: bool) -> String {
    match (judged, met) {
        (false, _) => "info".into(),
        (true, true) => "met".into(),
        (true, false) => "MISSED".into(),
    }
}
