//! End-to-end: `masq whois` asks a running masq's live tables (`GET
//! /whois`). A UDP flow from 100.64.0.2 goes through a port-block pool:
//! `masq whois PUBLIC:PORT` on the public port the outside server saw
//! names the subscriber, its block and the session; an unused port is
//! nobody's (exit 1); `--subscriber` lists the block. A second host goes
//! through a deterministic pool: the live answer is the formula's range.
//! Needs root.

mod lab;

use lab::{Lab, UDP_ECHO};
use std::time::Duration;

/// A port-block pool for 100.64.0.2, a deterministic one for 100.64.0.3,
/// the control API on loopback.
const CONFIG: &str = "\
interfaces:
  inside: nat-in
  outside: nat-out
workers:
  cores: [1]
pools:
  - name: lab
    addresses: [203.0.113.10]
    block_size: 64
  - name: det
    mode: deterministic
    inside: 100.64.0.3/32
    addresses: [203.0.113.11]
    ports: 2048-65535
rules:
  - action: snat
    pool: det
    match:
      src: [100.64.0.3/32]
  - action: snat
    pool: lab
    match:
      src: [100.64.0.0/10]
control:
  listen: 127.0.0.1:9091
";

/// Sends one UDP datagram from port 44001 and waits for the echo.
const UDP_ONCE: &str = "import socket,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('',44001)); s.settimeout(2)
s.sendto(b'hi',(sys.argv[1],int(sys.argv[2]))); s.recvfrom(100)
print('ok')";

fn masq(lab: &Lab, args: &[&str]) -> std::process::Output {
    let mut v = vec![env!("CARGO_BIN_EXE_masq")];
    v.extend(args);
    lab.run("nat", &v)
}

#[test]
fn whois_asks_the_running_masq_who_holds_a_public_port_now() {
    let mut lab = Lab::up("whoisl", 1500);
    let cfg = lab.dir.join("masq.yaml");
    std::fs::write(&cfg, lab::shaped(CONFIG)).unwrap();
    // The outside router routes the deterministic pool's address to the box too.
    lab.ok("out", &["ip", "route", "add", "203.0.113.11/32", "via", "203.0.113.1", "dev", "out0"]);
    lab.start_masq_with(&["run", "--config", cfg.to_str().unwrap()]);
    lab.spawn("out", &["python3", "-c", UDP_ECHO, "198.51.100.1", "5353"], "echo.log");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(lab.ok("in", &["python3", "-c", UDP_ONCE, "198.51.100.1", "5353"]).trim(), "ok");
    let port = lab.seen_port("203.0.113.10");

    // The port the outside saw: the subscriber, its block, its session.
    let target = format!("203.0.113.10:{port}");
    let o = masq(&lab, &["whois", &target]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{o:?}");
    let first = text.lines().next().unwrap_or_default();
    let (range, rest) = first
        .strip_prefix("100.64.0.2 holds 203.0.113.10 ports ")
        .and_then(|r| r.split_once(' '))
        .unwrap_or_else(|| panic!("{text}"));
    let (a, b) = range.split_once('-').map(|(a, b)| (a.parse::<u16>().unwrap(), b.parse::<u16>().unwrap())).unwrap();
    assert!(a <= port && port <= b && b - a == 63, "port {port} in its 64-port block: {text}");
    assert_eq!(rest, "(pool lab, block, live: 1 session)", "{text}");
    assert!(text.contains("udp session 100.64.0.2:44001 -> 198.51.100.1:5353"), "{text}");
    // The same as JSON, with ADDR PORT given apart.
    let o = masq(&lab, &["whois", "203.0.113.10", &port.to_string(), "--json"]);
    assert!(o.status.success(), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["found"].as_bool(), v["source"].as_str()), (Some(true), Some("live")), "{v}");
    assert_eq!(v["holders"][0]["inside"].as_str(), Some("100.64.0.2"), "{v}");
    assert_eq!(v["sessions"][0]["inside_port"].as_u64(), Some(44001), "{v}");

    // A port no block holds: nobody, exit status 1.
    let unused = if port < 30000 { 60000 } else { 2000 };
    let o = masq(&lab, &["whois", &format!("203.0.113.10:{unused}")]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("nobody"), "{o:?}");

    // The other way: the subscriber's block now; a host with no session holds nothing.
    let o = masq(&lab, &["whois", "--subscriber", "100.64.0.2"]);
    assert!(o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with(&format!("100.64.0.2 holds 203.0.113.10 ports {a}-{b} ")),
        "{o:?}"
    );
    let o = masq(&lab, &["whois", "--subscriber", "100.64.0.9"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");

    // The deterministic pool: the live answer is the formula's range (/32: all its ports).
    assert_eq!(lab.ok("in2", &["python3", "-c", UDP_ONCE, "198.51.100.1", "5353"]).trim(), "ok");
    let det_port = lab.seen_port("203.0.113.11");
    let o = masq(&lab, &["whois", &format!("203.0.113.11:{det_port}")]);
    assert!(o.status.success(), "{o:?}");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.starts_with("100.64.0.3 holds 203.0.113.11 ports 2048-65535 (pool det, deterministic, live: 1 session)"),
        "{text}"
    );

    // Flushed: the block goes back, the port is nobody's now.
    let o = masq(&lab, &["flush", "--subscriber", "100.64.0.2"]);
    assert!(o.status.success(), "{o:?}");
    let o = masq(&lab, &["whois", &target]);
    assert_eq!(o.status.code(), Some(1), "released: {o:?}");
    lab.stop_masq();
}

/// A deterministic pool for 100.64.0.3 with 64 ports and an overflow on
/// 203.0.113.12 (one 64-port block), events to a JSON file.
const OVERFLOW: &str = "\
interfaces:
  inside: nat-in
  outside: nat-out
workers:
  cores: [1]
pools:
  - name: det
    mode: deterministic
    inside: 100.64.0.3/32
    addresses: [203.0.113.11]
    ports: 2048-65535
    ports_per_subscriber: 64
    overflow: {addresses: [203.0.113.12], block_size: 64, max_blocks_per_subscriber: 1}
rules:
  - action: snat
    pool: det
    match:
      src: [100.64.0.3/32]
control:
  listen: 127.0.0.1:9091
logging:
  sinks:
    - {kind: json, path: JSON}
";

/// Sends one datagram from each source port FIRST..FIRST+N-1 and waits for each echo.
const FROM_PORTS: &str = "import socket,sys
for p in range(int(sys.argv[3]), int(sys.argv[3]) + int(sys.argv[4])):
    s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('',p)); s.settimeout(2)
    s.sendto(b'hi',(sys.argv[1],int(sys.argv[2]))); s.recvfrom(100)
print('ok')";

#[test]
fn a_subscriber_past_its_deterministic_range_overflows_into_a_logged_block_whois_names() {
    let mut lab = Lab::up("whoiso", 1500);
    let json = lab.dir.join("nat.jsonl");
    let cfg = lab.dir.join("masq.yaml");
    std::fs::write(&cfg, lab::shaped(&OVERFLOW.replace("JSON", json.to_str().unwrap()))).unwrap();
    for a in ["203.0.113.11/32", "203.0.113.12/32"] {
        lab.ok("out", &["ip", "route", "add", a, "via", "203.0.113.1", "dev", "out0"]);
    }
    let cfg = cfg.to_str().unwrap().to_string();
    lab.start_masq_with(&["run", "--config", &cfg]);
    lab.spawn("out", &["python3", "-c", UDP_ECHO, "198.51.100.1", "5353"], "echo.log");
    std::thread::sleep(Duration::from_millis(300));
    // 64 flows fill the range 2048-2111; the 65th overflows.
    assert_eq!(lab.ok("in2", &["python3", "-c", FROM_PORTS, "198.51.100.1", "5353", "50000", "65"]).trim(), "ok");
    let echo = lab.read("echo.log");
    let in_range = echo.lines().filter(|l| l.starts_with("from 203.0.113.11:")).count();
    assert_eq!(in_range, 64, "the range first: {echo}");
    let port = lab.seen_port("203.0.113.12");
    // The overflow block is logged like any port block.
    assert!(
        lab.wait_for(Duration::from_secs(5), || lab.read("nat.jsonl").contains("block_allocated")),
        "{}",
        lab.read("nat.jsonl")
    );
    let log = lab.read("nat.jsonl");
    let line = log.lines().find(|l| l.contains("block_allocated")).unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(
        (v["inside"].as_str(), v["public"].as_str(), v["pool"].as_str()),
        (Some("100.64.0.3"), Some("203.0.113.12"), Some("det.overflow")),
        "{line}"
    );
    let (a, b) = (v["port_start"].as_u64().unwrap(), v["port_end"].as_u64().unwrap());
    assert!(a <= u64::from(port) && u64::from(port) <= b, "port {port} in {line}");
    assert_eq!(log.lines().filter(|l| l.contains("block_allocated")).count(), 1, "the range logs nothing: {log}");
    // Live: the block's holder.
    let o = masq(&lab, &["whois", &format!("203.0.113.12:{port}")]);
    assert!(o.status.success(), "{o:?}");
    let want = format!("100.64.0.3 holds 203.0.113.12 ports {a}-{b} (pool det.overflow, block, live: 1 session)");
    assert!(String::from_utf8_lossy(&o.stdout).starts_with(&want), "{o:?}");
    // The formula sends an overflow address to the log, which names it.
    let j = json.to_str().unwrap();
    let o = masq(&lab, &["whois", "--config", &cfg, &format!("203.0.113.12:{port}"), "--log", j]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains(": 100.64.0.3 (block "), "{o:?}");
    lab.stop_masq();
}
