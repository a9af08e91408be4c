//! End-to-end tests: the real masq binary on AF_XDP sockets in the
//! namespace lab, with real clients and servers (curl, python's HTTP
//! server, iperf3, ping, traceroute, tcpdump, kernel sockets) on both sides.
//! They need root (CI is root); without it they fail and say so.

mod lab;

use lab::{http_server, total, Lab, TCP_CONNECT, UDP_CLIENT, UDP_ECHO};
use std::time::Duration;

/// SNAT of the subscribers into the lab's pool address, one worker on core 1.
const SNAT: &[&str] = &["--pool", "203.0.113.10", "--nat-src", "100.64.0.0/10", "--cores", "1"];

fn sha(lab: &Lab, file: &str) -> String {
    let o = lab.ok("nat", &["sha256sum", file]);
    o.split_whitespace().next().unwrap_or_default().to_string()
}

#[test]
fn tcp_download_arrives_whole_and_the_server_sees_the_pool_address() {
    let mut lab = Lab::up("tcp", 1500);
    std::fs::write(
        lab.dir.join("blob"),
        (0..6_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0]).collect::<Vec<u8>>(),
    )
    .unwrap();
    http_server(&mut lab, "out", "198.51.100.1", "8080", "http.log");
    lab.start_masq(SNAT);
    lab.ok("in", &["curl", "-sS", "-o", "got", "http://198.51.100.1:8080/blob"]);
    assert_eq!(sha(&lab, "got"), sha(&lab, "blob"), "the download differs from the file");
    let log = lab.read("http.log");
    assert!(log.contains("203.0.113.10 - - ") && log.contains("GET /blob"), "server log: {log}");
    assert!(!log.contains("100.64.0.2"), "the server saw the inside address: {log}");
    let out = lab.stop_masq();
    assert!(out.contains("sessions created"), "{out}");
}

#[test]
fn udp_round_trips_through_the_pool_address() {
    let mut lab = Lab::up("udp", 1500);
    lab.spawn("out", &["python3", "-c", UDP_ECHO, "198.51.100.1", "5353"], "echo.log");
    lab.start_masq(SNAT);
    std::thread::sleep(Duration::from_millis(300));
    let out = lab.ok("in", &["python3", "-c", UDP_CLIENT, "198.51.100.1", "5353", "20", "1000"]);
    assert_eq!(out.trim(), "echoed 20 of 20");
    let log = lab.read("echo.log");
    assert!(log.lines().all(|l| l.starts_with("from 203.0.113.10:")), "echo server saw: {log}");
    assert_eq!(log.lines().count(), 20);
}

#[test]
fn icmp_echo_is_translated_by_identifier() {
    let mut lab = Lab::up("icmp", 1500);
    lab.start_masq(SNAT);
    lab.spawn("out", &["tcpdump", "-l", "-n", "-i", "out0", "-c", "4", "icmp"], "dump.log");
    assert!(
        lab.wait_for(Duration::from_secs(5), || lab.read("dump.log").contains("listening")),
        "tcpdump did not start"
    );
    let ping = lab.ok("in", &["ping", "-c", "2", "-i", "0.3", "-W", "2", "198.51.100.1"]);
    assert!(ping.contains("2 received"), "{ping}");
    assert!(lab.wait_for(Duration::from_secs(3), || lab.read("dump.log").matches("ICMP echo").count() >= 4));
    let dump = lab.read("dump.log");
    assert_eq!(dump.matches("203.0.113.10 > 198.51.100.1: ICMP echo request").count(), 2, "{dump}");
    assert_eq!(dump.matches("198.51.100.1 > 203.0.113.10: ICMP echo reply").count(), 2, "{dump}");
}

#[test]
fn traceroute_shows_the_box_and_the_translated_time_exceeded() {
    let mut lab = Lab::up("trace", 1500);
    lab.start_masq(SNAT);
    // UDP probes: hop 1 is the box (its kernel answers TTL 1), hop 2 the
    // outside router, whose time exceeded quotes the translated probe and
    // must be translated back; hop 3 answers port unreachable, also translated.
    let out = lab.ok("in", &["traceroute", "-n", "-q", "1", "-w", "2", "-m", "5", "192.0.2.1"]);
    let hops: Vec<&str> = out.lines().skip(1).filter_map(|l| l.split_whitespace().nth(1)).collect();
    assert_eq!(hops, ["100.64.0.1", "203.0.113.2", "192.0.2.1"], "traceroute:\n{out}\nmasq:\n{}", lab.masq_log());
    // ICMP probes too.
    let out = lab.ok("in", &["traceroute", "-I", "-n", "-q", "1", "-w", "2", "-m", "5", "192.0.2.1"]);
    let hops: Vec<&str> = out.lines().skip(1).filter_map(|l| l.split_whitespace().nth(1)).collect();
    assert_eq!(hops, ["100.64.0.1", "203.0.113.2", "192.0.2.1"], "traceroute -I:\n{out}");
}

#[test]
fn a_static_port_forward_is_reached_from_outside() {
    let mut lab = Lab::up("fwd", 1500);
    std::fs::write(lab.dir.join("hello.txt"), "hello from inside\n").unwrap();
    http_server(&mut lab, "in", "100.64.0.2", "80", "inside-http.log");
    let mut args = SNAT.to_vec();
    args.extend(["--forward", "tcp:203.0.113.10:8080=100.64.0.2:80"]);
    lab.start_masq(&args);
    let body = lab.ok("out", &["curl", "-sS", "--max-time", "5", "http://203.0.113.10:8080/hello.txt"]);
    assert_eq!(body, "hello from inside\n");
    let log = lab.read("inside-http.log");
    assert!(log.contains("203.0.113.2 - - ") && log.contains("GET /hello.txt"), "inside server saw: {log}");
}

#[test]
fn hairpinning_reaches_an_inside_host_by_its_public_address() {
    let mut lab = Lab::up("hairp", 1500);
    std::fs::write(lab.dir.join("hello.txt"), "hairpin\n").unwrap();
    http_server(&mut lab, "in", "100.64.0.2", "80", "inside-http.log");
    let mut args = SNAT.to_vec();
    args.extend(["--forward", "tcp:203.0.113.10:8080=100.64.0.2:80"]);
    lab.start_masq(&args);
    // Host 2 (100.64.0.3) asks for the public address: masq turns it back inside
    // (RFC 4787 REQ-9), with host 2's public mapping as the source.
    let body = lab.ok("in2", &["curl", "-sS", "--max-time", "5", "http://203.0.113.10:8080/hello.txt"]);
    assert_eq!(body, "hairpin\n");
    let log = lab.read("inside-http.log");
    let hairpinned: Vec<&str> = log.lines().filter(|l| l.contains("GET /hello.txt")).collect();
    assert_eq!(hairpinned.len(), 1, "{log}");
    assert!(hairpinned[0].starts_with("203.0.113.10 - - "), "the inside server saw {}", hairpinned[0]);
    let out = lab.stop_masq();
    let n = total(&out, "hairpinned ");
    assert!(n >= 6, "a TCP exchange (handshake, request, response, close) hairpins 6+ packets, got {n}: {out}");
}

#[test]
fn an_outside_syn_without_a_forward_is_dropped_and_nothing_answers() {
    let mut lab = Lab::up("syn", 1500);
    lab.start_masq(SNAT);
    lab.spawn("out", &["tcpdump", "-l", "-n", "-i", "out0", "src", "203.0.113.10"], "dump.log");
    assert!(
        lab.wait_for(Duration::from_secs(5), || lab.read("dump.log").contains("listening")),
        "tcpdump did not start"
    );
    let r = lab.ok("out", &["python3", "-c", TCP_CONNECT, "203.0.113.10", "9999", "2"]);
    assert_eq!(r.trim(), "timeout", "a SYN to the pool address with no forward must be dropped, not answered");
    std::thread::sleep(Duration::from_millis(300));
    let dump = lab.read("dump.log");
    assert!(!dump.contains("203.0.113.10."), "something left the pool address: {dump}");
    let out = lab.stop_masq();
    assert!(total(&out, "no_session=") >= 1, "drop not counted under no_session:\n{out}");
}

#[test]
fn an_outside_connection_through_a_no_nat_rule_keeps_its_addresses() {
    let mut lab = Lab::up("nonat", 1500);
    std::fs::write(lab.dir.join("hello.txt"), "exempt\n").unwrap();
    http_server(&mut lab, "in", "100.64.0.2", "80", "inside-http.log");
    let mut args = vec!["--no-nat-dst", "203.0.113.0/24"];
    args.extend(SNAT);
    lab.start_masq(&args);
    // The outside router connects to the inside host's own address; the SYN
    // passes by the no_nat rule and the SYN/ACK must keep 100.64.0.2 as its
    // source, or the client would never complete the handshake.
    let body = lab.ok("out", &["curl", "-sS", "--max-time", "5", "http://100.64.0.2/hello.txt"]);
    assert_eq!(body, "exempt\n");
    let log = lab.read("inside-http.log");
    assert!(log.lines().any(|l| l.starts_with("203.0.113.2 - - ") && l.contains("GET /hello.txt")), "{log}");
    // Traffic to other destinations is still translated.
    http_server(&mut lab, "out", "198.51.100.1", "8081", "out-http.log");
    lab.ok("in", &["curl", "-sS", "--max-time", "5", "-o", "/dev/null", "http://198.51.100.1:8081/hello.txt"]);
    let log = lab.read("out-http.log");
    assert!(log.lines().any(|l| l.starts_with("203.0.113.10 - - ")), "not translated: {log}");
    assert!(log.lines().all(|l| !l.contains("100.64.0.2")), "translated traffic leaked its inside address: {log}");
}

/// A TCP sink: accepts one connection, prints the SHA-256 of all it received.
const TCP_SHA_SINK: &str = "import socket,sys,hashlib
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); s.bind((sys.argv[1],int(sys.argv[2]))); s.listen(1)
c,a=s.accept(); h=hashlib.sha256(); n=0
while True:
    d=c.recv(65536)
    if not d: break
    h.update(d); n+=len(d)
print('from %s %d bytes %s'%(a[0],n,h.hexdigest()),flush=True)";

/// A TCP source: sends a file, prints its SHA-256.
const TCP_SEND: &str = "import socket,sys,hashlib
d=open(sys.argv[3],'rb').read(); s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=10); s.sendall(d); s.close()
print('%d bytes %s'%(len(d),hashlib.sha256(d).hexdigest()))";

#[test]
fn large_packets_and_fragments_cross_a_smaller_outside_mtu() {
    // MTU 1500 inside, 1400 outside.
    let mut lab = Lab::up("mtu", 1400);
    std::fs::write(
        lab.dir.join("blob"),
        (0..3_000_000u32).map(|i| (i.wrapping_mul(40503) >> 7).to_le_bytes()[0]).collect::<Vec<u8>>(),
    )
    .unwrap();
    http_server(&mut lab, "out", "198.51.100.1", "8080", "http.log");
    lab.spawn("out", &["python3", "-c", TCP_SHA_SINK, "198.51.100.1", "9000"], "sink.log");
    lab.spawn("out", &["python3", "-c", UDP_ECHO, "198.51.100.1", "5353"], "echo.log");
    lab.start_masq(SNAT);
    // Download: the server's segments fit 1400 already.
    lab.ok("in", &["curl", "-sS", "-o", "got", "http://198.51.100.1:8080/blob"]);
    assert_eq!(sha(&lab, "got"), sha(&lab, "blob"));
    // First (before path MTU discovery teaches the subscriber 1400), UDP datagrams of 3000 bytes: the subscriber's fragments (1500) are cut
    // again by masq for 1400; the server's reply comes in 1400-byte fragments.
    let out = lab.ok("in", &["python3", "-c", UDP_CLIENT, "198.51.100.1", "5353", "10", "3000"]);
    assert_eq!(out.trim(), "echoed 10 of 10", "masq:\n{}", lab.masq_log());
    // Upload: the server advertises an MSS for 1500 (as a server behind a
    // bigger link would), so the subscriber sends full-size DF segments and
    // path MTU discovery must work through the box: the XDP program gives
    // those to the box's kernel, which answers "fragmentation needed"
    // (RFC 1191), and the subscriber resends at 1400.
    lab.ok(
        "out",
        &["ip", "route", "replace", "203.0.113.10/32", "via", "203.0.113.1", "dev", "out0", "advmss", "1460"],
    );
    let sent = lab.ok("in", &["python3", "-c", TCP_SEND, "198.51.100.1", "9000", "blob"]);
    assert!(lab.wait_for(Duration::from_secs(5), || lab.read("sink.log").contains("bytes")), "sink got nothing");
    let got = lab.read("sink.log");
    assert!(got.starts_with("from 203.0.113.10 "), "{got}");
    assert_eq!(got.split_whitespace().nth(4), sent.split_whitespace().nth(2), "upload differs: sent {sent}, got {got}");
    let log = lab.stop_masq();
    assert!(total(&log, "fragmented ") >= 10, "{log}");
    assert_eq!(total(&log, "fragment_unknown="), 0, "{log}");
    assert!(total(&log, "too_big_df=") >= 1, "no full-size DF segment reached the kernel for PMTUD: {log}");
}

#[test]
fn two_workers_hand_replies_to_the_owner_and_every_flow_works() {
    // Two queues per link, one worker each. veth has no RSS: a frame lands
    // on the queue of the CPU that sent it, so subscribers' packets and
    // replies reach either worker and the one that does not own the
    // session hands them over.
    let mut lab = Lab::up_with("2work", 1500, 2);
    lab.spawn("out", &["python3", "-c", UDP_ECHO, "198.51.100.1", "5353"], "echo.log");
    std::fs::write(lab.dir.join("blob"), vec![42u8; 2_000_000]).unwrap();
    http_server(&mut lab, "out", "198.51.100.1", "8080", "http.log");
    lab.start_masq(&["--pool", "203.0.113.10", "--nat-src", "100.64.0.0/10", "--cores", "0,1"]);
    for host in ["in", "in2"] {
        for cpu in ["0", "1"] {
            let out =
                lab.ok(host, &["taskset", "-c", cpu, "python3", "-c", UDP_CLIENT, "198.51.100.1", "5353", "20", "200"]);
            assert_eq!(out.trim(), "echoed 20 of 20", "{host} on CPU {cpu}");
            lab.ok(host, &["taskset", "-c", cpu, "curl", "-sS", "-o", "got", "http://198.51.100.1:8080/blob"]);
            assert_eq!(sha(&lab, "got"), sha(&lab, "blob"), "{host} on CPU {cpu}");
        }
    }
    let log = lab.stop_masq();
    assert!(log.contains("worker 1 on core 1 queue 1"), "{log}");
    assert!(
        total(&log, "handed off ") >= 1,
        "traffic from both CPUs reached both workers, yet nothing was handed off: {log}"
    );
    for drop in ["handoff_no_queue=", "handoff_too_big=", "handoff_queue_full=", "handoff_no_frame="] {
        assert_eq!(total(&log, drop), 0, "{drop}\n{log}");
    }
}

#[test]
fn masquerade_shares_the_outside_address_with_the_box_itself() {
    let mut lab = Lab::up("masq", 1500);
    std::fs::write(lab.dir.join("hello.txt"), "box\n").unwrap();
    http_server(&mut lab, "out", "198.51.100.1", "8080", "http.log");
    // The box's own service on its outside address, on a port outside the
    // NAT's share (1024-32767 by default).
    http_server(&mut lab, "nat", "203.0.113.1", "40000", "box-http.log");
    // The box's service is listed for outside hosts (management.allow).
    lab.start_masq(&["--masquerade", "--nat-src", "100.64.0.0/10", "--cores", "1", "--allow", "tcp:40000"]);
    lab.ok("in", &["curl", "-sS", "-o", "/dev/null", "http://198.51.100.1:8080/hello.txt"]);
    let log = lab.read("http.log");
    assert!(log.lines().any(|l| l.starts_with("203.0.113.1 - - ")), "not masqueraded: {log}");
    // The box still answers on that address: its service (passed by the XDP
    // program), and ping (ICMP goes to masq, which finds no session and
    // gives it to the kernel through the TAP device).
    let body = lab.ok("out", &["curl", "-sS", "--max-time", "5", "http://203.0.113.1:40000/hello.txt"]);
    assert_eq!(body, "box\n");
    let ping = lab.ok("out", &["ping", "-c", "2", "-i", "0.3", "-W", "2", "203.0.113.1"]);
    assert!(ping.contains("2 received"), "{ping}");
    let out = lab.stop_masq();
    assert!(total(&out, "to kernel ") >= 2, "{out}");
    assert_eq!(total(&out, "pass_not_reinjected="), 0, "{out}");
}

#[test]
fn masquerade_follows_a_new_outside_address() {
    let mut lab = Lab::up("renum", 1500);
    std::fs::write(lab.dir.join("hello.txt"), "x\n").unwrap();
    http_server(&mut lab, "out", "198.51.100.1", "8080", "http.log");
    lab.start_masq(&["--masquerade", "--nat-src", "100.64.0.0/10", "--cores", "1"]);
    lab.ok("in", &["curl", "-sS", "-o", "/dev/null", "http://198.51.100.1:8080/hello.txt"]);
    // The outside address changes (as a DHCP lease or a renumbering would).
    lab.ok("nat", &["sysctl", "-qw", "net.ipv4.conf.nat-out.promote_secondaries=1"]);
    lab.ok("nat", &["ip", "addr", "add", "203.0.113.7/24", "dev", "nat-out"]);
    lab.ok("nat", &["ip", "addr", "del", "203.0.113.1/24", "dev", "nat-out"]);
    assert!(
        lab.wait_for(Duration::from_secs(4), || lab.masq_log().contains("outside address 203.0.113.1 -> 203.0.113.7")),
        "{}",
        lab.masq_log()
    );
    lab.ok("in", &["curl", "-sS", "--max-time", "5", "-o", "/dev/null", "http://198.51.100.1:8080/hello.txt"]);
    let log = lab.read("http.log");
    let clients: Vec<&str> =
        log.lines().filter(|l| l.contains("GET /hello.txt")).filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(clients, ["203.0.113.1", "203.0.113.7"], "{log}");
    // The box answers on its new address (ICMP through masq to the kernel).
    let ping = lab.ok("out", &["ping", "-c", "1", "-W", "2", "203.0.113.7"]);
    assert!(ping.contains("1 received"), "{ping}");
}

/// The host namespace's interfaces and their packet counters' names (what
/// the lab must never add to or send through).
fn host_links() -> Vec<String> {
    let o = std::process::Command::new("ip").args(["-o", "link", "show"]).output().expect("ip link");
    let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn the_lab_and_masq_leave_the_host_namespace_alone() {
    let before = host_links();
    {
        let mut lab = Lab::up("host", 1500);
        lab.start_masq(SNAT);
        assert_eq!(host_links(), before, "the lab put an interface in the host namespace");
        let ping = lab.ok("in", &["ping", "-c", "1", "-W", "2", "198.51.100.1"]);
        assert!(ping.contains("1 received"));
        lab.stop_masq();
    }
    assert_eq!(host_links(), before);
    let left = String::from_utf8_lossy(
        &std::process::Command::new("ip").args(["netns", "list"]).output().expect("ip netns").stdout,
    )
    .lines()
    .filter(|l| l.contains("host-"))
    .count();
    assert_eq!(left, 0, "a lab namespace survived its test");
}

#[test]
fn masq_leaves_no_xdp_program_after_sigint_or_sigkill() {
    let mut lab = Lab::up("exit", 1500);
    lab.start_masq(SNAT);
    assert_eq!(lab.xdp_attached(), 2, "one program per interface while running");
    // The kernel of the box may not forward on its own while masq does.
    let guard = lab.ok("nat", &["nft", "list", "table", "ip", "masq_guard"]);
    assert!(guard.contains("hook forward") && guard.contains("policy drop"), "{guard}");
    assert!(!lab.masq_log().contains("could not install"), "{}", lab.masq_log());
    let out = lab.stop_masq();
    assert!(out.contains("XDP programs detached"), "{out}");
    assert_eq!(lab.xdp_attached(), 0, "SIGINT left a program attached");
    assert!(!lab.run("nat", &["nft", "list", "table", "ip", "masq_guard"]).status.success(), "the guard outlived masq");
    // SIGKILL: the kernel closes the bpf links; nothing stops the next start.
    lab.start_masq(SNAT);
    lab.kill_masq();
    assert!(lab.wait_for(Duration::from_secs(3), || lab.xdp_attached() == 0), "SIGKILL left a program attached");
    lab.start_masq(SNAT);
    let ping = lab.ok("in", &["ping", "-c", "1", "-W", "2", "198.51.100.1"]);
    assert!(ping.contains("1 received"), "{ping}");
    lab.stop_masq();
}

#[test]
fn an_idle_masq_sleeps_and_wakes_for_the_next_packet() {
    let mut lab = Lab::up("idle", 1500);
    lab.start_masq(SNAT);
    // Busy-polling workers would use a whole core each.
    std::thread::sleep(Duration::from_millis(500));
    let (cpu0, t0) = (lab.masq_cpu_secs(), std::time::Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let share = (lab.masq_cpu_secs() - cpu0) / t0.elapsed().as_secs_f64();
    let workers = f64::from(lab::workers());
    assert!(share < 0.25 * workers, "idle masq used {:.0}% of a core ({workers} workers)", share * 100.0);
    // On a loaded machine a polling worker gets little CPU too: that it
    // slept, and how long, is the workers' own count: with nothing due a
    // sleep ends at a frame, a hand-off, a control request or after
    // 100 ms, so about ten a second each (1 ms sleeps made a thousand).
    let sleeps = lab.metric("masq_idle_sleeps_total");
    assert!(
        sleeps >= 1 && sleeps < 100 * u64::from(lab::workers()),
        "workers slept {sleeps} times in about 3.5 idle seconds: not at all, or short"
    );
    // A control request (a session listing asks every worker) reaches a
    // sleeping worker through its eventfd: counted by the worker.
    for _ in 0..3 {
        let o = lab.run("nat", &[env!("CARGO_BIN_EXE_masq"), "sessions"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::thread::sleep(Duration::from_millis(300));
    }
    let wakes = lab.metric("masq_idle_wakes_total");
    assert!(wakes >= 1, "no listing woke a sleeping worker through its eventfd ({wakes} wakes)");
    // The first packet after the idle time wakes a worker and goes through.
    let ping = lab.ok("in", &["ping", "-c", "1", "-W", "2", "198.51.100.1"]);
    assert!(ping.contains("1 received"), "{ping}");
    let out = lab.stop_masq();
    assert!(out.contains("sessions created"), "{out}");
}

#[test]
fn the_session_tables_are_on_transparent_huge_pages() {
    let mut lab = Lab::up("thp", 1500);
    lab.start_masq(SNAT);
    let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    let log = lab.masq_log();
    if mode.contains("[never]") {
        // The fallback: 4 KiB pages, and the log says how to change that.
        assert!(log.contains("session tables on 4 KiB pages"), "{log}");
        return;
    }
    let mib: u64 = log
        .split("session tables: ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no huge page line in the log: {log}"));
    assert!(mib > 0, "{log}");
    // The kernel backs them so: AnonHugePages of masq's memory.
    let pid = lab.masq_pid().expect("masq runs");
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    let huge_kib: u64 = rollup
        .lines()
        .find_map(|l| l.strip_prefix("AnonHugePages:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    assert!(huge_kib >= 2048, "masq has {huge_kib} KiB on huge pages ({mib} MiB advised):\n{rollup}");
    lab.stop_masq();
}
