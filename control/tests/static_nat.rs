//! End-to-end: 1:1 static NAT and a port-range forward (issue 12 part 4)
//! with real programs in the namespace lab. Host 1 (100.64.0.2) owns the
//! static address 203.0.113.20; host 2 (100.64.0.3) serves a forwarded
//! range of the pool address 203.0.113.10. Needs root.

mod lab;

use lab::{http_server, total, Lab, UDP_CLIENT, UDP_ECHO};

const STATIC: &str = "203.0.113.20";

#[test]
fn a_static_host_is_reached_on_any_port_and_leaves_from_its_address() {
    let mut lab = Lab::up("static", 1500);
    // The upstream router sends the static address to the box, as the pool.
    lab.ok("out", &["ip", "route", "add", &format!("{STATIC}/32"), "via", "203.0.113.1", "dev", "out0"]);
    std::fs::write(lab.dir.join("hello.txt"), "hello from the DMZ host\n").unwrap();
    http_server(&mut lab, "in", "100.64.0.2", "80", "dmz-http.log");
    http_server(&mut lab, "in2", "100.64.0.3", "80", "range-http.log");
    http_server(&mut lab, "out", "198.51.100.1", "8080", "outside-http.log");
    lab.spawn("in", &["python3", "-c", UDP_ECHO, "100.64.0.2", "5353"], "dmz-udp.log");
    lab.start_masq(&[
        "--pool",
        "203.0.113.10",
        "--nat-src",
        "100.64.0.0/10",
        "--cores",
        "1",
        "--static-nat",
        &format!("{STATIC}=100.64.0.2"),
        // Across a block boundary (8192): with two workers the range's
        // ports belong to both, its sessions to the first port's owner.
        "--forward",
        "tcp:203.0.113.10:8190-8194=100.64.0.3:80",
    ]);

    // Inbound to the static address: TCP, UDP and ping reach host 1, which
    // sees the real client.
    let url = format!("http://{STATIC}/hello.txt");
    let body = lab.ok("out", &["curl", "-sS", "--max-time", "5", &url]);
    assert_eq!(body, "hello from the DMZ host\n");
    let log = lab.read("dmz-http.log");
    assert!(log.contains("203.0.113.2 - - ") && log.contains("GET /hello.txt"), "host 1's server saw: {log}");
    let r = lab.ok("out", &["python3", "-c", UDP_CLIENT, STATIC, "5353", "3", "100"]);
    assert_eq!(r.trim(), "echoed 3 of 3", "UDP to the static address");
    lab.ok("out", &["ping", "-c", "2", "-W", "2", STATIC]);

    // Outbound from host 1: the outside server sees the static address;
    // host 2 still leaves from the pool.
    lab.ok("in", &["curl", "-sS", "--max-time", "5", "-o", "/dev/null", "http://198.51.100.1:8080/"]);
    lab.ok("in2", &["curl", "-sS", "--max-time", "5", "-o", "/dev/null", "http://198.51.100.1:8080/"]);
    let log = lab.read("outside-http.log");
    assert!(log.contains(&format!("{STATIC} - - ")), "host 1 did not leave from {STATIC}: {log}");
    assert!(log.contains("203.0.113.10 - - "), "host 2 did not leave from the pool: {log}");
    assert!(!log.contains("100.64.0."), "an inside address got out: {log}");

    // The range forward, on two of its ports, both to host 2's port 80.
    for port in ["8190", "8193"] {
        let url = format!("http://203.0.113.10:{port}/hello.txt");
        let body = lab.ok("out", &["curl", "-sS", "--max-time", "5", &url]);
        assert_eq!(body, "hello from the DMZ host\n", "port {port}");
    }
    let log = lab.read("range-http.log");
    let got = log.lines().filter(|l| l.starts_with("203.0.113.2 - - ") && l.contains("GET /hello.txt")).count();
    assert_eq!(got, 2, "host 2's server saw: {log}");

    let out = lab.stop_masq();
    assert!(total(&out, "sessions created ") >= 6, "{out}");
}
