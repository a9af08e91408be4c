//! NAT event export end to end (root; CI is root): masq runs with a
//! JSON-lines sink and syslog sinks over UDP and TCP to a real rsyslogd
//! (Debian's, started by the test in the box's namespace with its own
//! configuration, writing what it receives in RFC 5424 form), and IPFIX
//! to nfdump's nfcapd; a flow goes
//! through; its port block's allocation arrives in all four with the
//! right addresses and ports; the block is released; `masq whois` answers
//! for the port the flow used at the time it used it, and "nobody" now;
//! a SIGHUP that moves the JSON sink to another file moves the next events;
//! the TCP collector restarts and loses none of the events made meanwhile.
//! With pools too small for three subscribers, a session quota, a pool
//! without a free block and a full subscriber table refuse one each; the
//! three refusals reach the JSON file, rsyslog (UDP and TCP) and nfcapd,
//! and tshark's IPFIX dissector, on a capture of the same export, decodes
//! what nfdump does not (portRangeStart/End, natQuotaExceededEvent).

mod lab;

use lab::{Lab, UDP_ECHO};
use std::time::Duration;

/// The lab's SNAT, and the control API with a token.
fn config() -> String {
    lab::snat_config("", "control:\n  listen: 127.0.0.1:9091\n  token: s3cret\n")
}

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

fn now_ms() -> u64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
    u64::try_from(d.as_millis()).expect("ms fit")
}

/// The value of `key="..."` in an RFC 5424 structured-data element.
fn sd<'a>(line: &'a str, key: &str) -> &'a str {
    let pat = format!(" {key}=\"");
    let from = line.find(&pat).unwrap_or_else(|| panic!("no {key} in {line}")) + pat.len();
    line[from..].split('"').next().unwrap_or_default()
}

/// Starts Debian's rsyslogd in the box's namespace with the test's own
/// configuration: RFC 5424 over UDP on 127.0.0.1:5514 into `udp.log`, over
/// TCP (octet counting) on 5515 into `tcp.log`, both written in RFC 5424
/// form. Returns its configuration and pid file (to restart it).
fn rsyslog(lab: &mut Lab) -> (String, String) {
    let d = lab.dir.display().to_string();
    std::fs::write(
        lab.dir.join("rsyslog.conf"),
        format!(
            "global(workDirectory=\"{d}\")
module(load=\"imudp\")
module(load=\"imtcp\")
input(type=\"imudp\" address=\"127.0.0.1\" port=\"5514\" ruleset=\"udp\")
input(type=\"imtcp\" address=\"127.0.0.1\" port=\"5515\" ruleset=\"tcp\")
ruleset(name=\"udp\") {{ action(type=\"omfile\" file=\"{d}/udp.log\" template=\"RSYSLOG_SyslogProtocol23Format\") }}
ruleset(name=\"tcp\") {{ action(type=\"omfile\" file=\"{d}/tcp.log\" template=\"RSYSLOG_SyslogProtocol23Format\") }}
"
        ),
    )
    .expect("rsyslog.conf");
    lab.ok("nat", &["ip", "link", "set", "lo", "up"]);
    let conf = format!("{d}/rsyslog.conf");
    let pid_file = format!("{d}/rsyslog.pid");
    lab.spawn("nat", &["/usr/sbin/rsyslogd", "-n", "-f", &conf, "-i", &pid_file], "rsyslog.out");
    (conf, pid_file)
}

/// Starts nfdump's collector in the box's namespace, IPFIX on
/// 127.0.0.1:4739, writing into the lab's `nfcapd` directory (returned).
fn nfcapd(lab: &mut Lab) -> String {
    let d = lab.dir.display().to_string();
    lab.ok("nat", &["ip", "link", "set", "lo", "up"]);
    std::fs::create_dir_all(lab.dir.join("nfcapd")).expect("nfcapd's directory");
    let nfdir = format!("{d}/nfcapd");
    let nfpid = format!("{d}/nfcapd.pid");
    lab.spawn(
        "nat",
        &["nfcapd", "-p", "4739", "-b", "127.0.0.1", "-w", &nfdir, "-P", &nfpid, "-t", "60"],
        "nfcapd.out",
    );
    nfdir
}

/// Stops nfcapd (it writes its file when stopped) and returns what
/// `nfdump -o raw` decodes of everything it wrote. With `-t 60` nfcapd
/// also rotates at every minute boundary, so the events may be in either
/// of two files: the whole directory is read once nfcapd has exited.
fn nfdump_stopped(lab: &Lab, nfdir: &str) -> String {
    let pid = lab.read("nfcapd.pid");
    let pid = pid.trim();
    assert!(!pid.is_empty(), "nfcapd wrote no pid file: {}", lab.read("nfcapd.out"));
    lab.ok("nat", &["kill", "-TERM", pid]);
    // Gone, or a zombie of ours (the lab reaps its children at the end).
    let running = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| !r.trim_start().starts_with('Z')))
    };
    let gone = lab.wait_for(Duration::from_secs(5), || !running());
    assert!(gone, "nfcapd did not exit: {}", lab.read("nfcapd.out"));
    lab.ok("nat", &["nfdump", "-R", nfdir, "-o", "raw"])
}

/// The flow records of `nfdump -o raw` output.
fn records(raw: &str) -> Vec<&str> {
    raw.split("Flow Record:").skip(1).collect()
}

/// The value of field `k` (`nat event`, `src addr`, ...) of one nfdump raw record.
fn nf(r: &str, k: &str) -> Option<String> {
    r.lines().find(|l| l.trim_start().starts_with(k)).and_then(|l| l.split_once('=')).map(|(_, v)| v.trim().to_string())
}

#[test]
fn block_events_reach_a_json_file_and_rsyslog_and_whois_answers_from_the_file() {
    let mut lab = Lab::up("natlog", 1500);
    let dir = lab.dir.clone();
    let (conf, pid_file) = rsyslog(&mut lab);
    let nfdir = nfcapd(&mut lab);
    let json = dir.join("nat.jsonl");
    let cfg = format!(
        "{}logging:\n  sinks:\n    - {{kind: json, path: {}}}\n    - {{kind: syslog, transport: udp, address: \"127.0.0.1:5514\"}}\n    - {{kind: syslog, transport: tcp, address: \"127.0.0.1:5515\"}}\n    - {{kind: ipfix, address: \"127.0.0.1:4739\"}}\n",
        config(),
        json.display()
    );
    std::fs::write(dir.join("masq.yaml"), cfg).unwrap();
    let cfg = dir.join("masq.yaml");
    lab.start_masq_with(&["run", "--config", cfg.to_str().unwrap()]);
    lab.spawn("out", &["python3", "-c", UDP_ECHO, "198.51.100.1", "5353"], "echo.log");
    std::thread::sleep(Duration::from_millis(500));
    let before = now_ms();
    lab.ok("in", &["python3", "-c", UDP_ONCE, "198.51.100.1", "5353"]);
    let flow_at = now_ms();
    let flow_instant = std::time::Instant::now();
    // The public port the flow used, as the outside host saw it.
    let port = lab.seen_port("203.0.113.10");

    for f in ["nat.jsonl", "udp.log", "tcp.log"] {
        let arrived = lab.wait_for(Duration::from_secs(5), || lab.read(f).contains("block_allocated"));
        assert!(arrived, "{f}: {}\n{}", lab.read(f), lab.read("rsyslog.out"));
    }
    // JSON: one object, the right subscriber, address, a block holding the port, a time in the flow's window.
    let line = lab.read("nat.jsonl");
    let line = line.lines().find(|l| l.contains("block_allocated")).unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(
        (v["inside"].as_str(), v["public"].as_str(), v["pool"].as_str()),
        (Some("100.64.0.2"), Some("203.0.113.10"), Some("lab")),
        "{line}"
    );
    let (a, b) = (v["port_start"].as_u64().unwrap(), v["port_end"].as_u64().unwrap());
    assert!(a <= u64::from(port) && u64::from(port) <= b, "port {port} outside {line}");
    let t = v["time_ms"].as_u64().unwrap();
    assert!(before <= t && t <= flow_at + 1000, "time {t} not within {before}..{flow_at}: {line}");
    // Syslog: rsyslog parsed it as RFC 5424 (app masq, MSGID, our SD element), over UDP and TCP.
    for f in ["udp.log", "tcp.log"] {
        let log = lab.read(f);
        let l = log.lines().find(|l| l.contains("block_allocated")).unwrap();
        assert!(
            l.starts_with("<134>1 ") && l.contains(" masq ") && l.contains(" block_allocated [nat@32473 "),
            "{f}: {l}"
        );
        assert_eq!((sd(l, "inside"), sd(l, "public")), ("100.64.0.2", "203.0.113.10"), "{f}: {l}");
        assert_eq!(
            (sd(l, "portStart"), sd(l, "portEnd")),
            (a.to_string().as_str(), b.to_string().as_str()),
            "{f}: {l}"
        );
    }

    // The block goes back; the log says so.
    let o = masq(&lab, &["flush", "--subscriber", "100.64.0.2", "--token", "s3cret"]);
    assert!(o.status.success(), "{o:?}");
    assert!(
        lab.wait_for(Duration::from_secs(5), || lab.read("nat.jsonl").contains("block_released")),
        "{}",
        lab.read("nat.jsonl")
    );
    // whois: at the flow's time, the subscriber; now, nobody.
    let (p, at) = (port.to_string(), flow_at.to_string());
    let j = json.to_str().unwrap();
    let o = masq(&lab, &["whois", "203.0.113.10", &p, "--log", j, "--at", &at]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && text.contains(": 100.64.0.2 (block "), "{o:?}");
    let o = masq(&lab, &["whois", "203.0.113.10", &p, "--log", j, "--json"]);
    assert_eq!(o.status.code(), Some(1), "released: nobody holds it now: {o:?}");
    // IPFIX: nfdump decodes natEvent, the subscriber and the post-NAT
    // address (it shows no port range fields: tshark checks those in
    // the limits test below).
    let raw = nfdump_stopped(&lab, &nfdir);
    let recs = records(&raw);
    let alloc = recs
        .iter()
        .find(|r| nf(r, "nat event").is_some_and(|v| v.starts_with("14")))
        .unwrap_or_else(|| panic!("{raw}"));
    assert_eq!(nf(alloc, "src addr").as_deref(), Some("100.64.0.2"), "{raw}");
    assert_eq!(nf(alloc, "src xlt ip").as_deref(), Some("203.0.113.10"), "{raw}");
    assert!(nf(alloc, "Event time").is_some_and(|v| v.starts_with(&t.to_string())), "{raw}");
    assert!(recs.iter().any(|r| nf(r, "nat event").is_some_and(|v| v.starts_with("15"))), "release: {raw}");

    let m = lab.ok("nat", &["curl", "-sS", "http://127.0.0.1:9091/metrics"]);
    assert!(m.contains("masq_nat_log_sink_lost_total{sink=\"syslog-tcp:127.0.0.1:5515\"} 0"), "{m}");

    // Sinks change live: SIGHUP with the JSON sink moved to another file.
    let moved = std::fs::read_to_string(&cfg).unwrap().replace("nat.jsonl", "moved.jsonl");
    std::fs::write(&cfg, moved).unwrap();
    lab.signal_masq("HUP");
    let changed = lab.wait_for(Duration::from_secs(5), || lab.masq_log().contains("NAT log sinks now"));
    assert!(changed, "{}", lab.masq_log());
    lab.ok("in", &["python3", "-c", UDP_ONCE, "198.51.100.1", "5353"]);
    let arrived = lab.wait_for(Duration::from_secs(5), || lab.read("moved.jsonl").contains("block_allocated"));
    assert!(arrived, "{}\n{}", lab.read("moved.jsonl"), lab.masq_log());
    assert_eq!(lab.read("nat.jsonl").matches("block_allocated").count(), 1, "the old file gets no more");
    // Each configuration generation is an event, in the sinks in force after it.
    assert!(lab.read("nat.jsonl").contains("\"event\":\"config_applied\",\"nat_event\":0,\"generation\":1}"));
    assert!(lab.read("moved.jsonl").contains("\"event\":\"config_applied\",\"nat_event\":0,\"generation\":2}"));
    assert!(lab.read("udp.log").contains("config_applied [nat@32473 event=\"config_applied\" generation=\"2\"]"));

    // The TCP collector restarts: what happens while it is away arrives after it is back, none lost.
    let pid = lab.read("rsyslog.pid");
    lab.ok("nat", &["kill", "-TERM", pid.trim()]);
    let listening = || !lab.ok("nat", &["ss", "-ltnH", "sport = :5515"]).trim().is_empty();
    assert!(lab.wait_for(Duration::from_secs(5), || !listening()), "rsyslogd did not stop");
    let o = masq(&lab, &["flush", "--subscriber", "100.64.0.2", "--token", "s3cret"]);
    assert!(o.status.success(), "{o:?}");
    lab.ok("in", &["python3", "-c", UDP_ONCE, "198.51.100.1", "5353"]);
    let json_events = || lab.read("moved.jsonl").lines().filter(|l| l.contains("\"block_")).count();
    assert!(lab.wait_for(Duration::from_secs(5), || json_events() == 3), "{}", lab.read("moved.jsonl"));
    std::thread::sleep(Duration::from_millis(300));
    lab.spawn("nat", &["/usr/sbin/rsyslogd", "-n", "-f", &conf, "-i", &pid_file], "rsyslog2.out");
    let tcp_blocks = || lab.read("tcp.log").lines().filter(|l| l.contains(" block_")).count();
    let all = lab.wait_for(Duration::from_secs(10), || tcp_blocks() == 2 + 3);
    assert!(all, "tcp.log has {} block events of 5:\n{}", tcp_blocks(), lab.read("tcp.log"));

    // The abuse desk's question at least 10 seconds after the flow, in the
    // ADDRESS:PORT form: who held that public port at that time?
    std::thread::sleep(Duration::from_secs(10).saturating_sub(flow_instant.elapsed()));
    let o = masq(&lab, &["whois", &format!("203.0.113.10:{p}"), "--log", j, "--at", &at]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && text.contains(": 100.64.0.2 (block "), "{o:?}");
}

#[test]
fn a_sessions_pool_writes_session_created_and_flushed_without_the_destination() {
    let mut lab = Lab::up("natsess", 1500);
    let dir = lab.dir.clone();
    let json = dir.join("nat.jsonl");
    let cfg = format!(
        "{}logging:\n  sinks:\n    - {{kind: json, path: {}}}\n",
        config().replace("    addresses: [203.0.113.10]\n", "    addresses: [203.0.113.10]\n    logging: sessions\n"),
        json.display()
    );
    std::fs::write(dir.join("masq.yaml"), cfg).unwrap();
    let cfg = dir.join("masq.yaml");
    lab.start_masq_with(&["run", "--config", cfg.to_str().unwrap()]);
    lab.spawn("out", &["python3", "-c", UDP_ECHO, "198.51.100.1", "5353"], "echo.log");
    std::thread::sleep(Duration::from_millis(500));
    lab.ok("in", &["python3", "-c", UDP_ONCE, "198.51.100.1", "5353"]);
    let port = u64::from(lab.seen_port("203.0.113.10"));
    let o = masq(&lab, &["flush", "--subscriber", "100.64.0.2", "--token", "s3cret"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let arrived = lab.wait_for(Duration::from_secs(5), || lab.read("nat.jsonl").contains("session_deleted"));
    let log = lab.read("nat.jsonl");
    assert!(arrived, "{log}");
    for (event, nat_event, cause) in [("session_created", 1, "created"), ("session_deleted", 2, "flushed")] {
        let line = log.lines().find(|l| l.contains(event)).unwrap();
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            (v["inside"].as_str(), v["inside_port"].as_u64(), v["public"].as_str(), v["public_port"].as_u64()),
            (Some("100.64.0.2"), Some(44001), Some("203.0.113.10"), Some(port)),
            "{line}"
        );
        assert_eq!(
            (v["nat_event"].as_u64(), v["protocol"].as_u64(), v["cause"].as_str()),
            (Some(nat_event), Some(17), Some(cause)),
            "{line}"
        );
        assert!(v.get("destination").is_none() && !line.contains("198.51.100.1"), "no destination (REQ-12): {line}");
    }
}

/// Sends one UDP datagram from `SRC` (empty: the host's address) and each
/// source port given to `HOST PORT`; prints `ok PORT` when its echo comes
/// back, `timeout PORT` when it does not (a refused flow).
const FROM_PORTS: &str = "import socket,sys
src,host,port=sys.argv[1],sys.argv[2],int(sys.argv[3])
for p in sys.argv[4:]:
    s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind((src,int(p))); s.settimeout(2)
    s.sendto(b'hi',(host,port))
    try:
        s.recvfrom(100); print('ok',p)
    except socket.timeout: print('timeout',p)";

/// Pools so small that three subscribers hit three limits: `lab` has one
/// block of 64 ports (1024-1087) and a quota of two sessions a subscriber;
/// `spare` (100.64.0.4 only) has free ports, but the subscriber table has
/// one slot. One worker: a single block cannot be shared between two.
fn limits_config(sinks: &str) -> String {
    let spare = "  - action: snat\n    pool: spare\n    match:\n      src: [100.64.0.4/32]\n";
    let rest = format!("{spare}tables:\n  max_subscribers: 1\nlogging:\n  sinks:\n{sinks}");
    lab::snat_config("      src_except: [100.64.0.4/32]\n", &rest)
        .replace(
            "    addresses: [203.0.113.10]\n",
            "    addresses: [203.0.113.10]
    ports: 1024-1087
    block_size: 64
    max_blocks_per_subscriber: 1
    max_sessions_per_subscriber: 2
  - name: spare
    addresses: [203.0.113.11]
    ports: 1024-1087
    block_size: 64
",
        )
        .replace("cores: [0, 1]", "cores: [1]")
}

#[test]
fn quota_and_exhaustion_events_reach_nfcapd_rsyslog_and_decode_in_tshark() {
    let mut lab = Lab::up_with("natlim", 1500, 1);
    let dir = lab.dir.clone();
    rsyslog(&mut lab);
    let nfdir = nfcapd(&mut lab);
    // What masq exports, as it crosses the box's loopback, for tshark.
    let tcpdump =
        lab.spawn("nat", &["tcpdump", "-i", "lo", "-U", "-w", "ipfix.pcap", "udp", "port", "4739"], "tcpdump.out");
    assert!(
        lab.wait_for(Duration::from_secs(5), || lab.read("tcpdump.out").contains("listening on")),
        "{}",
        lab.read("tcpdump.out")
    );
    let json = dir.join("nat.jsonl");
    let sinks = format!(
        "    - {{kind: json, path: {}}}\n    - {{kind: syslog, transport: udp, address: \"127.0.0.1:5514\"}}\n    - {{kind: syslog, transport: tcp, address: \"127.0.0.1:5515\"}}\n    - {{kind: ipfix, address: \"127.0.0.1:4739\"}}\n",
        json.display()
    );
    let cfg = dir.join("masq.yaml");
    std::fs::write(&cfg, limits_config(&sinks)).unwrap();
    lab.start_masq_with(&["run", "--config", cfg.to_str().unwrap()]);
    lab.spawn("out", &["python3", "-c", UDP_ECHO, "198.51.100.1", "5353"], "echo.log");
    std::thread::sleep(Duration::from_millis(500));

    // 100.64.0.2: two sessions, then its quota refuses the third.
    let a = lab.ok("in", &["python3", "-c", FROM_PORTS, "", "198.51.100.1", "5353", "44001", "44002", "44003"]);
    assert_eq!(a, "ok 44001\nok 44002\ntimeout 44003\n");
    // 100.64.0.3: the pool's one block is 100.64.0.2's.
    let b = lab.ok("in2", &["python3", "-c", FROM_PORTS, "", "198.51.100.1", "5353", "44001"]);
    assert_eq!(b, "timeout 44001\n");
    // 100.64.0.4 (into `spare`): free ports, but no subscriber slot.
    lab.ok("in2", &["ip", "addr", "add", "100.64.0.4/24", "dev", "in2"]);
    let c = lab.ok("in2", &["python3", "-c", FROM_PORTS, "100.64.0.4", "198.51.100.1", "5353", "44001"]);
    assert_eq!(c, "timeout 44001\n");

    let refusals = ["quota_exceeded", "ports_exhausted", "addresses_exhausted"];
    let all_in = |f: &str| {
        let t = lab.read(f);
        refusals.iter().all(|e| t.contains(e)) && t.contains("block_allocated")
    };
    for f in ["nat.jsonl", "udp.log", "tcp.log"] {
        assert!(lab.wait_for(Duration::from_secs(5), || all_in(f)), "{f}: {}\n{}", lab.read(f), lab.masq_log());
    }
    let jsonl = lab.read("nat.jsonl");
    let event = |name: &str| -> serde_json::Value {
        let l = jsonl.lines().find(|l| l.contains(&format!("\"event\":\"{name}\""))).unwrap();
        serde_json::from_str(l).unwrap()
    };
    let block = event("block_allocated");
    assert_eq!(
        (block["inside"].as_str(), block["public"].as_str(), block["port_start"].as_u64(), block["port_end"].as_u64()),
        (Some("100.64.0.2"), Some("203.0.113.10"), Some(1024), Some(1087)),
        "{jsonl}"
    );
    // (event, natEvent, subscriber, paired address, reason, pool)
    let want = [
        ("quota_exceeded", 11, "100.64.0.2", Some("203.0.113.10"), "subscriber_session_limit", "lab"),
        ("ports_exhausted", 10, "100.64.0.3", None, "ports_exhausted", "lab"),
        ("addresses_exhausted", 3, "100.64.0.4", None, "subscriber_table_full", "spare"),
    ];
    for (name, nat_event, inside, public, reason, pool) in want {
        let v = event(name);
        assert_eq!(
            (
                v["nat_event"].as_u64(),
                v["inside"].as_str(),
                v["public"].as_str(),
                v["reason"].as_str(),
                v["pool"].as_str()
            ),
            (Some(nat_event), Some(inside), public, Some(reason), Some(pool)),
            "{name}: {jsonl}"
        );
    }
    // rsyslog parsed each as RFC 5424, over UDP and TCP.
    for f in ["udp.log", "tcp.log"] {
        let log = lab.read(f);
        for (name, nat_event, inside, public, reason, pool) in want {
            let l = log
                .lines()
                .find(|l| l.contains(&format!(" {name} [nat@32473 ")))
                .unwrap_or_else(|| panic!("{f}: {log}"));
            assert!(l.starts_with("<134>1 ") && l.contains(" masq "), "{f}: {l}");
            assert_eq!(
                (sd(l, "natEvent"), sd(l, "inside"), sd(l, "reason"), sd(l, "pool")),
                (nat_event.to_string().as_str(), inside, reason, pool),
                "{f}: {l}"
            );
            assert_eq!(l.contains(" public=\""), public.is_some(), "{f}: {l}");
        }
    }

    // IPFIX in nfdump: natEvent, subscriber, post-NAT address and time of each.
    let raw = nfdump_stopped(&lab, &nfdir);
    let recs = records(&raw);
    let ipfix = [
        ("block_allocated", "14", "100.64.0.2", "203.0.113.10"),
        ("quota_exceeded", "11", "100.64.0.2", "203.0.113.10"),
        ("ports_exhausted", "10", "100.64.0.3", "0.0.0.0"),
        ("addresses_exhausted", "3", "100.64.0.4", "0.0.0.0"),
    ];
    for (name, nat_event, inside, public) in ipfix {
        let r = recs
            .iter()
            .find(|r| nf(r, "nat event").is_some_and(|v| v.split(':').next() == Some(nat_event)))
            .unwrap_or_else(|| panic!("no natEvent {nat_event}: {raw}"));
        assert_eq!((nf(r, "src addr").as_deref(), nf(r, "src xlt ip").as_deref()), (Some(inside), Some(public)), "{r}");
        let t = event(name)["time_ms"].as_u64().unwrap().to_string();
        assert!(nf(r, "Event time").is_some_and(|v| v.starts_with(&t)), "{name} at {t}: {r}");
    }

    // What nfdump does not decode (portRangeStart/End, natQuotaExceededEvent):
    // tshark's IPFIX dissector on a capture of the same export.
    lab.ok("nat", &["kill", "-INT", &tcpdump.to_string()]);
    let pcap = dir.join("ipfix.pcap");
    let stopped = lab.wait_for(Duration::from_secs(5), || lab.read("tcpdump.out").contains("packets captured"));
    assert!(stopped, "{}", lab.read("tcpdump.out"));
    let o = lab.ok("nat", &["tshark", "-r", pcap.to_str().unwrap(), "-d", "udp.port==4739,cflow", "-T", "json"]);
    let v: serde_json::Value = serde_json::from_str(&o).unwrap_or_else(|e| panic!("{e}: {o}"));
    let mut flows = Vec::new();
    ipfix_records(&v, &mut flows);
    let flow = |nat_event: &str| {
        flows
            .iter()
            .find(|f| f["cflow.nat_event"] == nat_event)
            .unwrap_or_else(|| panic!("no natEvent {nat_event} in {flows:?}"))
    };
    let b = flow("14");
    assert_eq!(
        (&b["cflow.srcaddr"], &b["cflow.port_range_start"], &b["cflow.port_range_end"]),
        (
            &block["inside"],
            &serde_json::json!(block["port_start"].to_string()),
            &serde_json::json!(block["port_end"].to_string())
        ),
        "the block's range as the JSON sink has it: {b}"
    );
    // (natEvent, subscriber, post-NAT address, natQuotaExceededEvent: 3 per subscriber, 4 subscribers, 0 none)
    for (nat_event, inside, public, quota) in [
        ("11", "100.64.0.2", "203.0.113.10", "3"),
        ("10", "100.64.0.3", "0.0.0.0", "0"),
        ("3", "100.64.0.4", "0.0.0.0", "4"),
    ] {
        let f = flow(nat_event);
        assert_eq!(
            (&f["cflow.srcaddr"], &f["cflow.post_natsource_ipv4_address"], &f["cflow.nat_quota_exceeded_event"]),
            (&serde_json::json!(inside), &serde_json::json!(public), &serde_json::json!(quota)),
            "{f}"
        );
    }
    // Every record's millisecond time is the JSON sink's (tshark prints it in UTC).
    for (name, nat_event, _, _) in ipfix {
        let at = event(name)["time"].as_str().unwrap().get(11..23).unwrap().to_string();
        let t = flow(nat_event)["cflow.observation_time_milliseconds"].as_str().unwrap_or_default().to_string();
        assert!(t.contains(&format!(" {at}")), "{name}: {t} is not {at}");
    }
}

/// The IPFIX data records anywhere in tshark's `-T json` output: the
/// objects with a `cflow.nat_event` field.
fn ipfix_records(v: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
    match v {
        serde_json::Value::Object(m) if m.contains_key("cflow.nat_event") => out.push(v.clone()),
        serde_json::Value::Object(m) => m.values().for_each(|x| ipfix_records(x, out)),
        serde_json::Value::Array(a) => a.iter().for_each(|x| ipfix_records(x, out)),
        _ => {}
    }
}
