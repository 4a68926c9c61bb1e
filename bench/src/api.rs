//! API reads: latency and throughput of one keep-alive connection, next to
//! an echo server that answers with the same bytes (the floor).

use std::time::{Duration, Instant};

use crate::client::{self, Client};
use crate::pin::{self, Pinned};
use crate::report::{count, median, percentile, us, verdict, Row};
use crate::{gen, Bench};

impl Bench {
    /// `server`: the watcher's process id (its main thread serves the API).
    pub fn api_latency(&mut self, client: &mut Client, server: u32, path: &str, n: usize) {
        let (_, body) = client.get(path).expect("read");
        // This thread is the client of all three; the servers share the
        // other CPU (see `pin`). Unpinned again when the rows are taken.
        let cpus = pin::two_cpus();
        let pins = cpus.and_then(|(mine, theirs)| {
            Some((Pinned::to(None, mine)?, Pinned::to(Some(server), theirs)?))
        });
        let pinned = pins.is_some();
        let server_cpu = cpus.filter(|_| pinned).map(|(_, theirs)| theirs);
        let floor_addr = client::echo_server(body.clone(), server_cpu).expect("floor server");
        let mut floor = Client::connect(floor_addr, "floor").expect("connect to the floor");
        let http_addr = client::http_server(body, server_cpu).expect("HTTP server");
        let mut http = Client::connect(http_addr, "http").expect("connect to the HTTP server");
        for _ in 0..self.options.requests / 10 {
            client.get(path).expect("warm-up read");
            floor.get(path).expect("warm-up read");
            http.get(path).expect("warm-up read");
        }
        let requests = self.options.requests;
        let time_run = |client: &mut Client| {
            client.ready(path).expect("connect again");
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
        // samples[server][statistic]: meshseal, the echo floor, the HTTP
        // server alone; each run times the three in a rotated order.
        let mut samples: [[Vec<Duration>; 3]; 3] = Default::default();
        for run in 0..self.options.runs {
            for slot in 0..3 {
                let server = (run + slot) % 3;
                let timed = time_run(match server {
                    0 => &mut *client,
                    1 => &mut floor,
                    _ => &mut http,
                });
                for (k, value) in timed.into_iter().enumerate() {
                    samples[server][k].push(value);
                }
            }
        }
        let [ours, theirs, stack] = samples;
        let [p50, p99, per_request] = ours.map(|mut v| median(&mut v));
        let [floor_p50, floor_p99, floor_per_request] = theirs.map(|mut v| median(&mut v));
        let [http_p50, http_p99, _] = stack.map(|mut v| median(&mut v));
        self.rows.push(Row {
            measurement: format!(
                "API read of one secret, keep-alive, p50 (p99 {:.0} µs, floor p99 {:.0} µs; {} requests x {} runs; {})",
                us(p99),
                us(floor_p99),
                self.options.requests,
                self.options.runs,
                if pinned {
                    "client and servers on two CPUs"
                } else {
                    "unpinned"
                }
            ),
            secrets: count(n),
            meshseal: format!("{:.0} µs", us(p50)),
            reference: format!("floor {:.0} µs", us(floor_p50)),
            ratio: format!("+{:.0} µs", us(p50.saturating_sub(floor_p50))),
            // SPEC 5: within 15 µs of a bare echo thread's p50.
            target: "p50 ≤ floor + 15 µs".into(),
            result: verdict(p50 <= floor_p50 + Duration::from_micros(15), true),
        });
        self.rows.push(Row {
            measurement: format!(
                "API reference: meshseal's HTTP server alone (hyper, fixed answer, no routing, auth or lookup), p50 (p99 {:.0} µs)",
                us(http_p99)
            ),
            secrets: count(n),
            meshseal: format!("{:.0} µs", us(http_p50)),
            reference: format!("floor {:.0} µs", us(floor_p50)),
            ratio: format!("+{:.0} µs", us(http_p50.saturating_sub(floor_p50))),
            target: "-".into(),
            result: "info".into(),
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
}

pub fn secret_path(i: usize) -> String {
    let id = gen::secret_id(i);
    format!(
        "{}/secrets/{}",
        id.scope.mesh_name().expect("mesh scope"),
        id.name
    )
}
