//! masq runs as an unprivileged user with exactly the capabilities the
//! systemd unit (deploy/systemd/masq.service, `AmbientCapabilities=`)
//! grants, not as root: the lab (root; CI is root) starts it with
//! `setpriv` as user and group `nobody`, those capabilities ambient (so the
//! `ip` and `nft` masq runs get them too) and nothing else, and traffic goes
//! through.

mod lab;

use lab::{Lab, UDP_CLIENT, UDP_ECHO};
use std::time::Duration;

/// The lab's SNAT.
fn config() -> String {
    lab::snat_config("", "")
}

/// The unit's `AmbientCapabilities=` set, as setpriv writes it (`+net_admin,+bpf,...`).
fn unit_capabilities() -> String {
    let unit = std::fs::read_to_string(lab::repo().join("deploy/systemd/masq.service")).expect("the unit");
    let caps: Vec<String> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("AmbientCapabilities="))
        .flat_map(str::split_whitespace)
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_ascii_lowercase()))
        .collect();
    assert!(!caps.is_empty(), "the unit grants no capabilities");
    let line = |key: &str| unit.lines().find_map(|l| l.strip_prefix(key)).map(str::to_string);
    assert_eq!(line("CapabilityBoundingSet="), line("AmbientCapabilities="), "the unit bounds what it grants");
    assert!(line("User=").is_some_and(|u| u != "root"), "the unit runs masq as a user of its own");
    caps.join(",")
}

#[test]
fn masq_forwards_as_nobody_with_only_the_units_capabilities() {
    let mut lab = Lab::up("caps", 1500);
    let cfg = lab.dir.join("masq.yaml");
    std::fs::write(&cfg, config()).expect("config file");
    let caps = unit_capabilities();
    let masq = env!("CARGO_BIN_EXE_masq");
    let args = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        &format!("--inh-caps=-all,{caps}"),
        &format!("--ambient-caps=-all,{caps}"),
        &format!("--bounding-set=-all,{caps}"),
        masq,
        "run",
        "--config",
        cfg.to_str().expect("utf-8 path"),
    ];
    lab.spawn("nat", &args, "masq-nobody.log");
    let up = lab.wait_for(Duration::from_secs(10), || lab.read("masq-nobody.log").contains("forwarding"));
    assert!(up, "masq did not start as nobody with {caps}:\n{}", lab.read("masq-nobody.log"));
    // It is nobody, and has no capability beyond the unit's.
    let pid = lab.ok("nat", &["pgrep", "-n", "-u", "65534", "-f", &format!("{masq} run --config")]).trim().to_string();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("masq's status");
    assert!(
        status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().all(|w| w == "Uid:" || w == "65534")),
        "{status}"
    );
    let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).map(str::trim).unwrap_or_default().to_string();
    let decoded = lab.ok("nat", &["capsh", &format!("--decode={eff}")]);
    let want: Vec<String> = caps.split(',').map(|c| format!("cap_{}", c.trim_start_matches('+'))).collect();
    let mut have: Vec<String> =
        decoded.trim().split_once('=').map(|(_, c)| c).unwrap_or_default().split(',').map(str::to_string).collect();
    have.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(have, want_sorted, "masq's effective capabilities");

    lab.spawn("out", &["python3", "-c", UDP_ECHO, "198.51.100.1", "5353"], "echo.log");
    std::thread::sleep(Duration::from_millis(300));
    let out = lab.ok("in", &["python3", "-c", UDP_CLIENT, "198.51.100.1", "5353", "20", "200"]);
    assert!(out.contains("echoed 20 of 20"), "{out}\n{}", lab.read("masq-nobody.log"));
    assert!(lab.read("echo.log").contains("from 203.0.113.10:"), "not translated:\n{}", lab.read("echo.log"));
}
