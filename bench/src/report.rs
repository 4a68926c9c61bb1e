//! The result table and the numbers in it.

use std::fs;
use std::time::Duration;

use crate::Bench;

/// One line of the result table.
pub struct Row {
    pub measurement: String,
    pub secrets: String,
    pub meshseal: String,
    pub reference: String,
    pub ratio: String,
    pub target: String,
    pub result: String,
}

impl Bench {
    pub fn print_table(&self) {
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

pub fn print_machine() {
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

pub fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

/// The median of each run's own ratio, `a[i]` over `b[i]` (timed next to
/// each other in run `i`): a drift of the machine between runs, which moves
/// both sides of a pair alike, cancels here and not in the ratio of the
/// medians.
pub fn paired_ratio(a: &[Duration], b: &[Duration]) -> f64 {
    let mut ratios: Vec<f64> = a.iter().zip(b).map(|(&a, &b)| ratio(a, b)).collect();
    ratios.sort_by(f64::total_cmp);
    ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN)
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub fn count(n: usize) -> String {
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
pub fn verdict(met: bool, judged: bool) -> String {
    match (judged, met) {
        (false, _) => "info".into(),
        (true, true) => "met".into(),
        (true, false) => "MISSED".into(),
    }
}
