//! `compare`'s latency rows: one row's measurement (traffic from
//! [`super::probe()`]) with masq's and the scheduler's view of its window,
//! and the summary over `--latency-repeat` runs.

use super::*;

/// One latency row: the path set up, the probe (generator and
/// timestamping sink in one thread, [`probe()`]) in place of the dropping
/// sink, paced stamped traffic over 100k flows at `rate` frames a second.
/// The first second, which makes the sessions, is not timed, and masq's
/// view (and the scheduler's figures) are read from half a second before
/// the timed window to its end (before, from before the generator, which
/// counted the first touches' drops).
pub(super) fn measure_latency(
    cli: &Cli,
    path: &str,
    sink_obj: &std::path::Path,
    rate: u64,
    run: u32,
) -> Res<LatencyRow> {
    interrupted()?;
    let running = start_path(path, cli)?;
    if cli.placement == Placement::Box {
        pin_napi_threads(cli.napi_fifo)?;
    }
    let self_exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let exe = self_exe.to_str().ok_or("exe path")?;
    in_ns("out", &["ip", "link", "set", "dev", "out0", "xdpdrv", "off"])?;
    const SKIP: f64 = 1.0;
    const SCRAPE_LEAD: f64 = 0.5;
    let total = SKIP + cli.seconds;
    let is_masq = matches!(running, Running::Masq(..));
    if is_masq {
        in_ns("nat", &["ip", "link", "set", "lo", "up"])?;
    }
    let mut probe = Command::new("ip")
        .args(["netns", "exec", &format!("{PREFIX}in"), exe, "probe", "--iface", "in0"])
        .args(["--sink-ns", &format!("{PREFIX}out"), "--sink-iface", "out0"])
        .args(["--seconds", &total.to_string(), "--rate", &rate.to_string(), "--skip", &SKIP.to_string()])
        .args(match &cli.latency_tail_log {
            Some(dir) => vec!["--tail-log".into(), dir.join(format!("{path}-{rate}-{run}.txt")).into_os_string()],
            None => vec![],
        })
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("probe: {e}"))?;
    let mut lines = BufReader::new(probe.stdout.take().ok_or("probe stdout")?).lines();
    // Killed if this returns early (an interrupt, an error): it holds the
    // lab's namespaces while it runs.
    let mut probe = Drain(probe);
    match lines.next() {
        Some(Ok(l)) if l == "ready" => {}
        other => return Err(format!("probe did not start: {other:?}")),
    }
    // masq's /metrics at the start of the timed window and after it: its
    // own view of the window. curl on CPU 0, the probe's (which yields),
    // not on the box's.
    let scrape = || -> Option<masq_view::Scrape> {
        let url = "http://127.0.0.1:9091/metrics";
        let ns = format!("{PREFIX}nat");
        let text =
            sh(&["taskset", "-c", "0", "ip", "netns", "exec", &ns, "curl", "-s", "--max-time", "2", url]).ok()?;
        Some(masq_view::parse(&text))
    };
    // Half a second before the timed window, not at its start: a scrape
    // (curl, masq's API thread) takes CPU 0 from the probe for 2-3 ms, and
    // frames that arrive meanwhile wait (2026-11-30). The
    // view then holds the warm-up's second half too (its first touches of
    // the session table are in the first 200 ms).
    let t0 = Instant::now();
    pause(Duration::from_secs_f64(SKIP - SCRAPE_LEAD))?;
    let before = if is_masq { scrape() } else { None };
    let (sched_before, window_from) = (sched_sums(), Instant::now());
    let before_at = t0.elapsed().as_secs_f64();
    let line = lines.find_map(|l| l.ok().filter(|l| l.starts_with("latency_us")));
    let (sched, window) = (sched_before.until(sched_sums()), window_from.elapsed().as_secs_f64());
    let status = probe.0.wait().map_err(|e| format!("probe: {e}"))?;
    interrupted()?;
    // (Read at once: the workers publish every 100 ms; the probe's last
    // half second only receives what is in flight.)
    let masq = match (before, if is_masq { scrape() } else { None }) {
        (Some(b), Some(a)) => Some(masq_view::window(&b, &a)),
        _ => None,
    };
    stop_path(running);
    // The dropping sink back for the next rows.
    in_ns(
        "out",
        &["ip", "link", "set", "dev", "out0", "xdpdrv", "obj", sink_obj.to_str().unwrap_or_default(), "sec", "xdp"],
    )?;
    let line = match line {
        Some(l) if status.success() => l,
        _ => return Err(format!("probe failed ({status})")),
    };
    if before_at > SKIP {
        eprint!("(masq's window began {before_at:.2} s in) ");
    }
    let field = |k: &str| -> u64 {
        line.split_whitespace().find_map(|w| w.strip_prefix(k).and_then(|v| v.parse().ok())).unwrap_or(0)
    };
    Ok(LatencyRow {
        path: path.into(),
        rate,
        n: field("n="),
        p50_us: field("p50="),
        p90_us: field("p90="),
        p99_us: field("p99="),
        p999_us: field("p999="),
        max_us: field("max="),
        probe_stalls: field("stalls="),
        napi_wait_ms: sched.napi_wait as f64 / 1e6,
        worker_wait_ms: sched.worker_wait as f64 / 1e6,
        other_load: if window > 0.0 { 100.0 * sched.other_run() as f64 / 1e9 / window } else { 0.0 },
        steal_ms: sched.steal as f64 / 1e6,
        cdf: parse_cdf(&line),
        masq,
        run,
    })
}

/// Scheduler figures of a latency row's window, summed over threads
/// from /proc/PID/task/TID/schedstat (run time, run_delay: time runnable
/// but waiting for a CPU), in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct SchedSums {
    /// Waited: the NAPI threads of the box's veths (`napi/nat-*`).
    napi_wait: u64,
    /// Waited: masq's workers (`masq-w*`).
    worker_wait: u64,
    /// Ran: the run's own threads (the box's NAPI threads, masq, `compare`,
    /// ksoftirqd).
    ours_run: u64,
    /// Every CPU's busy time (/proc/stat, in ticks of 10 ms): less
    /// `ours_run`, the machine's other load, threads that came and went
    /// within the window included.
    busy: u64,
    /// Every CPU's steal time (/proc/stat, ticks of 10 ms): the hypervisor
    /// ran something else on this VM's CPUs; counted in `busy` too.
    steal: u64,
}

impl SchedSums {
    /// What happened between `self` and `after`.
    fn until(self, after: Self) -> Self {
        Self {
            napi_wait: after.napi_wait.saturating_sub(self.napi_wait),
            worker_wait: after.worker_wait.saturating_sub(self.worker_wait),
            ours_run: after.ours_run.saturating_sub(self.ours_run),
            busy: after.busy.saturating_sub(self.busy),
            steal: after.steal.saturating_sub(self.steal),
        }
    }

    /// CPU time of threads not of the run.
    fn other_run(self) -> u64 {
        self.busy.saturating_sub(self.ours_run)
    }

    /// Adds one thread's schedstat line under its name.
    fn add(&mut self, comm: &str, schedstat: &str) {
        let mut f = schedstat.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
        let (run, wait) = (f.next().unwrap_or(0), f.next().unwrap_or(0));
        if comm.starts_with("napi/nat-") {
            self.napi_wait += wait;
        } else if comm.starts_with("masq-w") {
            self.worker_wait += wait;
        }
        if ["masq", "compare", "ksoftirqd/", "napi/"].iter().any(|p| comm.starts_with(p)) {
            self.ours_run += run;
        }
    }
}

/// [`SchedSums`] now, read from a thread on CPU 0 (the probe's), not on
/// the box's.
fn sched_sums() -> SchedSums {
    std::thread::spawn(|| {
        core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
        // USER_HZ: 100.
        let (cpus, steal) = cpu_times_and_steal();
        let busy = cpus.iter().map(|&(b, _)| b).sum::<u64>() * 10_000_000;
        let steal = steal * 10_000_000;
        let mut sums = SchedSums { busy, steal, ..SchedSums::default() };
        let Ok(procs) = std::fs::read_dir("/proc") else { return sums };
        for p in procs.flatten() {
            if !p.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(tasks) = std::fs::read_dir(p.path().join("task")) else { continue };
            for t in tasks.flatten() {
                let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
                sums.add(comm.trim_end(), &std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default());
            }
        }
        sums
    })
    .join()
    .unwrap_or_default()
}

/// The sink's `cdf=q:us,...` field.
fn parse_cdf(line: &str) -> Vec<(f64, u64)> {
    let Some(list) = line.split_whitespace().find_map(|w| w.strip_prefix("cdf=")) else { return Vec::new() };
    list.split(',')
        .filter_map(|p| p.split_once(':'))
        .filter_map(|(q, v)| Some((q.parse().ok()?, v.parse().ok()?)))
        .collect()
}

pub(super) fn print_latency(rows: &[LatencyRow]) {
    if rows.is_empty() {
        return;
    }
    println!("\n| latency, 100k flows | offered | run | p50 | p90 | p99 | p99.9 | max | frames timed | probe stalls | NAPI / worker waited | other load (steal) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} pps | {} | {} us | {} us | {} us | {} us | {} us | {} | {} | {:.0} / {:.0} ms | {:.0}% ({:.0} ms) |",
            r.path,
            r.rate,
            r.run,
            r.p50_us,
            r.p90_us,
            r.p99_us,
            r.p999_us,
            r.max_us,
            r.n,
            r.probe_stalls,
            r.napi_wait_ms,
            r.worker_wait_ms,
            r.other_load,
            r.steal_ms
        );
    }
    let summary = latency_summary(rows);
    if summary.iter().any(|s| s.runs > 1) {
        println!("\n| latency over runs | offered | runs | median p99.9 | median max | p99.9 range | max range |");
        println!("|---|---|---|---|---|---|---|");
        for s in &summary {
            println!(
                "| {} | {} pps | {} | {} us | {} us | {}-{} us | {}-{} us |",
                s.path,
                s.rate,
                s.runs,
                s.median_p999_us,
                s.median_max_us,
                s.p999_us.0,
                s.p999_us.1,
                s.max_us.0,
                s.max_us.1
            );
        }
    }
    // masq's own view: a long tail beside short rounds is time the worker
    // was not running or frames waited in a ring, not a slow round.
    let masq: Vec<_> = rows.iter().filter_map(|r| r.masq.as_ref().map(|m| (r, m))).collect();
    if masq.is_empty() {
        return;
    }
    println!("\n| masq's view of the window | offered | rounds | round p50 | round p99 | round p99.9 | rounds > 1 ms | fill_ring_empty | rx_ring_full |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (r, m) in masq {
        let b = |us| if m.rounds == 0 { "-".to_string() } else { masq_view::bound(us) };
        println!(
            "| {} | {} pps | {} | {} | {} | {} | {} | {} | {} |",
            r.path,
            r.rate,
            m.rounds,
            b(m.round_p50_us_le),
            b(m.round_p99_us_le),
            b(m.round_p999_us_le),
            m.rounds_over_1ms,
            m.fill_ring_empty,
            m.rx_ring_full
        );
    }
}

/// One path's latency at one rate over the runs of `--latency-repeat`.
#[derive(serde::Serialize, Clone, Debug, PartialEq)]
pub(super) struct LatencySummary {
    path: String,
    rate: u64,
    runs: usize,
    median_p999_us: u64,
    median_max_us: u64,
    /// Lowest and highest over the runs.
    p999_us: (u64, u64),
    max_us: (u64, u64),
}

/// The median (of an even count, the mean of the middle two), 0 for none.
fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    match v.len() {
        0 => 0,
        n if n % 2 == 1 => v.get(n / 2).copied().unwrap_or(0),
        n => {
            let (a, b) = (v.get(n / 2 - 1).copied().unwrap_or(0), v.get(n / 2).copied().unwrap_or(0));
            a / 2 + b / 2 + (a % 2 + b % 2) / 2
        }
    }
}

/// Per path and rate (in the rows' order), the median p99.9 and max over runs.
pub(super) fn latency_summary(rows: &[LatencyRow]) -> Vec<LatencySummary> {
    let mut keys: Vec<(&str, u64)> = Vec::new();
    for r in rows {
        if !keys.contains(&(r.path.as_str(), r.rate)) {
            keys.push((r.path.as_str(), r.rate));
        }
    }
    keys.into_iter()
        .map(|(path, rate)| {
            let of = |f: fn(&LatencyRow) -> u64| -> Vec<u64> {
                rows.iter().filter(|r| r.path == path && r.rate == rate).map(f).collect()
            };
            let (p999, max) = (of(|r| r.p999_us), of(|r| r.max_us));
            let range = |v: &[u64]| (v.iter().copied().min().unwrap_or(0), v.iter().copied().max().unwrap_or(0));
            LatencySummary {
                path: path.into(),
                rate,
                runs: p999.len(),
                p999_us: range(&p999),
                max_us: range(&max),
                median_p999_us: median(p999),
                median_max_us: median(max),
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code
mod tests {
    use super::*;

    #[test]
    fn the_generators_line_and_the_sinks_cdf_are_read_back() {
        assert_eq!(parse_sent("sent 1234 seconds 0.5\n"), Some((1234, 0.5)));
        assert_eq!(parse_sent("sent 1234\n"), None);
        let line = "latency_us n=3 p50=20 p90=30 p99=40 p999=50 max=60 cdf=0.5:20,0.99:40,1:60";
        assert_eq!(parse_cdf(line), [(0.5, 20), (0.99, 40), (1.0, 60)]);
        assert!(parse_cdf("latency_us n=0").is_empty());
    }

    #[test]
    fn repeated_latency_runs_give_each_path_its_median_and_range() {
        let lat = |path: &str, run, p999_us, max_us| LatencyRow {
            path: path.into(),
            run,
            rate: 100_000,
            p999_us,
            max_us,
            ..LatencyRow::default()
        };
        let rows = [
            lat("kernel-nat", 1, 400, 900),
            lat("masq-nat", 1, 300, 5000),
            lat("kernel-nat", 2, 4000, 6000),
            lat("masq-nat", 2, 200, 700),
            lat("kernel-nat", 3, 500, 1000),
            lat("masq-nat", 3, 250, 800),
        ];
        let s = latency_summary(&rows);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].path.as_str(), s[0].runs), ("kernel-nat", 3));
        assert_eq!((s[0].median_p999_us, s[0].median_max_us), (500, 1000), "one bad run does not move the median");
        assert_eq!((s[0].p999_us, s[0].max_us), ((400, 4000), (900, 6000)));
        assert_eq!((s[1].median_p999_us, s[1].median_max_us), (250, 800));
        assert_eq!(median(vec![4, 1, 3, 2]), 2, "even count: the mean of the middle two");
        assert_eq!(median(vec![]), 0);
        let cli = Cli::parse_from(["compare", "--latency-repeat", "3"]);
        assert_eq!(cli.latency_repeat, 3);
        assert!(Cli::try_parse_from(["compare", "--latency-repeat", "0"]).is_err());
        let v = report_json(&cli, &Machine::read(Placement::Box, 0), &[], &rows, &[], &[]);
        assert_eq!(v["latency_summary"][1]["median_p999_us"], 250, "{v}");
        assert_eq!(v["latency"][2]["run"], 2);
    }

    #[test]
    fn the_box_threads_waits_and_the_other_loads_run_are_told_apart() {
        let mut a = SchedSums::default();
        a.add("napi/nat-in-104", "500 7000 3");
        a.add("napi/nat-out-105", "500 1000 3");
        a.add("masq-w0", "900 2000 5");
        a.add("masq-api", "900 2000 5");
        a.add("compare", "900 2000 5");
        a.add("ksoftirqd/1", "900 2000 5");
        a.add("rustc", "4000 10 1");
        a.add("opt cgu.0", "1000 10 1");
        assert_eq!(
            a,
            SchedSums { napi_wait: 8000, worker_wait: 2000, ours_run: 4600, ..SchedSums::default() },
            "rustc is not ours"
        );
        a.busy = 6000;
        assert_eq!(a.other_run(), 1400);
        let mut b = a;
        b.add("masq-w0", "250 0 1");
        b.busy += 400;
        let d = a.until(b);
        assert_eq!((d.ours_run, d.other_run()), (250, 150));
        assert_eq!(b.until(a), SchedSums::default(), "a counter that went back (a thread ended) gives 0");
        let now = sched_sums();
        assert!(now.busy > 0 && now.ours_run > 0, "this test runs in `compare`: {now:?}");
        assert!(now.steal <= now.busy);
        assert_eq!(SchedSums { steal: 5, ..SchedSums::default() }.until(SchedSums { steal: 7, ..now }).steal, 2);
    }
}
