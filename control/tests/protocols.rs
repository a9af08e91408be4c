//! Other IP protocols end to end (root; CI is root): GRE and ESP crafted
//! with scapy (the kernel here has no GRE module) leave the box from the
//! pool address and their answers come back to the inside host; the
//! session listing shows them by protocol number; a second host that would
//! take the same (public address, remote, protocol) is refused, with two
//! workers too (the hosts on different workers).

mod lab;

use lab::Lab;
use std::time::Duration;

/// The lab's SNAT, other protocols included, and the control API.
fn config() -> String {
    lab::snat_config("      protocols: [tcp, udp, icmp, other]\n", "control:\n  listen: 127.0.0.1:9091\n")
}

/// Sends GRE and ESP from the inside host through the running masq to a
/// scapy answerer outside; checks both left from `public` and both answers
/// came back to the inside host.
fn gre_and_esp_exchange(lab: &mut Lab, public: &str) {
    let script = lab::repo().join("control/tests/lab/proto.py");
    let script = script.to_str().expect("utf-8 path");
    // Debian's python, which has python3-scapy (deploy/setup.sh).
    lab.spawn("out", &["/usr/bin/python3", script, "answer", "out0", "2"], "answer.log");
    assert!(lab.wait_for(Duration::from_secs(10), || lab.read("answer.log").contains("listening")), "sniffer");
    std::thread::sleep(Duration::from_millis(500));

    let back = lab.ok("in", &["/usr/bin/python3", script, "send", "br0", "100.64.0.2", "198.51.100.1"]);
    assert!(lab.wait_for(Duration::from_secs(5), || lab.read("answer.log").lines().count() >= 3));
    let seen = lab.read("answer.log");
    // Outside, both come from the public address, their contents untouched.
    assert!(
        seen.contains(&format!("got gre {public} > 198.51.100.1 inner 10.9.0.1 > 10.9.0.2 icmp-type-8")),
        "{seen}\nmasq:\n{}",
        lab.masq_log()
    );
    assert!(seen.contains(&format!("got esp {public} > 198.51.100.1 spi 0x1000 seq 1")), "{seen}");
    assert!(!seen.contains("100.64."), "no inside address outside: {seen}");
    // Inside, the answers arrive addressed to the inside host.
    assert!(
        back.contains("back gre 198.51.100.1 > 100.64.0.2 inner 10.9.0.2 > 10.9.0.1 icmp-type-0"),
        "{back}\nmasq:\n{}",
        lab.masq_log()
    );
    assert!(back.contains("back esp 198.51.100.1 > 100.64.0.2 spi 0x1001 seq 1"), "{back}");
}

#[test]
fn gre_and_esp_leave_from_the_pool_address_and_their_answers_come_back() {
    let mut lab = Lab::up("proto", 1500);
    std::fs::write(lab.dir.join("masq.yaml"), config()).expect("config file");
    let cfg = lab.dir.join("masq.yaml");
    lab.start_masq_with(&["run", "--config", cfg.to_str().expect("utf-8 path")]);
    gre_and_esp_exchange(&mut lab, "203.0.113.10");

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

#[test]
fn a_second_host_is_refused_the_same_public_address_remote_and_protocol_whatever_its_worker() {
    // With MASQ_LAB_WORKERS=2 the two hosts belong to different workers.
    let owner = |a: &str| dataplane::nat::subscriber_owner(u32::from(a.parse::<std::net::Ipv4Addr>().unwrap()), 2);
    assert_ne!(owner("100.64.0.2"), owner("100.64.0.3"));
    let mut lab = Lab::up("protobusy", 1500);
    std::fs::write(lab.dir.join("masq.yaml"), config()).expect("config file");
    let cfg = lab.dir.join("masq.yaml");
    lab.start_masq_with(&["run", "--config", cfg.to_str().expect("utf-8 path")]);
    // The first host's GRE and ESP leave from the one pool address and are answered.
    gre_and_esp_exchange(&mut lab, "203.0.113.10");
    // The second host's would take the same (public address, remote,
    // protocol): both refused, so the first's answers stay unambiguous.
    let script = lab::repo().join("control/tests/lab/proto.py");
    let script = script.to_str().expect("utf-8 path");
    let back = lab.ok("in2", &["/usr/bin/python3", script, "send", "in2", "100.64.0.3", "198.51.100.1"]);
    assert!(!back.contains("back "), "{back}");
    let log = lab.stop_masq();
    assert_eq!(lab::total(&log, "other_proto_busy="), 2, "GRE and ESP refused: {log}");
}

#[test]
fn gre_and_esp_answers_to_a_masquerade_address_reach_masq_not_the_kernel() {
    // The box's own outside address: its XDP program gives masq other
    // protocols too, and masq keeps what its sessions claim.
    let mut lab = Lab::up("protomq", 1500);
    lab.start_masq(&["--masquerade", "--nat-src", "100.64.0.0/10", "--cores", "1"]);
    gre_and_esp_exchange(&mut lab, "203.0.113.1");
}

const HAIRPIN_CONFIG: &str = "\
interfaces:
  inside: nat-in
  outside: nat-out
workers:
  cores: [1]
pools:
  - name: lab
    addresses: [203.0.113.10, 203.0.113.11, 203.0.113.12, 203.0.113.13]
rules:
  - action: snat
    pool: lab
    match:
      src: [100.64.0.0/10]
control:
  listen: 127.0.0.1:9091
";

/// The public address and identifier of `host`'s ICMP session, from the listing.
fn icmp_mapping(lab: &Lab, host: &str) -> Option<(String, String)> {
    let o = lab.run("nat", &[env!("CARGO_BIN_EXE_masq"), "sessions", "--subscriber", host, "--protocol", "icmp"]);
    let listing = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = listing.lines().find(|l| l.starts_with("icmp"))?;
    let field = |k: &str| line.split(k).nth(2).and_then(|r| r.split_whitespace().next()).map(String::from);
    Some((field(" dst=")?, field(" dport=")?))
}

/// Live sessions per worker, from `/metrics`.
fn worker_sessions(lab: &Lab) -> Vec<i64> {
    let m = lab.ok("nat", &["curl", "-sS", "http://127.0.0.1:9091/metrics"]);
    m.lines()
        .filter(|l| l.starts_with("masq_worker_sessions{"))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()))
        .collect()
}

#[test]
fn ping_hairpins_to_another_hosts_public_address_and_identifier() {
    // With MASQ_LAB_WORKERS=2 the two hosts are on different workers
    // (checked below): the echo hairpin crosses them.
    let mut lab = Lab::up("hpping", 1500);
    std::fs::write(lab.dir.join("masq.yaml"), lab::shaped(HAIRPIN_CONFIG)).expect("config file");
    let cfg = lab.dir.join("masq.yaml");
    let cfg = cfg.to_str().expect("utf-8 path").to_string();
    // Each host's public address is its hash's pick (a random seed per
    // start): restart until the two differ (one address cannot tell two
    // hosts' pings apart).
    let mut found = None;
    for _ in 0..8 {
        lab.start_masq_with(&["run", "--config", &cfg]);
        // Outside answers only the first address: the mappings are made all the same.
        lab.run("in2", &["ping", "-c", "1", "-W", "1", "-e", "4242", "198.51.100.1"]);
        std::thread::sleep(Duration::from_millis(300)); // metrics snapshots every 100 ms
        let b_only = worker_sessions(&lab);
        lab.run("in", &["ping", "-c", "1", "-W", "1", "-e", "4343", "198.51.100.1"]);
        std::thread::sleep(Duration::from_millis(300));
        let both = worker_sessions(&lab);
        if lab::workers() == 2 {
            // 100.64.0.3's session on one worker, 100.64.0.2's on the other.
            let a_only: Vec<i64> = both.iter().zip(&b_only).map(|(x, y)| x - y).collect();
            let one = |v: &[i64]| v.iter().filter(|&&n| n == 1).count() == 1 && v.iter().sum::<i64>() == 1;
            assert!(
                b_only.len() == 2 && one(&b_only) && one(&a_only) && a_only != b_only,
                "sessions per worker: {b_only:?} then {both:?}"
            );
        }
        let (b, a) = (icmp_mapping(&lab, "100.64.0.3"), icmp_mapping(&lab, "100.64.0.2"));
        match (b, a) {
            (Some(b), Some(a)) if a.0 != b.0 => {
                found = Some((a, b));
                break;
            }
            other => {
                assert!(other.0.is_some() && other.1.is_some(), "no ICMP sessions listed:\n{}", lab.masq_log());
                lab.stop_masq();
            }
        }
    }
    let ((pa, _), (pb, yb)) = found.expect("two hosts on different public addresses in 8 starts");
    lab.spawn("in2", &["tcpdump", "-l", "-n", "-i", "in2", "icmp"], "in2.log");
    assert!(lab.wait_for(Duration::from_secs(5), || lab.read("in2.log").contains("listening")), "tcpdump");
    let ping = lab.run("in", &["ping", "-c", "2", "-i", "0.3", "-W", "2", "-e", &yb, &pb]);
    let ping = String::from_utf8_lossy(&ping.stdout).into_owned();
    assert!(ping.contains("2 received"), "{ping}\nmasq:\n{}", lab.masq_log());
    // The other host saw the requests from the first host's public address.
    std::thread::sleep(Duration::from_millis(300));
    let seen = lab.read("in2.log");
    assert!(seen.contains(&format!("IP {pa} > 100.64.0.3: ICMP echo request")), "{seen}");
    let log = lab.stop_masq();
    assert_eq!(lab::total(&log, "hairpinned "), 4, "two requests, two replies: {log}");
}
