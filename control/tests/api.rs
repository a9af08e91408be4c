//! The control API and the operator commands against a running masq in
//! the namespace lab (root; CI is root).

mod lab;

use lab::{Lab, UDP_ECHO};
use std::time::Duration;

/// The lab's SNAT, and the control API with a token, in the lab's shape
/// (one or two workers).
fn config() -> String {
    lab::snat_config("", "control:\n  listen: 127.0.0.1:9091\n  token: s3cret\n")
}

/// Sends one UDP datagram from each given source port and waits for the echo.
const UDP_FROM_PORTS: &str = "import socket,sys
for p in sys.argv[3:]:
    s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('',int(p))); s.settimeout(2)
    s.sendto(b'hi',(sys.argv[1],int(sys.argv[2]))); s.recvfrom(100)
print('ok')";

fn masq(lab: &Lab, args: &[&str]) -> std::process::Output {
    let mut v = vec![env!("CARGO_BIN_EXE_masq")];
    v.extend(args);
    lab.run("nat", &v)
}

/// A session listing without its seconds-to-expiry column (the third of a
/// session line), which counts down while the test runs.
fn without_expiry(listing: &str) -> Vec<String> {
    let strip = |l: &str| {
        let words: Vec<&str> = l.split_whitespace().collect();
        let keep = |i: usize| l.starts_with("masq:") || i != 2;
        words.iter().enumerate().filter(|&(i, _)| keep(i)).map(|(_, w)| *w).collect::<Vec<_>>().join(" ")
    };
    listing.lines().map(strip).collect()
}

fn out(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn start(lab: &mut Lab) {
    std::fs::write(lab.dir.join("masq.yaml"), config()).expect("config file");
    let cfg = lab.dir.join("masq.yaml");
    lab.start_masq_with(&["run", "--config", cfg.to_str().expect("utf-8 path")]);
    lab.spawn("out", &["python3", "-c", UDP_ECHO, "198.51.100.1", "5353"], "echo.log");
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn sessions_lists_exactly_the_flows_opened_and_flush_needs_the_token() {
    let mut lab = Lab::up("sess", 1500);
    start(&mut lab);
    lab.ok("in", &["python3", "-c", UDP_FROM_PORTS, "198.51.100.1", "5353", "40001", "40002", "40003"]);
    lab.ok("in2", &["python3", "-c", UDP_FROM_PORTS, "198.51.100.1", "5353", "40009"]);
    let o = masq(&lab, &["sessions", "--subscriber", "100.64.0.2"]);
    assert!(o.status.success(), "{}", out(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("udp")).collect();
    assert_eq!(lines.len(), 3, "{text}");
    for port in ["40001", "40002", "40003"] {
        let l = lines
            .iter()
            .find(|l| l.contains(&format!("sport={port} ")))
            .unwrap_or_else(|| panic!("no session from port {port}: {text}"));
        assert!(l.contains("src=100.64.0.2 dst=198.51.100.1") && l.contains("dst=203.0.113.10"), "{l}");
        assert!(l.contains("[ASSURED]"), "answered flows are assured: {l}");
    }
    assert!(text.contains("masq: 3 sessions"), "{text}");
    let all = String::from_utf8_lossy(&masq(&lab, &["sessions", "--protocol", "udp"]).stdout).into_owned();
    assert!(all.contains("masq: 4 sessions"), "{all}");
    // Flushing changes state: refused without the token, nothing removed.
    let o = masq(&lab, &["flush", "--subscriber", "100.64.0.2"]);
    assert!(!o.status.success() && out(&o).contains("Bearer"), "{}", out(&o));
    assert!(String::from_utf8_lossy(&masq(&lab, &["sessions"]).stdout).contains("masq: 4 sessions"));
    let o = masq(&lab, &["flush", "--subscriber", "100.64.0.2", "--token", "s3cret"]);
    assert!(o.status.success() && out(&o).contains("masq: 3 sessions flushed"), "{}", out(&o));
    let left = String::from_utf8_lossy(&masq(&lab, &["sessions"]).stdout).into_owned();
    assert!(left.contains("masq: 1 sessions") && left.contains("src=100.64.0.3"), "{left}");
}

#[test]
fn every_metric_family_is_there_with_its_type_and_moves_with_traffic() {
    let mut lab = Lab::up("metr", 1500);
    start(&mut lab);
    let scrape = |lab: &Lab| lab.ok("nat", &["curl", "-sS", "http://127.0.0.1:9091/metrics"]);
    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1.0)
    };
    let before = scrape(&lab);
    for (family, kind) in [
        ("masq_packets_total", "counter"),
        ("masq_bytes_total", "counter"),
        ("masq_drops_total", "counter"),
        ("masq_kernel_passes_total", "counter"),
        ("masq_sessions", "gauge"),
        ("masq_sessions_events_total", "counter"),
        ("masq_port_blocks", "gauge"),
        ("masq_port_exhaustion_events_total", "counter"),
        ("masq_handoffs_total", "counter"),
        ("masq_worker_sessions", "gauge"),
        ("masq_nat_log_lost_total", "counter"),
        ("masq_worker_round_duration_seconds", "histogram"),
        ("masq_xdp_frames_total", "counter"),
        ("masq_config_generation", "gauge"),
        ("masq_config_reloads_total", "counter"),
        ("masq_build_info", "gauge"),
        ("masq_ready", "gauge"),
    ] {
        assert!(before.contains(&format!("# TYPE {family} {kind}\n")), "{family} ({kind}) missing:\n{before}");
    }
    lab.ok("in", &["python3", "-c", UDP_FROM_PORTS, "198.51.100.1", "5353", "41001", "41002"]);
    lab.ok("in", &["ping", "-c", "2", "-i", "0.2", "198.51.100.1"]);
    std::thread::sleep(Duration::from_millis(1200)); // snapshots every 100 ms, XDP counters every second
    let after = scrape(&lab);
    for series in [
        "masq_packets_total{direction=\"in_to_out\",verdict=\"forward\"}",
        "masq_packets_total{direction=\"out_to_in\",verdict=\"forward\"}",
        "masq_bytes_total{direction=\"in_to_out\",verdict=\"forward\"}",
        "masq_sessions_events_total{event=\"created\"}",
        "masq_worker_round_duration_seconds_count{worker=\"0\"}",
        "masq_xdp_frames_total{action=\"redirect\",interface=\"nat-in\"}",
    ] {
        assert!(
            value(&after, series) > value(&before, series),
            "{series} did not move: {} -> {}",
            value(&before, series),
            value(&after, series)
        );
    }
    assert_eq!(value(&after, "masq_sessions{protocol=\"udp\",state=\"udp\"}"), 2.0, "{after}");
    assert_eq!(value(&after, "masq_sessions{protocol=\"icmp\",state=\"icmp\"}"), 1.0, "{after}");
    assert_eq!(
        value(&after, "masq_port_blocks{address=\"203.0.113.10\",pool=\"lab\",state=\"in_use\"}"),
        1.0,
        "{after}"
    );
    assert!(after.contains("\nmasq_ready 1\n"), "ready, as /readyz says: {after}");
    // The Grafana dashboard asks only for series masq serves (the sinks'
    // family only with NAT log sinks, and the HA link's only on an HA
    // box, neither of which this configuration is: control/tests/
    // prometheus.rs runs both).
    let dash = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/masq.json"))
        .expect("dashboard");
    for name in dash
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("masq_") && *w != "masq_nat_log_sink_lost_total")
        .filter(|w| !w.starts_with("masq_ha_") || matches!(*w, "masq_ha_applied_total" | "masq_ha_refused_total"))
    {
        assert!(after.contains(&format!("\n{name}")), "the dashboard uses {name}, which /metrics lacks");
    }
}

#[test]
fn an_invalid_push_is_refused_with_its_lines_and_changes_nothing() {
    let mut lab = Lab::up("push", 1500);
    start(&mut lab);
    lab.ok("in", &["python3", "-c", UDP_FROM_PORTS, "198.51.100.1", "5353", "42001"]);
    let config_before = lab.ok("nat", &["curl", "-sS", "http://127.0.0.1:9091/config"]);
    let sessions_before = without_expiry(&String::from_utf8_lossy(&masq(&lab, &["sessions"]).stdout));
    assert!(sessions_before.iter().any(|l| l.contains("dport=5353")), "no session to keep: {sessions_before:?}");
    let cases = [
        ("yaml", "interfaces:\n  inside: nat-in\n  outside: [nat-out\n", "yaml.yaml:"),
        (
            "unknown",
            &config().replace("  token: s3cret", "  token: s3cret\n  tokn: x"),
            "control.tokn: unknown field `tokn`",
        ),
        (
            "overlap",
            &config().replace("rules:", "  - name: other\n    addresses: [203.0.113.8/29]\nrules:"),
            "pools[1].addresses[0]: 203.0.113.10 is already in pool `lab`",
        ),
    ];
    for (name, text, want) in cases {
        let f = lab.dir.join(format!("{name}.yaml"));
        std::fs::write(&f, text).unwrap();
        // Without the token: refused before anything is read.
        let o = masq(&lab, &["push", f.to_str().unwrap()]);
        assert!(!o.status.success() && out(&o).contains("Bearer"), "{name}: {}", out(&o));
        let o = masq(&lab, &["push", f.to_str().unwrap(), "--token", "s3cret"]);
        assert!(!o.status.success(), "{name} was accepted");
        let msg = out(&o);
        assert!(msg.contains("400") && msg.contains(want), "{name}: want `{want}` in:\n{msg}");
        assert!(msg.contains(&format!("{}:", f.display())), "{name}: errors name the file: {msg}");
        let line_col = msg.lines().next().and_then(|l| l.split(':').nth(1)).and_then(|n| n.parse::<usize>().ok());
        assert!(line_col.is_some_and(|n| n >= 1), "{name}: no line number in {msg}");
    }
    assert_eq!(lab.ok("nat", &["curl", "-sS", "http://127.0.0.1:9091/config"]), config_before);
    assert_eq!(without_expiry(&String::from_utf8_lossy(&masq(&lab, &["sessions"]).stdout)), sessions_before);
    let m = lab.ok("nat", &["curl", "-sS", "http://127.0.0.1:9091/metrics"]);
    assert!(m.contains("masq_config_reloads_total{result=\"error\"} 3"), "{m}");
    assert!(m.contains("masq_config_generation 1"), "{m}");
    // The stats view reads the same API.
    let o = masq(&lab, &["stats", "--once"]);
    assert!(o.status.success() && out(&o).contains("sessions"), "{}", out(&o));
}

#[test]
fn a_valid_push_moves_new_flows_while_a_running_stream_keeps_its_session() {
    let mut lab = Lab::up("live", 1500);
    start(&mut lab);
    // The new pool is routed to the box like the first.
    lab.ok("out", &["ip", "route", "add", "198.18.0.0/24", "via", "203.0.113.1", "dev", "out0"]);
    lab.spawn("out", &["iperf3", "-s", "-B", "198.51.100.1", "-1"], "iperf3-server.log");
    std::thread::sleep(Duration::from_millis(500));
    lab.spawn("in", &["iperf3", "-c", "198.51.100.1", "-t", "5", "-b", "100M"], "iperf3.log");
    std::thread::sleep(Duration::from_millis(1500));
    let before = String::from_utf8_lossy(&masq(&lab, &["sessions", "--protocol", "tcp"]).stdout).into_owned();
    assert!(before.contains("dst=203.0.113.10"), "the stream runs through the first pool: {before}");
    let pushed = config()
        .replace("rules:", "  - name: new\n    addresses: [198.18.0.10]\nrules:")
        .replace("    pool: lab\n", "    pool: new\n");
    let f = lab.dir.join("new.yaml");
    std::fs::write(&f, &pushed).unwrap();
    let o = masq(&lab, &["push", f.to_str().unwrap(), "--token", "s3cret"]);
    assert!(o.status.success() && out(&o).contains("generation 2 in force"), "{}", out(&o));
    // New flows take the new pool.
    lab.ok("in2", &["python3", "-c", UDP_FROM_PORTS, "198.51.100.1", "5353", "43001"]);
    let udp = String::from_utf8_lossy(&masq(&lab, &["sessions", "--subscriber", "100.64.0.3"]).stdout).into_owned();
    assert!(udp.contains("dst=198.18.0.10"), "a new flow after the push: {udp}");
    // The stream that started before keeps its mapping to the end, with no error.
    let after = String::from_utf8_lossy(&masq(&lab, &["sessions", "--protocol", "tcp"]).stdout).into_owned();
    let tcp_before: Vec<&str> = before.lines().filter(|l| l.starts_with("tcp")).collect();
    for l in &tcp_before {
        let mapping = l.split("src=198.51.100.1").nth(1).unwrap_or("");
        assert!(after.contains(mapping), "session {l} changed or went after the push:\n{after}");
    }
    assert!(
        lab.wait_for(Duration::from_secs(10), || lab.read("iperf3.log").contains("iperf Done")),
        "{}",
        lab.read("iperf3.log")
    );
    let log = lab.read("iperf3.log");
    assert!(!log.contains("error"), "{log}");
    let receiver = log.lines().find(|l| l.contains("receiver")).unwrap_or_default().to_string();
    assert!(receiver.contains("MBytes"), "{log}");
    // The server writes its log when it exits, a moment after the client
    // has its results: read it once it is there (read at once, CI found it
    // still empty).
    assert!(
        lab.wait_for(Duration::from_secs(5), || lab
            .read("iperf3-server.log")
            .contains("Accepted connection from 203.0.113.10")),
        "{}",
        lab.read("iperf3-server.log")
    );
    let m = lab.ok("nat", &["curl", "-sS", "http://127.0.0.1:9091/metrics"]);
    assert!(m.contains("masq_config_generation 2") && m.contains("masq_config_reloads_total{result=\"ok\"} 1"), "{m}");
    assert_eq!(lab.ok("nat", &["curl", "-sS", "http://127.0.0.1:9091/config"]), pushed);
}

#[test]
fn nat_events_log_each_port_block_handed_out_and_taken_back() {
    let mut lab = Lab::up("natlog", 1500);
    std::fs::write(lab.dir.join("masq.yaml"), format!("{}logging:\n  nat_events: true\n", config())).unwrap();
    let cfg = lab.dir.join("masq.yaml");
    lab.start_masq_with(&["run", "--config", cfg.to_str().unwrap()]);
    lab.spawn("out", &["python3", "-c", UDP_ECHO, "198.51.100.1", "5353"], "echo.log");
    std::thread::sleep(Duration::from_millis(300));
    lab.ok("in", &["python3", "-c", UDP_FROM_PORTS, "198.51.100.1", "5353", "44001", "44002"]);
    assert!(lab.wait_for(Duration::from_secs(2), || lab.masq_log().contains("block assigned")), "{}", lab.masq_log());
    let log = lab.masq_log();
    let line = log.lines().find(|l| l.contains("block assigned")).unwrap();
    assert!(line.contains("100.64.0.2 -> 203.0.113.10 ports "), "{line}");
    let range = line.rsplit(' ').next().unwrap();
    let (a, b) = range.split_once('-').unwrap();
    let (a, b): (u16, u16) = (a.parse().unwrap(), b.parse().unwrap());
    assert_eq!(b - a + 1, 512, "one block of 512: {line}");
    assert_eq!(log.matches("block assigned").count(), 1, "two sessions, one block: {log}");
    // The subscriber's last session goes: its block goes back, and is logged.
    let o = masq(&lab, &["flush", "--subscriber", "100.64.0.2", "--token", "s3cret"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(lab.wait_for(Duration::from_secs(2), || lab.masq_log().contains("block released")), "{}", lab.masq_log());
    assert!(
        lab.masq_log().contains(&format!("block released 100.64.0.2 -> 203.0.113.10 ports {a}-{b}")),
        "{}",
        lab.masq_log()
    );
}

#[test]
fn sighup_reloads_the_file() {
    let mut lab = Lab::up("hup", 1500);
    start(&mut lab);
    let f = lab.dir.join("masq.yaml");
    std::fs::write(&f, config().replace("[100.64.0.0/10]", "[100.64.0.0/10]\n  - action: no_nat")).unwrap();
    lab.signal_masq("HUP");
    assert!(lab.wait_for(Duration::from_secs(3), || lab.masq_log().contains("SIGHUP")), "{}", lab.masq_log());
    assert!(lab.masq_log().contains("generation 2 in force"), "{}", lab.masq_log());
    // A broken file on SIGHUP changes nothing and says why, with the line.
    std::fs::write(&f, config().replace("  token: s3cret", "  token: s3cret\n  bogus: 1")).unwrap();
    lab.signal_masq("HUP");
    assert!(lab.wait_for(Duration::from_secs(3), || lab.masq_log().contains("SIGHUP refused")), "{}", lab.masq_log());
    assert!(lab.masq_log().contains("control.bogus: unknown field `bogus`"), "{}", lab.masq_log());
    let m = lab.ok("nat", &["curl", "-sS", "http://127.0.0.1:9091/metrics"]);
    assert!(m.contains("masq_config_generation 2"), "{m}");
}
