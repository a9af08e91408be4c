//! The box's boundary seen from outside, end to end (issue 11): a scan of
//! every address of the box and of the inside hosts, with real tools in the
//! namespace lab. Needs root, like every lab test.

mod lab;

use lab::{total, Lab, TCP_CONNECT, UDP_ECHO};
use std::time::Duration;

/// The source address of a tcpdump `-n` line (`... IP 1.2.3.4.80 > ...`).
fn source(line: &str) -> Option<&str> {
    let after = line.split(" IP ").nth(1)?;
    let src = after.split(" > ").next()?;
    // Addresses with a port carry it as a fifth dotted part.
    Some(match src.match_indices('.').nth(3) {
        Some((i, _)) => &src[..i],
        None => src.trim_end_matches(':'),
    })
}

/// A TCP service: accepts connections, says "box", closes.
const TCP_SERVICE: &str = "import socket,sys
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); s.bind((sys.argv[1],int(sys.argv[2]))); s.listen(16)
print('listening',flush=True)
while True:
    c,a=s.accept(); c.sendall(b'box'); c.close()";

fn service(lab: &mut Lab, addr: &str, port: &str) {
    let log = format!("svc-{port}.log");
    lab.spawn("nat", &["python3", "-c", TCP_SERVICE, addr, port], &log);
    assert!(lab.wait_for(Duration::from_secs(5), || lab.read(&log).contains("listening")), "service {addr}:{port}");
}

#[test]
fn an_outside_scan_gets_no_inside_answer_reaches_nothing_inside_and_is_counted() {
    let mut lab = Lab::up("bound", 1500);
    // The box's own services: one on every address (so on its inside one),
    // one listed in management.allow on its outside address, one not listed.
    service(&mut lab, "0.0.0.0", "8000");
    service(&mut lab, "203.0.113.1", "40000");
    service(&mut lab, "203.0.113.1", "40001");
    lab.start_masq(&["--pool", "203.0.113.10", "--nat-src", "100.64.0.0/10", "--cores", "1", "--allow", "tcp:40000"]);

    // From inside, the box's inside service still answers.
    let r = lab.ok("in", &["python3", "-c", TCP_CONNECT, "100.64.0.1", "8000", "2"]);
    assert_eq!(r.trim(), "connected", "the box's service from inside");

    lab.spawn("out", &["tcpdump", "-l", "-n", "-Q", "in", "-i", "out0", "ip"], "outside.log");
    // Not port 8000: the inside host's own connection to the box, checked
    // above, may still be closing.
    lab.spawn("in", &["tcpdump", "-l", "-n", "-Q", "in", "-i", "in0", "ip and not port 8000"], "inside.log");
    assert!(
        lab.wait_for(Duration::from_secs(5), || lab.read("outside.log").contains("listening")
            && lab.read("inside.log").contains("listening")),
        "tcpdump did not start"
    );
    let probe = lab::repo().join("control/tests/lab/probe.py");
    let sent = lab.ok(
        "out",
        &[
            // Debian's python, which has python3-scapy (deploy/setup.sh).
            "/usr/bin/python3",
            probe.to_str().unwrap(),
            "203.0.113.1",
            "100.64.0.1",
            "203.0.113.10",
            "100.64.0.2",
            "100.64.0.3",
            "--spoof",
            "100.64.0.3",
            "--spoof-dst",
            "203.0.113.1",
            "203.0.113.10",
        ],
    );
    assert!(sent.starts_with("sent "), "{sent}");
    // The listed service answers from outside; the unlisted one and the
    // inside-side one do not.
    let r = lab.ok("out", &["python3", "-c", TCP_CONNECT, "203.0.113.1", "40000", "2"]);
    assert_eq!(r.trim(), "connected", "the listed service from outside");
    for (addr, port) in [("203.0.113.1", "40001"), ("203.0.113.1", "8000"), ("100.64.0.1", "8000")] {
        let r = lab.ok("out", &["python3", "-c", TCP_CONNECT, addr, port, "2"]);
        assert_eq!(r.trim(), "timeout", "{addr}:{port} from outside");
    }
    std::thread::sleep(Duration::from_millis(500));
    let out = lab.stop_masq();

    let outside = lab.read("outside.log");
    let answers: Vec<&str> = outside.lines().filter(|l| l.contains(" IP ")).collect();
    for l in &answers {
        let src = source(l).unwrap_or_default();
        assert!(!src.starts_with("100.64."), "an answer with an inside source left the box: {l}");
        assert_eq!(
            src, "203.0.113.1",
            "only the box's outside address answers (pings, time exceeded, port 40000): {l}"
        );
        assert!(
            l.contains("ICMP echo reply") || l.contains("time exceeded") || l.contains("203.0.113.1.40000 >"),
            "an answer to a probe: {l}"
        );
    }
    assert!(answers.iter().any(|l| l.contains("ICMP echo reply")), "the box answers pings: {outside}");
    let inside = lab.read("inside.log");
    let reached: Vec<&str> = inside.lines().filter(|l| l.contains(" IP ")).collect();
    assert!(reached.is_empty(), "packets from the scan reached the inside:\n{}", reached.join("\n"));

    // Every probe is counted by reason.
    assert!(total(&out, "other_side=") >= 400, "probes to the inside address, dropped in XDP: {out}");
    assert!(total(&out, "no_session=") >= 800, "probes to the pool and inside hosts: {out}");
    assert!(total(&out, "spoofed=") >= 7, "inside sources from outside: {out}");
    // Later fragments with no first one wait in the hold, then expire (`nat::frag`).
    assert!(total(&out, "fragment_unknown=") + total(&out, "fragment_hold_expired=") >= 2, "{out}");
    assert!(total(&out, "host guard: refused ") >= 400, "probes to the box's outside address: {out}");
    assert_eq!(total(&out, " leaked "), 0, "{out}");
}

/// A pool whose subscribers may hold two sessions each (issue 11 item 5).
const LIMITED: &str = "\
interfaces:
  inside: nat-in
  outside: nat-out
workers:
  cores: [1]
pools:
  - name: lab
    addresses: [203.0.113.10]
    max_sessions_per_subscriber: 2
rules:
  - action: snat
    pool: lab
    match:
      src: [100.64.0.0/10]
";

/// Two UDP flows answered, a third refused: prints what the third's socket
/// said and the ICMP error a raw socket saw (source, type, code, and the
/// destination the quoted header names). Host unreachable is a soft error
/// (RFC 1122 section 4.2.3.9): Linux tells a UDP socket of it only with
/// IP_RECVERR.
const THIRD_FLOW: &str = "import socket,sys,errno
dst=(sys.argv[1],int(sys.argv[2]))
raw=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_ICMP); raw.settimeout(3)
for p in (4001,4002):
    s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('',p)); s.settimeout(2); s.sendto(b'hi',dst); s.recvfrom(100)
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.setsockopt(socket.IPPROTO_IP,getattr(socket,'IP_RECVERR',11),1)
s.bind(('',4003)); s.connect(dst); s.settimeout(2); s.send(b'third')
try:
    s.recv(100); print('answered')
except OSError as e: print('third:', errno.errorcode.get(e.errno, e.errno))
while True:
    d,a=raw.recvfrom(2000); h=(d[0]&15)*4
    if d[h]==3:
        q=d[h+8:]; qh=(q[0]&15)*4
        print('icmp from %s type %d code %d about %s:%d'%(a[0],d[h],d[h+1],socket.inet_ntoa(q[16:20]),int.from_bytes(q[qh+2:qh+4],'big')))
        break";

/// Sends from the given source ports and waits for each echo.
const AGAIN: &str = "import socket,sys
for p in sys.argv[3:]:
    s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('',int(p))); s.settimeout(2)
    s.sendto(b'again',(sys.argv[1],int(sys.argv[2]))); s.recvfrom(100)
print('ok')";

#[test]
fn a_subscriber_at_its_limit_hears_host_unreachable_and_keeps_its_flows() {
    let mut lab = Lab::up("limit", 1500);
    std::fs::write(lab.dir.join("masq.yaml"), lab::shaped(LIMITED)).unwrap();
    let cfg = lab.dir.join("masq.yaml");
    lab.start_masq_with(&["run", "--config", cfg.to_str().unwrap()]);
    lab.spawn("out", &["python3", "-c", UDP_ECHO, "198.51.100.1", "5353"], "echo.log");
    std::thread::sleep(Duration::from_millis(300));

    let said = lab.ok("in", &["python3", "-c", THIRD_FLOW, "198.51.100.1", "5353"]);
    assert!(said.contains("third: EHOSTUNREACH"), "the refused flow's socket hears of it: {said}");
    assert!(
        said.contains("icmp from 100.64.0.1 type 3 code 1 about 198.51.100.1:5353"),
        "from the box's inside address, quoting the refused datagram: {said}"
    );
    // Nothing was deleted to make room: the first two flows still work.
    assert_eq!(lab.ok("in", &["python3", "-c", AGAIN, "198.51.100.1", "5353", "4001", "4002"]).trim(), "ok");
    // A TCP connect (past the one-a-second limit) fails at once, not after
    // its SYN retries: Linux aborts a connect on any unreachable.
    std::thread::sleep(Duration::from_millis(1100));
    let t0 = std::time::Instant::now();
    let r = lab.ok("in", &["python3", "-c", TCP_CONNECT, "198.51.100.1", "8080", "5"]);
    assert!(r.contains("No route to host") && t0.elapsed() < Duration::from_secs(3), "{r}");

    // Two refusals (the third UDP flow, the SYN), two errors (workers
    // publish their counters every 100 ms).
    let scrape = || lab.ok("nat", &["curl", "-sS", "http://127.0.0.1:9091/metrics"]);
    let counted = |m: &str| {
        m.contains("masq_subscriber_limit_events_total{pool=\"lab\",reason=\"subscriber_session_limit\"} 2")
            && m.contains("masq_icmp_unreachable_sent_total 2")
    };
    assert!(lab.wait_for(Duration::from_secs(2), || counted(&scrape())), "{}", scrape());
    let out = lab.stop_masq();
    assert!(out.contains("ICMP host unreachable from 100.64.0.1"), "{out}");
    assert_eq!(
        out.matches("limit subscriber_session_limit 100.64.0.2 -> 203.0.113.10 pool lab: new flows refused").count(),
        1,
        "logged (without nat_events) once: {out}"
    );
    assert!(total(&out, "subscriber_session_limit=") >= 1, "{out}");
}
