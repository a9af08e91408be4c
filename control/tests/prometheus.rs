//! masq's operator kit against the real Prometheus tools (Debian's
//! `prometheus` 2.42, installed by deploy/setup.sh), in the namespace lab
//! (root; CI is root):
//! - `promtool check metrics` finds nothing to say about a real masq's
//!   `/metrics` under traffic (names, types, help, units);
//! - a real Prometheus server in the box's namespace scrapes masq every
//!   second with deploy/prometheus/alerts.yml loaded: every rule evaluates
//!   without error, and every query of the Grafana dashboard
//!   (deploy/grafana/masq.json) and every rule's expression evaluates, with
//!   every `masq_` series it names present; a healthy masq raises no alert,
//!   and a stopped one makes `MasqDown` pending.

mod lab;

use lab::{Lab, UDP_CLIENT, UDP_ECHO};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The lab's SNAT, and the control API Prometheus scrapes.
fn config() -> String {
    lab::snat_config("", "control:\n  listen: 127.0.0.1:9091\n")
}

/// Starts masq with [`config`], an echo server outside, and sends a little
/// traffic (UDP both ways and a ping) so the counters and the round-time
/// histogram have something in them.
fn start_with_traffic(lab: &mut Lab) {
    std::fs::write(lab.dir.join("masq.yaml"), config()).expect("config file");
    let cfg = lab.dir.join("masq.yaml");
    lab.start_masq_with(&["run", "--config", cfg.to_str().expect("utf-8 path")]);
    lab.spawn("out", &["python3", "-c", UDP_ECHO, "198.51.100.1", "5353"], "echo.log");
    std::thread::sleep(Duration::from_millis(300));
    let out = lab.ok("in", &["python3", "-c", UDP_CLIENT, "198.51.100.1", "5353", "20", "200"]);
    assert!(out.contains("echoed 20 of 20"), "{out}");
    lab.ok("in", &["ping", "-c", "2", "-i", "0.2", "198.51.100.1"]);
    std::thread::sleep(Duration::from_millis(1200)); // snapshots every 100 ms, XDP counters every second
}

fn scrape(lab: &Lab) -> String {
    lab.ok("nat", &["curl", "-sS", "http://127.0.0.1:9091/metrics"])
}

/// `promtool check metrics` on `text`: what it printed, and whether it was content.
fn promtool_check_metrics(text: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (deploy/setup.sh installs the Debian package prometheus)");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("to promtool");
    let o = child.wait_with_output().expect("promtool");
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

#[test]
fn promtool_check_metrics_finds_nothing_wrong_with_masqs_metrics() {
    let mut lab = Lab::up("pcheck", 1500);
    start_with_traffic(&mut lab);
    let text = scrape(&lab);
    assert!(text.contains("masq_worker_round_duration_seconds_bucket"), "{text}");
    let (ok, said) = promtool_check_metrics(&text);
    assert!(ok && said.trim().is_empty(), "promtool check metrics on masq's /metrics:\n{said}");
    // promtool does look: a counter without `_total` is reported.
    let broken = text.replace("masq_drops_total", "masq_drops");
    let (_, said) = promtool_check_metrics(&broken);
    assert!(said.contains("masq_drops"), "promtool did not notice a counter without _total:\n{said}");
}

/// The `masq_...` metric names an expression uses (a histogram's
/// `_bucket` series included).
fn metric_names(expr: &str) -> Vec<String> {
    let mut v: Vec<String> = expr
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("masq_"))
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Every `expr` of a rules file (YAML) or a dashboard (JSON, which YAML reads too).
fn exprs(v: &serde_yaml::Value, out: &mut Vec<String>) {
    match v {
        serde_yaml::Value::Mapping(m) => {
            for (k, x) in m {
                match (k.as_str(), x.as_str()) {
                    (Some("expr"), Some(e)) => out.push(e.trim().to_string()),
                    _ => exprs(x, out),
                }
            }
        }
        serde_yaml::Value::Sequence(s) => s.iter().for_each(|x| exprs(x, out)),
        _ => {}
    }
}

fn read_yaml(path: &str) -> serde_yaml::Value {
    let text = std::fs::read_to_string(lab::repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Asks the lab's Prometheus (in the box's namespace) an instant query;
/// returns its `data.result` (panics unless the status is success).
fn query(lab: &Lab, q: &str) -> Vec<serde_yaml::Value> {
    let body = lab.ok(
        "nat",
        &["curl", "-sS", "--get", "--data-urlencode", &format!("query={q}"), "http://127.0.0.1:9090/api/v1/query"],
    );
    let v: serde_yaml::Value = serde_yaml::from_str(&body).unwrap_or_else(|e| panic!("{q}: {e}: {body}"));
    assert_eq!(v["status"].as_str(), Some("success"), "{q}: {body}");
    v["data"]["result"].as_sequence().cloned().unwrap_or_default()
}

#[test]
fn a_real_prometheus_scraping_masq_evaluates_every_rule_and_dashboard_query() {
    let mut lab = Lab::up("prom", 1500);
    start_with_traffic(&mut lab);
    let rules = lab::repo().join("deploy/prometheus/alerts.yml");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [{}]\n\
         scrape_configs:\n  - job_name: masq\n    static_configs:\n      - targets: [\"127.0.0.1:9091\"]\n",
        rules.display()
    );
    std::fs::write(lab.dir.join("prometheus.yml"), config).expect("prometheus config");
    let (cfg, data) = (lab.dir.join("prometheus.yml"), lab.dir.join("tsdb"));
    let (cfg, data) = (format!("--config.file={}", cfg.display()), format!("--storage.tsdb.path={}", data.display()));
    lab.spawn("nat", &["prometheus", &cfg, &data, "--web.listen-address=127.0.0.1:9090"], "prometheus.log");
    // Two scrapes with traffic between them, so rates have two points.
    let scraped_twice = lab.wait_for(Duration::from_secs(10), || {
        lab.run("nat", &["curl", "-sf", "http://127.0.0.1:9090/-/ready"]).status.success()
            && !query(&lab, "count_over_time(up{job=\"masq\"}[1m]) >= 2").is_empty()
    });
    assert!(scraped_twice, "Prometheus did not scrape masq twice:\n{}", lab.read("prometheus.log"));
    let out = lab.ok("in", &["python3", "-c", UDP_CLIENT, "198.51.100.1", "5353", "20", "200"]);
    assert!(out.contains("echoed 20 of 20"), "{out}");
    std::thread::sleep(Duration::from_millis(2500)); // two more scrapes and rule evaluations

    let up = query(&lab, "up{job=\"masq\"}");
    assert_eq!(up.first().and_then(|s| s["value"][1].as_str()), Some("1"), "masq is not up: {up:?}");

    // Every rule loaded, evaluated, and healthy (no evaluation error).
    let body = lab.ok("nat", &["curl", "-sS", "http://127.0.0.1:9090/api/v1/rules"]);
    let v: serde_yaml::Value = serde_yaml::from_str(&body).expect("rules answer");
    let loaded: Vec<&serde_yaml::Value> = v["data"]["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_sequence().into_iter().flatten())
        .collect();
    let mut rule_exprs = Vec::new();
    exprs(&read_yaml("deploy/prometheus/alerts.yml"), &mut rule_exprs);
    assert_eq!(loaded.len(), rule_exprs.len(), "Prometheus loaded other rules than alerts.yml has: {body}");
    for r in &loaded {
        assert_eq!(r["health"].as_str(), Some("ok"), "rule {:?}: {:?}", r["name"], r["lastError"]);
    }

    // Every query evaluates, and every masq series it names exists.
    let mut dash_exprs = Vec::new();
    exprs(&read_yaml("deploy/grafana/masq.json"), &mut dash_exprs);
    assert!(dash_exprs.len() >= 10, "the dashboard's queries: {dash_exprs:?}");
    for e in rule_exprs.iter().chain(&dash_exprs) {
        let result = query(&lab, e);
        for name in metric_names(e) {
            assert!(!query(&lab, &name).is_empty(), "{name} (in `{e}`) has no series in Prometheus");
        }
        // Every dashboard panel shows data, but for those that show only
        // trouble (`> 0`: drops by reason, port exhaustion).
        if dash_exprs.contains(e) && !e.ends_with("> 0") {
            assert!(!result.is_empty(), "the dashboard's `{e}` returned no data");
        }
    }

    // A healthy masq raises no alert, not even a pending one.
    let alerts = |lab: &Lab| lab.ok("nat", &["curl", "-sS", "http://127.0.0.1:9090/api/v1/alerts"]);
    let quiet = alerts(&lab);
    let rounds: Vec<String> =
        scrape(&lab).lines().filter(|l| l.starts_with("masq_worker_round")).map(str::to_string).collect();
    assert!(quiet.contains("\"alerts\":[]"), "alerts against a healthy masq: {quiet}\n{}", rounds.join("\n"));
    // Once masq is gone, MasqDown matches the real scrape job at once
    // (pending: it fires after its minute).
    lab.kill_masq();
    let pending = lab.wait_for(Duration::from_secs(5), || alerts(&lab).contains("\"alertname\":\"MasqDown\""));
    assert!(pending, "MasqDown did not match a stopped masq: {}", alerts(&lab));
}
