//! deploy/pktgen/masq-pktgen.sh, checked through its `--dry-run` (the lab's
//! kernel has no pktgen module; no root needed): every write goes to
//! /proc/net/pktgen, each thread gets its own queue, CPU and slice of the
//! source addresses, the frame is 64 bytes on the wire, the rate is split,
//! and pktgen's walk over the parameters written (source address and
//! destination port one step each per packet; src_max inclusive,
//! udp_dst_max exclusive, as in the kernel's `mod_cur_headers`) covers the
//! whole CSIT grid of hosts x 63 ports.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::process::Command;

fn script(args: &[&str]) -> (i32, String, String) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/pktgen/masq-pktgen.sh");
    let o = Command::new("bash").arg(path).args(args).output().expect("bash");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The dry run's writes: (file under /proc/net/pktgen, value), in order.
fn writes(out: &str) -> Vec<(String, String)> {
    out.lines()
        .map(|l| {
            let (f, v) = l.split_once(" <- ").unwrap_or_else(|| panic!("not a write: {l}"));
            let f = f.strip_prefix("/proc/net/pktgen/").unwrap_or_else(|| panic!("outside /proc/net/pktgen: {l}"));
            (f.to_string(), v.to_string())
        })
        .collect()
}

/// Each device's settings (`eth1@0` -> key -> value; flags gathered).
fn devices(w: &[(String, String)]) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut d: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (f, v) in w.iter().filter(|(f, _)| f.contains('@')) {
        let (k, val) = v.split_once(' ').unwrap_or((v, ""));
        let e = d.entry(f.clone()).or_default();
        if k == "flag" {
            e.entry("flags".into()).or_default().push_str(&format!("{val} "));
        } else {
            e.insert(k.to_string(), val.to_string());
        }
    }
    d
}

fn ip(s: &str) -> u32 {
    u32::from(s.parse::<Ipv4Addr>().unwrap_or_else(|e| panic!("{s}: {e}")))
}

fn num(dev: &BTreeMap<String, String>, k: &str) -> u64 {
    dev.get(k).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{k} missing in {dev:?}"))
}

#[test]
fn the_csit_grid_on_four_queues_writes_what_pktgen_needs() {
    let (rc, out, err) = script(&[
        "--dev",
        "eth1",
        "--dst-mac",
        "52:54:00:aa:bb:cc",
        "--threads",
        "4",
        "--cpu-base",
        "2",
        "--hosts",
        "65536",
        "--rate",
        "8000000",
        "--count",
        "1000000",
        "--dry-run",
    ]);
    assert_eq!(rc, 0, "{err}");
    let w = writes(&out);
    assert_eq!(w.first(), Some(&("pgctrl".into(), "reset".into())), "{out}");
    assert_eq!(w.last(), Some(&("pgctrl".into(), "start".into())), "{out}");
    for i in 0..4 {
        let t = format!("kpktgend_{}", 2 + i);
        assert!(w.contains(&(t.clone(), format!("add_device eth1@{i}"))), "{t} does not get queue {i}:\n{out}");
    }
    let devs = devices(&w);
    assert_eq!(devs.len(), 4, "{out}");
    let mut next_src = ip("100.64.0.0");
    let mut total_rate = 0;
    for (i, (name, d)) in devs.iter().enumerate() {
        assert_eq!(name, &format!("eth1@{i}"));
        assert_eq!(num(d, "pkt_size"), 60, "64 bytes on the wire are 60 without the FCS");
        assert_eq!(num(d, "clone_skb"), 0, "a cloned skb would repeat one flow");
        assert_eq!(num(d, "count"), 1_000_000);
        assert_eq!((num(d, "queue_map_min"), num(d, "queue_map_max")), (i as u64, i as u64));
        assert_eq!(d.get("dst_mac").map(String::as_str), Some("52:54:00:aa:bb:cc"));
        // Consecutive, disjoint slices of 16384 addresses.
        let (lo, hi) = (ip(&d["src_min"]), ip(&d["src_max"]));
        assert_eq!((lo, hi), (next_src, next_src + 16383), "{name}: {d:?}");
        next_src = hi + 1;
        assert_eq!(d["dst_min"], "198.51.100.1");
        assert_eq!(d["dst_max"], "198.51.100.1");
        assert_eq!((num(d, "udp_src_min"), num(d, "udp_src_max")), (1024, 1024));
        // 63 destination ports: 1024..=1086, udp_dst_max exclusive.
        assert_eq!((num(d, "udp_dst_min"), num(d, "udp_dst_max")), (1024, 1087));
        assert_eq!(num(d, "flows"), 65536, "16384 x 63 flows, clamped to pktgen's MAX_CFLOWS");
        assert_eq!(num(d, "flowlen"), 1);
        assert!(d["flags"].contains("FLOW_SEQ"), "{d:?}");
        total_rate += num(d, "ratep");
    }
    assert_eq!(next_src, ip("100.65.0.0"), "65536 hosts from 100.64.0.0");
    assert_eq!(total_rate, 8_000_000, "the threads' rates add up to --rate");
}

#[test]
fn pktgens_walk_over_the_written_ranges_covers_every_host_and_port() {
    let (rc, out, err) =
        script(&["--dev", "eth1", "--dst-mac", "52:54:00:aa:bb:cc", "--threads", "2", "--hosts", "32", "--dry-run"]);
    assert_eq!(rc, 0, "{err}");
    let mut seen = HashSet::new();
    for d in devices(&writes(&out)).values() {
        let (smin, smax) = (ip(&d["src_min"]), ip(&d["src_max"]));
        let (pmin, pmax) = (num(d, "udp_dst_min"), num(d, "udp_dst_max"));
        // The kernel's mod_cur_headers, before each packet: the source
        // address steps and wraps after src_max, the port wraps at udp_dst_max.
        let (mut s, mut p) = (smin, pmin);
        let flows = u64::from(smax - smin + 1) * (pmax - pmin);
        for _ in 0..flows {
            s = if s + 1 > smax { smin } else { s + 1 };
            p = if p + 1 >= pmax { pmin } else { p + 1 };
            seen.insert((s, p));
        }
    }
    assert_eq!(seen.len(), 32 * 63, "the walk misses part of the grid");
    assert!(seen.iter().all(|&(s, p)| (ip("100.64.0.0")..ip("100.64.0.32")).contains(&s) && (1024..1087).contains(&p)));
}

#[test]
fn it_refuses_what_would_not_walk_the_grid_or_not_run() {
    let base = ["--dev", "eth1", "--dst-mac", "52:54:00:aa:bb:cc", "--dry-run"];
    for (extra, says) in [
        (&["--hosts", "1023"][..], "share a factor"), // 1023 = 3 x 11 x 31: a third of the grid
        (&["--hosts", "1000", "--threads", "3"][..], "divide"),
        (&["--size", "60"][..], "64..1518"),
        (&["--src", "100.64.0.256"][..], "bad address"),
        (&["--rate", "fast"][..], "must be a number"),
    ] {
        let mut args = base.to_vec();
        args.extend(extra);
        let (rc, out, err) = script(&args);
        assert!(rc == 2 && out.is_empty() && err.contains(says), "{extra:?}: rc {rc}, {out}{err}");
    }
    let (rc, _, err) = script(&["--dev", "eth1", "--dry-run"]);
    assert!(rc == 2 && err.contains("--dst-mac"), "{err}");
}
