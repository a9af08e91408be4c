//! End-to-end: a deterministic pool (RFC 7422) in the namespace lab. Two
//! inside hosts send UDP from several source ports; the outside server sees
//! each from the one public address with ports of the host's own range
//! only, and `masq whois` on the configuration names the host for every
//! public port seen. Needs root.

mod lab;

use lab::{Lab, UDP_ECHO};
use std::time::Duration;

const CONFIG: &str = "\
interfaces:
  inside: nat-in
  outside: nat-out
workers:
  cores: [1]
pools:
  - name: det
    mode: deterministic
    inside: 100.64.0.0/24
    addresses: [203.0.113.10]
    ports: 1024-65535
rules:
  - action: snat
    pool: det
    match:
      src: [100.64.0.0/24]
";

/// Sends one datagram from each source port given and waits for its echo.
const FROM_PORTS: &str = "import socket,sys
for p in sys.argv[3:]:
    s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('',int(p))); s.settimeout(2)
    s.sendto(b'hi',(sys.argv[1],int(sys.argv[2]))); s.recvfrom(100)
print('ok')";

#[test]
fn a_deterministic_pool_uses_each_hosts_range_and_whois_names_it() {
    let mut lab = Lab::up("detnat", 1500);
    let cfg = lab.dir.join("masq.yaml");
    std::fs::write(&cfg, lab::shaped(CONFIG)).unwrap();
    let cfg = cfg.to_str().unwrap().to_string();
    lab.start_masq_with(&["run", "--config", &cfg]);
    lab.spawn("out", &["python3", "-c", UDP_ECHO, "198.51.100.1", "5353"], "echo.log");
    std::thread::sleep(Duration::from_millis(300));

    // 256 subscribers on one address: 64512 / 256 = 252 ports, 192 each
    // (a multiple of 64); host .2 has 1408-1599, host .3 1600-1791.
    let ports = ["1500", "5000", "40000", "1408", "1700"];
    for host in ["in", "in2"] {
        let mut args = vec!["python3", "-c", FROM_PORTS, "198.51.100.1", "5353"];
        args.extend(ports);
        assert_eq!(lab.ok(host, &args).trim(), "ok", "{host}'s flows are answered");
    }
    let seen: Vec<(String, u16)> = lab
        .read("echo.log")
        .lines()
        .filter_map(|l| {
            l.strip_prefix("from ")?
                .split_whitespace()
                .next()?
                .split_once(':')
                .map(|(a, p)| (a.to_string(), p.parse().unwrap()))
        })
        .collect();
    assert_eq!(seen.len(), 10, "every datagram reached the server: {seen:?}");
    for (i, (addr, port)) in seen.iter().enumerate() {
        let (inside, range) = if i < 5 { ("100.64.0.2", 1408..=1599) } else { ("100.64.0.3", 1600..=1791) };
        assert_eq!(addr, "203.0.113.10");
        assert!(range.contains(port), "{inside} left from port {port}, outside its range {range:?}");
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_masq"))
            .args(["whois", "--config", &cfg, &format!("{addr}:{port}")])
            .output()
            .unwrap();
        assert!(o.status.success());
        let said = String::from_utf8_lossy(&o.stdout);
        assert!(
            said.starts_with(&format!("{inside} holds 203.0.113.10 ports {}-{}", range.start(), range.end())),
            "{said}"
        );
    }
    let out = lab.stop_masq();
    assert!(out.contains("deterministic NAT: subscriber i = inside - 0x64400000"), "the formula is logged:\n{out}");
}
