//! Other IP protocols end to end (root; CI is root): GRE and ESP crafted
//! with scapy (the kernel here has no GRE module) leave the box from the
//! pool address and their answers come back to the inside host; the
//! session listing shows them by protocol number.

mod lab;

use lab::Lab;
use std::time::Duration;

const CONFIG: &str = "\
interfaces:
  inside: nat-in
  outside: nat-out
workers:
  cores: [1]
pools:
  - name: lab
    addresses: [203.0.113.10]
rules:
  - action: snat
    pool: lab
    match:
      src: [100.64.0.0/10]
      protocols: [tcp, udp, icmp, other]
control:
  listen: 127.0.0.1:9091
";

#[test]
fn gre_and_esp_leave_from_the_pool_address_and_their_answers_come_back() {
    let mut lab = Lab::up("proto", 1500);
    std::fs::write(lab.dir.join("masq.yaml"), lab::shaped(CONFIG)).expect("config file");
    let cfg = lab.dir.join("masq.yaml");
    lab.start_masq_with(&["run", "--config", cfg.to_str().expect("utf-8 path")]);
    let script = lab::repo().join("control/tests/lab/proto.py");
    let script = script.to_str().expect("utf-8 path");
    // Debian's python, which has python3-scapy (deploy/setup.sh).
    lab.spawn("out", &["/usr/bin/python3", script, "answer", "out0", "2"], "answer.log");
    assert!(lab.wait_for(Duration::from_secs(10), || lab.read("answer.log").contains("listening")), "sniffer");
    std::thread::sleep(Duration::from_millis(500));

    let back = lab.ok("in", &["/usr/bin/python3", script, "send", "br0", "100.64.0.2", "198.51.100.1"]);
    assert!(lab.wait_for(Duration::from_secs(5), || lab.read("answer.log").lines().count() >= 3));
    let seen = lab.read("answer.log");
    // Outside, both come from the pool address, their contents untouched.
    assert!(
        seen.contains("got gre 203.0.113.10 > 198.51.100.1 inner 10.9.0.1 > 10.9.0.2 icmp-type-8"),
        "{seen}\nmasq:\n{}",
        lab.masq_log()
    );
    assert!(seen.contains("got esp 203.0.113.10 > 198.51.100.1 spi 0x1000 seq 1"), "{seen}");
    assert!(!seen.contains("100.64."), "no inside address outside: {seen}");
    // Inside, the answers arrive addressed to the inside host.
    assert!(
        back.contains("back gre 198.51.100.1 > 100.64.0.2 inner 10.9.0.2 > 10.9.0.1 icmp-type-0"),
        "{back}\nmasq:\n{}",
        lab.masq_log()
    );
    assert!(back.contains("back esp 198.51.100.1 > 100.64.0.2 spi 0x1001 seq 1"), "{back}");

    // Listed by protocol, with the pool address.
    let o = lab.run("nat", &[env!("CARGO_BIN_EXE_masq"), "sessions", "--protocol", "47"]);
    let listing = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        listing.lines().any(|l| l.starts_with("gre")
            && l.contains("src=100.64.0.2 dst=198.51.100.1")
            && l.contains("dst=203.0.113.10")
            && l.contains("[ASSURED]")),
        "{listing}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = lab.run("nat", &[env!("CARGO_BIN_EXE_masq"), "sessions", "--protocol", "50"]);
    let listing = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(listing.lines().any(|l| l.starts_with("esp") && l.contains(" 50 ")), "{listing}");
    let log = lab.stop_masq();
    assert_eq!(lab::total(&log, "unsupported_protocol="), 0, "{log}");
}
