//! End to end: an HA pair (issue 16) in the namespace lab (`LAB_HA=1`: two
//! boxes on one inside and one outside segment, a sync link between them).
//! keepalived (VRRP, unicast peers) runs in each box's namespace and tells
//! its masq its role (`masq role active|standby`); the active masq streams
//! its port blocks and sessions to the standby. A subscriber keeps a UDP
//! flow going and downloads a large file; the active masq is killed with
//! SIGKILL; keepalived moves the gateway addresses to the other box, which
//! takes over. The outside server sees the UDP flow from the same public
//! address and port before and after, a new flow of the subscriber comes
//! from the same address and a port of its synced blocks, the download
//! completes (sessions are synced), and the gap (last datagram through the
//! old box to the first through the new) is printed and under 3 s.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod lab;
use lab::*;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const TOKEN: &str = "ha-lab-token-0123456789";
const KEY: &str = "ha-lab-sync-key-0123456789abcdef";

/// A box's configuration: its worker on `core` (with `MASQ_LAB_WORKERS=2`,
/// two workers on cores 0 and 1), sync link from `me` to `peer`.
fn config(dir: &str, core: usize, me: &str, peer: &str, sync_sessions: bool) -> String {
    let cores = if workers() == 2 { "0, 1".to_string() } else { core.to_string() };
    format!(
        "interfaces: {{inside: nat-in, outside: nat-out}}
workers: {{cores: [{cores}]}}
pools:
  - name: lab
    addresses: [203.0.113.10]
    block_size: 512
    random_ports: true
rules:
  - {{action: snat, pool: lab, match: {{src: [100.64.0.0/10]}}}}
control: {{listen: \"127.0.0.1:9091\", token_file: {dir}/token}}
logging: {{nat_events: true}}
ha:
  role: standby
  listen: \"{me}:7946\"
  peer: \"{peer}:7946\"
  key_file: {dir}/ha.key
  sync_sessions: {sync_sessions}
"
    )
}

/// keepalived for one box: VRRP over the inside link to the other box's
/// own address (unicast: veth bridges carry multicast, but unicast peers
/// are what a routed production link needs too), both gateway addresses
/// in one instance, masq's health tracked (a dead masq is a fault, and
/// the master steps down at once), the role told to masq on every change.
fn keepalived_conf(dir: &str, me: &str, peer: &str, priority: u8) -> String {
    let masq = env!("CARGO_BIN_EXE_masq");
    let role = |r: &str| format!("\"{masq} role {r} --token-file {dir}/token\"");
    format!(
        "global_defs {{
  router_id masq_{me}
  script_user root
  vrrp_garp_master_repeat 3
  vrrp_garp_master_delay 1
}}
vrrp_script masq_alive {{
  script \"/usr/bin/curl -sf -m 1 -o /dev/null http://127.0.0.1:9091/healthz\"
  interval 1
  timeout 1
  fall 1
  rise 2
}}
vrrp_instance gw {{
  state BACKUP
  interface nat-in
  virtual_router_id 51
  priority {priority}
  advert_int 1
  nopreempt
  unicast_src_ip {me}
  unicast_peer {{
    {peer}
  }}
  virtual_ipaddress {{
    100.64.0.1/24 dev nat-in
    203.0.113.1/24 dev nat-out
  }}
  track_script {{
    masq_alive
  }}
  notify_master {master}
  notify_backup {standby}
  notify_fault {standby}
}}
",
        master = role("active"),
        standby = role("standby"),
    )
}

/// The outside server: a UDP echo that prints each datagram's arrival
/// (wall clock), sender and payload.
const STAMPING_ECHO: &str = "import socket,sys,time
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind((sys.argv[1],int(sys.argv[2])))
while True:
    d,a=s.recvfrom(65535); print('%.4f %s:%d %s'%(time.time(),a[0],a[1],d.decode(errors='replace')),flush=True); s.sendto(d,a)";

/// The subscriber's long UDP flow: from port 40000, a numbered datagram
/// every 20 ms for SECS seconds; prints how many echoes came back.
const UDP_FLOW: &str = "import socket,sys,time
host,port,secs=sys.argv[1],int(sys.argv[2]),float(sys.argv[3])
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('0.0.0.0',40000)); s.setblocking(False)
n=0; back=0; end=time.time()+secs
while time.time()<end:
    s.sendto(b'flow %d'%n,(host,port)); n+=1
    time.sleep(0.02)
    while True:
        try: s.recv(100); back+=1
        except BlockingIOError: break
print('sent %d echoed %d'%(n,back),flush=True)";

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// A `masq_...` value from a box's /metrics.
fn metric(lab: &Lab, host: &str, name: &str) -> Option<f64> {
    let m = lab.run(host, &["curl", "-s", "-m", "2", "http://127.0.0.1:9091/metrics"]);
    let text = String::from_utf8_lossy(&m.stdout).into_owned();
    text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

/// (arrival time, source "ip:port", payload) of every datagram the server logged.
fn arrivals(log: &str) -> Vec<(f64, String, String)> {
    log.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ' ');
            Some((it.next()?.parse().ok()?, it.next()?.to_string(), it.next()?.to_string()))
        })
        .collect()
}

/// The blocks `masq` logged for a subscriber: (first, last) ports.
fn blocks_of(log: &str, subscriber: &str) -> Vec<(u16, u16)> {
    let needle = format!("block assigned {subscriber} -> 203.0.113.10 ports ");
    log.lines()
        .filter_map(|l| l.split(&needle).nth(1))
        .filter_map(|r| {
            let (a, b) = r.trim().split_once('-')?;
            Some((a.parse().ok()?, b.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?))
        })
        .collect()
}

#[test]
fn the_standby_takes_over_with_every_address_and_port_when_the_active_masq_is_killed() {
    failover(true);
}

/// Port blocks only (`sync_sessions: false`): the subscriber keeps its
/// address and blocks; a flow whose session was not synced is mapped
/// again, on a port of its blocks (with `random_ports`, most likely
/// another one), and TCP connections break (the server sees another port).
#[test]
fn with_blocks_only_the_subscriber_keeps_its_address_and_blocks() {
    failover(false);
}

fn failover(sync_sessions: bool) {
    let mut lab = Lab::up_ha(if sync_sessions { "ha" } else { "hablk" });
    let dir = lab.dir.display().to_string();
    std::fs::write(lab.dir.join("token"), TOKEN).unwrap();
    std::fs::write(lab.dir.join("ha.key"), KEY).unwrap();
    std::fs::write(lab.dir.join("a.yaml"), config(&dir, 1, "198.18.255.1", "198.18.255.2", sync_sessions)).unwrap();
    std::fs::write(lab.dir.join("b.yaml"), config(&dir, 0, "198.18.255.2", "198.18.255.1", sync_sessions)).unwrap();
    std::fs::write(lab.dir.join("ka-a.conf"), keepalived_conf(&dir, "100.64.0.251", "100.64.0.252", 150)).unwrap();
    std::fs::write(lab.dir.join("ka-b.conf"), keepalived_conf(&dir, "100.64.0.252", "100.64.0.251", 100)).unwrap();
    // A 24 MB file the subscriber downloads at 2 MiB/s across the failover
    // (about 12 s; curl gives up after 25 s).
    let blob: Vec<u8> = (0..24_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(lab.dir.join("blob"), &blob).unwrap();

    // Box A (nat) and box B (nat2), both standbys until keepalived speaks.
    let a_yaml = format!("{dir}/a.yaml");
    lab.start_masq_with(&["run", "--config", &a_yaml]);
    let b_yaml = format!("{dir}/b.yaml");
    lab.spawn("nat2", &[env!("CARGO_BIN_EXE_masq"), "run", "--config", &b_yaml], "masq-b.log");
    assert!(
        lab.wait_for(Duration::from_secs(10), || lab.read("masq-b.log").contains("forwarding")),
        "box B's masq did not start:\n{}",
        lab.read("masq-b.log")
    );
    let keepalived = |lab: &mut Lab, host: &str, name: &str| {
        let conf = format!("{dir}/ka-{name}.conf");
        let pids: Vec<String> = ["pid", "vrrp", "chk"].iter().map(|p| format!("{dir}/ka-{name}-{p}.pid")).collect();
        lab.spawn(
            host,
            &["keepalived", "-n", "-l", "-D", "-P", "-f", &conf, "-p", &pids[0], "-r", &pids[1], "-c", &pids[2]],
            &format!("keepalived-{name}.log"),
        );
    };
    // A first (it becomes master alone), then B (it stays backup: nopreempt).
    keepalived(&mut lab, "nat", "a");
    assert!(
        lab.wait_for(Duration::from_secs(15), || metric(&lab, "nat", "masq_ha_active") == Some(1.0)),
        "keepalived did not make box A active:\n{}\nmasq A:\n{}",
        lab.read("keepalived-a.log"),
        lab.masq_log()
    );
    keepalived(&mut lab, "nat2", "b");
    assert!(
        lab.wait_for(Duration::from_secs(15), || metric(&lab, "nat2", "masq_ha_resyncs_total").unwrap_or(0.0) >= 1.0),
        "box B did not follow box A:\n{}",
        lab.read("masq-b.log")
    );
    assert_eq!(metric(&lab, "nat2", "masq_ha_active"), Some(0.0), "box B stands by");

    // The server, a second subscriber first (it takes the address's first
    // block, so box B would give subscriber 1 another block on its own),
    // then subscriber 1's flow and download.
    lab.spawn("out", &["python3", "-c", STAMPING_ECHO, "198.51.100.1", "9000"], "server.log");
    http_server(&mut lab, "out", "198.51.100.1", "8080", "http.log");
    let first = lab.ok("in2", &["python3", "-c", UDP_CLIENT, "198.51.100.1", "9000", "1", "10"]);
    assert!(first.contains("echoed 1 of 1"), "{first}\n{}", lab.masq_log());
    lab.spawn("in", &["python3", "-c", UDP_FLOW, "198.51.100.1", "9000", "12"], "flow.log");
    // A small receive buffer: the server cannot have sent the whole file
    // into the client's socket before the kill (curl reads at its rate).
    lab.ok("in", &["sysctl", "-qw", "net.ipv4.tcp_rmem=4096 131072 262144"]);
    let curl_started = now();
    lab.spawn(
        "in",
        &[
            "curl",
            "-s",
            "--limit-rate",
            "2M",
            "-o",
            "/dev/null",
            "--max-time",
            "25",
            "-w",
            "%{size_download} %{http_code} %{time_total}\n",
            "http://198.51.100.1:8080/blob",
        ],
        "curl.log",
    );
    std::thread::sleep(Duration::from_secs(4));
    let blocks = blocks_of(&lab.masq_log(), "100.64.0.2");
    assert!(!blocks.is_empty(), "box A logged subscriber 1's block:\n{}", lab.masq_log());
    let synced = metric(&lab, "nat2", "masq_ha_records_total{direction=\"received\"}").unwrap_or(0.0);
    assert!(synced >= if sync_sessions { 3.0 } else { 2.0 }, "box B received the blocks (and sessions): {synced}");

    // The download's connection as the server sees it (its peer: the public endpoint).
    let tcp_peer = |lab: &Lab| {
        let ss = lab.ok("out", &["ss", "-tnH", "state", "established", "sport", "= :8080"]);
        ss.split_whitespace().last().unwrap_or("none").to_string()
    };
    let peer_before = tcp_peer(&lab);
    assert!(peer_before.starts_with("203.0.113.10:"), "the download is under way at the kill: {peer_before}");
    // SIGKILL box A's masq.
    let killed_at = now();
    lab.kill_masq();
    assert!(
        lab.wait_for(Duration::from_secs(10), || metric(&lab, "nat2", "masq_ha_active") == Some(1.0)),
        "box B was not promoted:\n{}\n{}",
        lab.read("keepalived-b.log"),
        lab.read("masq-b.log")
    );
    assert!(
        lab.wait_for(Duration::from_secs(15), || lab.read("flow.log").contains("sent")),
        "the UDP flow did not end"
    );

    let b_tcp = lab.ok("nat2", &[env!("CARGO_BIN_EXE_masq"), "sessions", "--protocol", "tcp"]);
    println!(
        "ha | download's connection at the server: {peer_before} before the kill, {} after; box B's TCP sessions: {}",
        tcp_peer(&lab),
        b_tcp.lines().filter(|l| l.starts_with("tcp")).collect::<Vec<_>>().join("; ")
    );

    if sync_sessions {
        let port = peer_before.rsplit(':').next().unwrap_or("?");
        assert!(b_tcp.contains(&format!("dport={port} ")), "box B carries the download on {peer_before}: {b_tcp}");
    }

    // The gateway address is the new master's own: its kernel answers a ping.
    let ping = lab.run("in", &["ping", "-c", "2", "-W", "1", "100.64.0.1"]);
    assert!(
        ping.status.success(),
        "ping of the gateway after the failover:\n{}",
        String::from_utf8_lossy(&ping.stdout)
    );

    // The role changes only with the token.
    let refused = lab.run(
        "nat2",
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "-d",
            "standby",
            "http://127.0.0.1:9091/role",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&refused.stdout), "401", "POST /role without the token");
    assert_eq!(metric(&lab, "nat2", "masq_ha_active"), Some(1.0), "still active");

    // The flow at the server: one public address and port, before and after.
    let server = lab.read("server.log");
    let flow: Vec<(f64, String, String)> =
        arrivals(&server).into_iter().filter(|(_, _, p)| p.starts_with("flow ")).collect();
    let sources: std::collections::BTreeSet<&str> = flow.iter().map(|(_, s, _)| s.as_str()).collect();
    let before = flow.iter().filter(|(t, _, _)| *t < killed_at).count();
    let after = flow.iter().filter(|(t, _, _)| *t > killed_at).count();
    let (gap, gap_at) =
        flow.windows(2).map(|w| (w[1].0 - w[0].0, w[0].0)).fold((0.0, 0.0), |m, x| if x.0 > m.0 { x } else { m });
    let mode = if sync_sessions { "blocks and sessions" } else { "blocks only" };
    println!(
        "ha | {mode} | UDP flow: {} datagrams before the kill, {} after, all from {:?}; failover gap {:.3} s (last via box A at +{:.3} s after the kill, first via box B {:.3} s later)",
        before,
        after,
        sources,
        gap,
        gap_at - killed_at,
        gap
    );
    println!("ha | {}", lab.read("flow.log").trim());
    assert!(before > 50 && after > 50, "the flow ran through both boxes: {before} before, {after} after");
    assert!(sources.iter().all(|s| s.starts_with("203.0.113.10:")), "one public address: {sources:?}");
    if sync_sessions {
        assert_eq!(sources.len(), 1, "one public address and port for the flow: {sources:?}");
    }
    for s in &sources {
        let port: u16 = s.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
        assert!(blocks.iter().any(|&(a, b)| (a..=b).contains(&port)), "flow port {port} within {blocks:?}");
    }
    assert!(gap > 0.1, "a failover happened (gap {gap:.3} s)");
    assert!(gap < 3.0, "failover gap {gap:.3} s: under 3 s");

    // A new flow of subscriber 1: its address, a port of its synced blocks.
    let again = lab.ok("in", &["python3", "-c", UDP_CLIENT, "198.51.100.1", "9000", "1", "10"]);
    assert!(again.contains("echoed 1 of 1"), "{again}\n{}", lab.read("masq-b.log"));
    let last = arrivals(&lab.read("server.log")).into_iter().last().unwrap();
    let (ip, port) = last.1.split_once(':').unwrap();
    let port: u16 = port.parse().unwrap();
    println!("ha | new flow after the failover from {}:{port}; subscriber 1's blocks {blocks:?}", ip);
    assert_eq!(ip, "203.0.113.10");
    assert!(blocks.iter().any(|&(a, b)| (a..=b).contains(&port)), "port {port} within {blocks:?}");

    // The download (its TCP session was synced) completes whole.
    assert!(
        lab.wait_for(Duration::from_secs(30), || !lab.read("curl.log").is_empty()),
        "the download did not end:\n{}",
        lab.read("masq-b.log")
    );
    let curl = lab.read("curl.log");
    let fields: Vec<&str> = curl.split_whitespace().collect();
    let took: f64 = fields.get(2).and_then(|t| t.parse().ok()).unwrap_or(0.0);
    println!(
        "ha | {mode} | TCP download across the failover: {} of {} bytes, status {}, ended {:.1} s after the kill",
        fields.first().unwrap_or(&"?"),
        blob.len(),
        fields.get(1).unwrap_or(&"?"),
        curl_started + took - killed_at
    );
    assert!(curl_started + took > killed_at + 1.0, "the download spans the failover: {curl}");
    if sync_sessions {
        let whole = blob.len().to_string();
        assert_eq!(fields.get(..2), Some(&[whole.as_str(), "200"][..]), "the download completes: {curl}");
    }

    // The HA families pass promtool's lint as the others do.
    let metrics = lab.ok("nat2", &["curl", "-s", "-m", "2", "http://127.0.0.1:9091/metrics"]);
    assert!(metrics.contains("masq_ha_connected"), "{metrics}");
    let lint = lab.run("nat2", &["sh", "-c", "curl -s -m 2 http://127.0.0.1:9091/metrics | promtool check metrics"]);
    let said = format!("{}{}", String::from_utf8_lossy(&lint.stdout), String::from_utf8_lossy(&lint.stderr));
    assert!(lint.status.success() && said.trim().is_empty(), "promtool check metrics: {said}");

    // What the sync cost, as box B received it.
    let m = |n: &str| metric(&lab, "nat2", n).unwrap_or(0.0);
    println!(
        "ha | sync received by box B: {} messages, {} bytes, {} records (blocks and sessions), {} resync(s)",
        m("masq_ha_messages_total{direction=\"received\"}"),
        m("masq_ha_bytes_total{direction=\"received\"}"),
        m("masq_ha_records_total{direction=\"received\"}"),
        m("masq_ha_resyncs_total")
    );
}
