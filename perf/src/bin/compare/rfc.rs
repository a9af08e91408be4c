//! `compare --rfc9693`: RFC 9693's stateful NAT benchmarks for the kernel's
//! nftables masquerade (`kernel-nat`) and masq (`masq-nat`), side by side.
//!
//! - throughput with RFC 4814 pseudorandom ports: the `rfc4814` scenario
//!   row of the main table (phase 1 makes every session, phase 2 draws
//!   ports; `perf::rfc9693`).
//! - `conn-rate`, maximum connection establishment rate: every frame a new flow, paced; a trial passes when nothing is
//!   lost (`--loss-tolerance`); the highest rate first, then a binary search
//!   of `--search-steps` trials, each on a freshly started path (empty
//!   tables) for `--trial-seconds`.
//! - `teardown`, connection tear-down rate: each trial, on a freshly
//!   started path, opens `--teardown-sessions` TCP sessions with a SYN each
//!   (paced at `--open-pps`), then closes them with a RST each at the
//!   trial's rate. It passes when every RST came through (the sink's
//!   counter, read every millisecond) and every session the SYNs opened has
//!   left `syn_sent` (masq's /metrics census, the kernel's conntrack table,
//!   before and after). The same search as conn-rate finds the highest
//!   passing rate. Neither NAT needs to free a reset session at once
//!   (conntrack deletes an unreplied one, masq keeps it 4 min in `close`,
//!   RFC 7857 section 2.2), so "closed" is the state change, not the
//!   slot's release.
//! - `capacity`, connection tracking table capacity: both
//!   NATs get the same limit (`--table-size`: nf_conntrack_max and masq's
//!   `--max-sessions`), then 1.5 times as many new flows, paced at
//!   `--capacity-pps`. Reported: the sessions the box held after, the
//!   frames it refused (lost) and the sessions it evicted. Both evict an
//!   unreplied session when full (netfilter's early drop, FAQ 3.17), so
//!   unreplied test flows are evicted rather than refused.
//!
//! Every measurement is bounded: by its count of frames and by seconds
//! (a trial's, or 30 s of waiting at most).
use super::*;
use perf::rfc9693::Trial;
use std::collections::BTreeMap;

/// The throughput row (the `rfc4814` scenario).
pub const THROUGHPUT: &str = "throughput";
const CONN_RATE: &str = "conn-rate";
const TEARDOWN: &str = "teardown";
const CAPACITY: &str = "capacity";
const TESTS: [&str; 4] = [THROUGHPUT, CONN_RATE, TEARDOWN, CAPACITY];
/// The paths the rows measure (the stateful ones).
const NAT_PATHS: [&str; 2] = ["kernel-nat", "masq-nat"];

/// One RFC 9693 row.
#[derive(serde::Serialize, Clone, Debug)]
pub struct RfcRow {
    /// conn-rate, teardown or capacity.
    pub test: String,
    pub path: String,
    /// The result: connections per second, sessions per second or sessions.
    pub value: f64,
    pub unit: String,
    /// Wall time the row took, seconds.
    pub seconds: f64,
    /// How it was found, in words.
    pub detail: String,
    /// conn-rate's trials, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trials: Vec<Trial>,
    /// The counts behind the value (sessions opened, closed, held, ...).
    pub figures: BTreeMap<&'static str, u64>,
}

/// The options the rows ran with (in the JSON and above the table).
#[derive(serde::Serialize)]
pub struct Options {
    open_pps: u64,
    search_max: u64,
    search_steps: u32,
    trial_seconds: f64,
    loss_tolerance_percent: f64,
    teardown_sessions: u64,
    table_size: u32,
    capacity_pps: u64,
    grid_hosts: Option<u32>,
    rfc4814_grid: rfc9693::Grid,
}

impl Options {
    pub fn of(cli: &Cli) -> Options {
        Options {
            open_pps: cli.open_pps,
            search_max: cli.search_max,
            search_steps: cli.search_steps,
            trial_seconds: cli.trial_seconds,
            loss_tolerance_percent: cli.loss_tolerance,
            teardown_sessions: cli.teardown_sessions,
            table_size: cli.table_size,
            capacity_pps: cli.capacity_pps,
            grid_hosts: cli.grid,
            rfc4814_grid: rfc9693::Grid::RFC4814,
        }
    }
}

/// The tests `--rfc9693` names, in the table's order.
pub fn selected(cli: &Cli) -> Res<Vec<String>> {
    let Some(names) = &cli.rfc9693 else { return Ok(Vec::new()) };
    if names.iter().any(|n| n == "all") {
        return Ok(TESTS.map(String::from).to_vec());
    }
    if let Some(n) = names.iter().find(|n| !TESTS.contains(&n.as_str())) {
        return Err(format!("--rfc9693 {n}: not a row (throughput, conn-rate, teardown, capacity)"));
    }
    Ok(TESTS.iter().filter(|t| names.iter().any(|n| n == *t)).map(|t| t.to_string()).collect())
}

/// A test's name in the table.
pub fn title(test: &str) -> &'static str {
    match test {
        CONN_RATE => "maximum connection establishment rate",
        TEARDOWN => "connection tear-down rate (RST)",
        CAPACITY => "connection table capacity",
        _ => "?",
    }
}

/// Runs the selected rows (not `throughput`: a scenario row) on the NAT paths.
pub fn run(cli: &Cli, tests: &[String], paths: &[String]) -> Res<Vec<RfcRow>> {
    let mut rows = Vec::new();
    let nat: Vec<&str> = NAT_PATHS.iter().copied().filter(|p| paths.iter().any(|x| x == p)).collect();
    for test in tests.iter().filter(|t| *t != THROUGHPUT) {
        if nat.is_empty() {
            eprintln!("rfc9693 {test}: skipped (neither kernel-nat nor masq-nat in --paths)");
        }
        for path in &nat {
            eprint!("rfc9693 {test:<10} {path:<13} ... ");
            let _ = std::io::stderr().flush();
            let t0 = Instant::now();
            let mut row = match test.as_str() {
                CONN_RATE => conn_rate(cli, path)?,
                TEARDOWN => teardown(cli, path)?,
                _ => capacity(cli, path)?,
            };
            row.seconds = t0.elapsed().as_secs_f64();
            eprintln!("{:.0} {} ({:.0} s): {}", row.value, row.unit, row.seconds, row.detail);
            rows.push(row);
        }
    }
    Ok(rows)
}

fn row(test: &str, path: &str, value: f64, unit: &str, detail: String) -> RfcRow {
    RfcRow {
        test: test.into(),
        path: path.into(),
        value,
        unit: unit.into(),
        seconds: 0.0,
        detail,
        trials: Vec::new(),
        figures: BTreeMap::new(),
    }
}

/// The generator's arguments for `compare gen` in the subscriber's namespace.
fn gen_command(args: &[String]) -> Res<Command> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &format!("{PREFIX}in")]).arg(exe).args(["gen", "--iface", "in0"]).args(args);
    Ok(c)
}

/// The frames the generator sent and the seconds it took.
fn sent_of(out: &std::process::Output) -> Res<(u64, f64)> {
    parse_sent(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| format!("generator failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
}

/// Runs the generator to its end; returns the frames it sent and the seconds it took.
fn generate_all(args: &[String]) -> Res<(u64, f64)> {
    let out = gen_command(args)?.stderr(Stdio::piped()).output().map_err(|e| format!("generator: {e}"))?;
    sent_of(&out)
}

fn a<T: ToString>(v: T) -> String {
    v.to_string()
}

fn fresh(cli: &Cli, path: &str, max_sessions: u32) -> Res<Running> {
    interrupted()?;
    let running = start_path_sized(path, cli, max_sessions)?;
    if cli.placement == Placement::Box {
        pin_napi_threads(cli.napi_fifo)?;
    }
    Ok(running)
}

/// One conn-rate trial: a fresh path, new flows at `rate` for `--trial-seconds`.
fn conn_trial(cli: &Cli, path: &str, rate: u64) -> Res<Trial> {
    let running = fresh(cli, path, 2_097_152)?;
    let c0 = sink_count()?;
    let sent = generate_all(&[
        a("--scenario"),
        a("new"),
        a("--pps"),
        a(rate),
        a("--seconds"),
        a(cli.trial_seconds),
        a("--count"),
        a(whole((rate as f64 * cli.trial_seconds).ceil())),
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let c1 = sink_count();
    stop_path(running);
    let ((sent, secs), received) = (sent?, c1?.saturating_sub(c0));
    let pass = within(received, sent, cli.loss_tolerance) && sent > 0;
    Ok(Trial { rate, offered: rfc9693::per_second(sent, secs), sent, received, pass })
}

/// True if `got` falls short of `of` by no more than `tolerance` percent.
fn within(got: u64, of: u64, tolerance: f64) -> bool {
    got as f64 >= of as f64 * (1.0 - tolerance / 100.0)
}

/// The trials in words, and a note when the best one was the generator's limit.
fn trials_text(trials: &[Trial], best: Option<Trial>, note: impl Fn(usize) -> String) -> String {
    let list: Vec<String> = trials
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let lost = t.sent.saturating_sub(t.received);
            let verdict = if t.pass { "pass".into() } else { format!("lost {lost}") };
            // A trial the generator could not offer at the rate asked says so.
            let asked =
                if t.offered < 0.95 * t.rate as f64 { format!(" (asked {}k)", t.rate / 1000) } else { String::new() };
            format!("{:.0}k{asked} {verdict}{}", t.offered / 1000.0, note(i))
        })
        .collect();
    let mut text = format!("{} trials: {}", trials.len(), list.join(", "));
    if best.is_some_and(|b| b.offered < 0.95 * b.rate as f64) {
        text.push_str("; the generator could not offer more (its limit, not the path's)");
    }
    text
}

fn conn_rate(cli: &Cli, path: &str) -> Res<RfcRow> {
    let (best, trials) = rfc9693::search(cli.search_max, cli.search_steps, |r| conn_trial(cli, path, r))?;
    let detail = format!("{} s each, {}", cli.trial_seconds, trials_text(&trials, best, |_| String::new()));
    let mut r = row(CONN_RATE, path, best.map_or(0.0, |b| b.offered), "conn/s", detail);
    r.trials = trials;
    Ok(r)
}

/// The box's sessions in `state` (conntrack's names, any case), or all.
fn box_sessions(path: &str, state: Option<&str>) -> Res<u64> {
    if path.starts_with("masq") {
        return Ok(sessions_in(&masq_metrics()?, state));
    }
    match state {
        None => in_ns("nat", &["conntrack", "-C"])?.trim().parse().map_err(|e| format!("conntrack -C: {e}")),
        Some(st) => {
            // conntrack -L prints the entries (not wanted) and their count on stderr.
            let ns = format!("{PREFIX}nat");
            let st = st.to_uppercase();
            let out = Command::new("ip")
                .args(["netns", "exec", &ns, "conntrack", "-L", "-p", "tcp", "--state", &st])
                .stdout(Stdio::null())
                .output()
                .map_err(|e| format!("conntrack -L: {e}"))?;
            let err = String::from_utf8_lossy(&out.stderr);
            err.split_whitespace()
                .zip(err.split_whitespace().skip(1))
                .find_map(|(n, w)| if w == "flow" { n.parse().ok() } else { None })
                .ok_or_else(|| format!("conntrack -L: {}", err.trim()))
        }
    }
}

/// The sessions in `state` (any case; all but the placeholder `any`
/// series when none) in masq's /metrics text.
fn sessions_in(metrics: &str, state: Option<&str>) -> u64 {
    let want = state.map(str::to_lowercase);
    whole(
        metrics
            .lines()
            .filter_map(|l| l.strip_prefix("masq_sessions{"))
            .filter_map(|l| l.split_once("} "))
            .filter(|(labels, _)| {
                let st = labels.split(',').find_map(|kv| kv.strip_prefix("state=\"")).map(|v| v.trim_end_matches('"'));
                match (&want, st) {
                    (Some(w), Some(st)) => st == w,
                    (None, Some(st)) => st != "any",
                    _ => false,
                }
            })
            .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
            .sum::<f64>(),
    )
}

/// masq's /metrics (its API on the box's loopback; it may still be
/// binding just after masq said it forwards: tried for 5 s).
fn masq_metrics() -> Res<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match in_ns("nat", &["curl", "-sSf", "--max-time", "5", "http://127.0.0.1:9091/metrics"]) {
            Ok(text) => return Ok(text),
            Err(e) if Instant::now() > deadline => return Err(format!("masq's /metrics: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The first value of a metric line starting with `prefix`, 0 if none.
fn metric(text: &str, prefix: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(prefix).and_then(|v| v.trim().parse::<f64>().ok())).map_or(0, whole)
}

/// Sessions the box evicted and new flows it refused for a full table:
/// masq's counters, or the kernel's `conntrack -S` (early_drop, drop).
fn box_evictions(path: &str) -> Res<(u64, u64)> {
    if path.starts_with("masq") {
        let text = masq_metrics()?;
        return Ok((
            metric(&text, "masq_sessions_events_total{event=\"evicted\"}"),
            metric(&text, "masq_drops_total{reason=\"table_full\"}"),
        ));
    }
    let stats = in_ns("nat", &["conntrack", "-S"])?;
    let sum = |key: &str| -> u64 {
        stats.split_whitespace().filter_map(|w| w.strip_prefix(key)).filter_map(|v| v.parse::<u64>().ok()).sum()
    };
    Ok((sum("early_drop="), sum("drop=")))
}

/// A counter of the outside router's received frames read without a
/// process per read: from /proc/PID/net/dev of a process parked in its
/// namespace.
struct SinkCounter {
    child: Child,
}

impl SinkCounter {
    fn new() -> Res<Self> {
        let child = Command::new("ip")
            .args(["netns", "exec", &format!("{PREFIX}out"), "sleep", "120"])
            .spawn()
            .map_err(|e| format!("sleep in {PREFIX}out: {e}"))?;
        let c = SinkCounter { child };
        // `ip netns exec` enters the namespace, then becomes `sleep`.
        let deadline = Instant::now() + Duration::from_secs(2);
        while c.read().is_err() {
            if Instant::now() > deadline {
                return Err("the outside router's counter did not show".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(c)
    }

    fn read(&self) -> Res<u64> {
        let dev = std::fs::read_to_string(format!("/proc/{}/net/dev", self.child.id())).map_err(|e| e.to_string())?;
        dev.lines()
            .find_map(|l| l.trim_start().strip_prefix("out0:"))
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| "out0 not in /proc/net/dev".into())
    }
}

impl Drop for SinkCounter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn teardown(cli: &Cli, path: &str) -> Res<RfcRow> {
    let n = cli.teardown_sessions;
    let mut figures = Vec::new();
    let (best, trials) = rfc9693::search(cli.search_max, cli.search_steps, |rate| {
        let running = fresh(cli, path, 2_097_152)?;
        let result = teardown_trial(cli, path, n, rate);
        stop_path(running);
        let (trial, f) = result?;
        figures.push(f);
        Ok::<_, String>(trial)
    })?;
    let note = |i: usize| {
        figures.get(i).map_or(String::new(), |f| {
            let get = |k: &str| f.get(k).copied().unwrap_or(0);
            format!(" ({} opened, {} left open)", get("opened"), get("still_open"))
        })
    };
    let text = trials_text(&trials, best, note);
    let at = |t: Option<Trial>| t.and_then(|b| trials.iter().position(|x| *x == b)).and_then(|i| figures.get(i));
    let mut r = row(TEARDOWN, path, best.map_or(0.0, |b| b.offered), "sessions/s", String::new());
    r.detail = match at(best) {
        Some(f) => format!(
            "{n} sessions each trial; at the best, {} opened, {} closed ({} left), the RSTs through in {:.3} s; {}",
            f.get("opened").copied().unwrap_or(0),
            f.get("closed").copied().unwrap_or(0),
            f.get("still_open").copied().unwrap_or(0),
            f.get("window_us").copied().unwrap_or(0) as f64 / 1e6,
            text
        ),
        None => format!("{n} sessions each trial; {text}"),
    };
    r.figures = at(best).cloned().unwrap_or_default();
    r.trials = trials;
    Ok(r)
}

/// One tear-down trial on a fresh path: `n` sessions opened with SYNs at
/// `--open-pps`, then closed with RSTs at `rate`. It passes when every RST
/// came through and no session the SYNs opened is left in `syn_sent`.
fn teardown_trial(cli: &Cli, path: &str, n: u64, rate: u64) -> Res<(Trial, BTreeMap<&'static str, u64>)> {
    let open_secs = n as f64 / cli.open_pps.max(1) as f64 + 2.0;
    let (syns, _) = generate_all(&[
        a("--scenario"),
        a("syn"),
        a("--count"),
        a(n),
        a("--pps"),
        a(cli.open_pps),
        a("--seconds"),
        a(open_secs),
    ])?;
    std::thread::sleep(Duration::from_millis(300));
    let opened = box_sessions(path, Some("syn_sent"))?;
    let counter = SinkCounter::new()?;
    let c0 = counter.read()?;
    let rst_secs = n as f64 / rate.max(1) as f64 + 5.0;
    let mut gen = gen_command(&[
        a("--scenario"),
        a("rst"),
        a("--count"),
        a(n),
        a("--pps"),
        a(rate),
        a("--seconds"),
        a(rst_secs),
    ])?
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .map_err(|e| format!("generator: {e}"))?;
    let (first, last, seen) = watch(&counter, &mut gen, c0, n, rst_secs + 1.0)?;
    let (sent, gen_secs) = sent_of(&gen.wait_with_output().map_err(|e| format!("generator: {e}"))?)?;
    // The census (masq) and conntrack see the last RSTs.
    std::thread::sleep(Duration::from_millis(300));
    let still = box_sessions(path, Some("syn_sent"))?;
    let closed = opened.saturating_sub(still);
    let through = seen - c0;
    let secs = first.map_or(0.0, |f| (last - f).as_secs_f64());
    let pass = within(through, sent, cli.loss_tolerance) && within(closed, opened, cli.loss_tolerance) && opened > 0;
    let trial = Trial { rate, offered: rfc9693::per_second(sent, gen_secs), sent, received: through, pass };
    let figures = BTreeMap::from([
        ("syns_sent", syns),
        ("opened", opened),
        ("rsts_sent", sent),
        ("rsts_through", through),
        ("closed", closed),
        ("still_open", still),
        ("window_us", whole(secs * 1e6)),
        ("closed_per_s_in_window", whole(rfc9693::per_second(closed, secs))),
    ]);
    Ok((trial, figures))
}

/// Reads the sink's counter every millisecond while the generator `gen`
/// runs and until it has been quiet for 300 ms (or `n` frames came, or
/// `max_secs` passed): when the first frame came, when the last, the count.
fn watch(
    counter: &SinkCounter,
    gen: &mut Child,
    c0: u64,
    n: u64,
    max_secs: f64,
) -> Res<(Option<Instant>, Instant, u64)> {
    let (mut first, mut last, mut seen) = (None, Instant::now(), c0);
    let deadline = Instant::now() + Duration::from_secs_f64(max_secs);
    let mut gen_done: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let c = counter.read()?;
        if c != seen {
            first.get_or_insert(now);
            last = now;
            seen = c;
        }
        if gen_done.is_none() && gen.try_wait().ok().flatten().is_some() {
            gen_done = Some(now);
        }
        let quiet =
            gen_done.is_some_and(|t| now - t > Duration::from_millis(300)) && now - last > Duration::from_millis(300);
        if seen - c0 >= n || quiet || now > deadline {
            return Ok((first, last, seen));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn capacity(cli: &Cli, path: &str) -> Res<RfcRow> {
    let limit = cli.table_size;
    let kernel = !path.starts_with("masq");
    if kernel {
        ConntrackLimits::set_max(&limit.to_string())?;
    }
    let result = fresh(cli, path, limit).and_then(|running| {
        let r = capacity_on(cli, path, limit);
        stop_path(running);
        r
    });
    if kernel {
        let _ = ConntrackLimits::set_max(RAISED_CT_MAX);
    }
    result
}

fn capacity_on(cli: &Cli, path: &str, limit: u32) -> Res<RfcRow> {
    let offered = u64::from(limit) * 3 / 2;
    let (ev0, ref0) = box_evictions(path)?;
    let c0 = sink_count()?;
    let (sent, _) = generate_all(&[
        a("--scenario"),
        a("new"),
        a("--count"),
        a(offered),
        a("--pps"),
        a(cli.capacity_pps),
        a("--seconds"),
        a(offered as f64 / cli.capacity_pps.max(1) as f64 + 2.0),
    ])?;
    std::thread::sleep(Duration::from_millis(300));
    let received = sink_count()?.saturating_sub(c0);
    let held = box_sessions(path, None)?;
    let (ev1, ref1) = box_evictions(path)?;
    let (evicted, refused_box) = (ev1.saturating_sub(ev0), ref1.saturating_sub(ref0));
    let lost = sent.saturating_sub(received);
    let detail = format!(
        "limit {limit}: {sent} new flows at {}/s; held {held}; {lost} frames lost ({refused_box} refused for a full table by the box's count), {evicted} sessions evicted",
        cli.capacity_pps
    );
    let mut r = row(CAPACITY, path, held as f64, "sessions", detail);
    r.figures = BTreeMap::from([
        ("limit", u64::from(limit)),
        ("sent", sent),
        ("received", received),
        ("held", held),
        ("lost", lost),
        ("refused_full", refused_box),
        ("evicted", evicted),
    ]);
    Ok(r)
}

/// The RFC 9693 table: one line per test, a column per path, the ratio.
pub fn print(cli: &Cli, rows: &[RfcRow]) {
    if rows.is_empty() {
        return;
    }
    let o = Options::of(cli);
    println!(
        "\nRFC 9693 (options: open {}/s; conn-rate up to {}/s, {} steps of {} s, loss tolerance {}%; teardown {} sessions; capacity limit {} at {}/s):",
        o.open_pps, o.search_max, o.search_steps, o.trial_seconds, o.loss_tolerance_percent, o.teardown_sessions, o.table_size, o.capacity_pps
    );
    println!("\n| RFC 9693 | kernel-nat | masq-nat | masq-nat / kernel-nat |");
    println!("|---|---|---|---|");
    for test in [CONN_RATE, TEARDOWN, CAPACITY] {
        let get = |p: &str| rows.iter().find(|r| r.test == test && r.path == p);
        let (k, m) = (get("kernel-nat"), get("masq-nat"));
        let Some(any) = k.or(m) else { continue };
        let cell = |r: Option<&RfcRow>| r.map_or("-".to_string(), |r| format!("{:.0}", r.value));
        let ratio = match (m, k) {
            (Some(m), Some(k)) if k.value > 0.0 => format!("{:.2}x", m.value / k.value),
            _ => "-".into(),
        };
        println!("| {} ({}) | {} | {} | {} |", title(test), any.unit, cell(k), cell(m), ratio);
    }
    println!("\nper RFC 9693 row:");
    for r in rows {
        println!("  {:<10} {:<11} {}", r.test, r.path, r.detail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_counts_come_from_masqs_census_by_state() {
        let text = "# HELP masq_sessions Live sessions by protocol and state.\n\
            masq_sessions{protocol=\"tcp\",state=\"any\"} 0\n\
            masq_sessions{protocol=\"tcp\",state=\"syn_sent\"} 7\n\
            masq_sessions{protocol=\"tcp\",state=\"close\"} 3\n\
            masq_sessions{protocol=\"udp\",state=\"udp\"} 5\n\
            masq_sessions_events_total{event=\"evicted\"} 9\n";
        assert_eq!(sessions_in(text, Some("SYN_SENT")), 7, "conntrack's name, masq's series");
        assert_eq!(sessions_in(text, Some("close")), 3);
        assert_eq!(sessions_in(text, None), 15, "every state, not the events");
        assert_eq!(metric(text, "masq_sessions_events_total{event=\"evicted\"}"), 9);
        assert!(within(99, 100, 1.0) && !within(98, 100, 1.0) && within(100, 100, 0.0) && !within(99, 100, 0.0));
    }

    #[test]
    fn rows_are_picked_by_name_or_all() {
        let cli = |args: &[&str]| Cli::parse_from(std::iter::once("compare").chain(args.iter().copied()));
        assert!(selected(&cli(&[])).unwrap().is_empty());
        assert_eq!(selected(&cli(&["--rfc9693"])).unwrap(), TESTS.to_vec());
        assert_eq!(selected(&cli(&["--rfc9693", "capacity,conn-rate"])).unwrap(), [CONN_RATE, CAPACITY]);
        assert!(selected(&cli(&["--rfc9693", "speed"])).is_err());
    }
}
