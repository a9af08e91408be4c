//! A GRE tunnel through masq carries a real `ping` (issue 12; root, CI is
//! root). The lab's kernel has no GRE driver (`ip tunnel add ... mode gre`
//! fails: deploy's LAB-NOTES), so each end is a TUN device and a small
//! encapsulating process (control/tests/lab/gretun.py): the inside host's
//! kernel routes the ping into its TUN device, the process sends it as GRE
//! (IP protocol 47) to the outside host, masq translates it by address only
//! (`protocols: [other]`), the outside end answers masq's public address,
//! and the reply comes back through the tunnel. protocols.rs checks the
//! same path packet by packet with scapy; this one with real programs.

mod lab;

use lab::Lab;
use std::time::Duration;

#[test]
fn a_gre_tunnel_between_an_inside_and_an_outside_host_carries_ping_through_masq() {
    let mut lab = Lab::up("gretun", 1500);
    let cfg = lab::snat_config("      protocols: [tcp, udp, icmp, other]\n", "control:\n  listen: 127.0.0.1:9091\n");
    std::fs::write(lab.dir.join("masq.yaml"), cfg).expect("config file");
    let path = lab.dir.join("masq.yaml");
    lab.start_masq_with(&["run", "--config", path.to_str().expect("utf-8 path")]);

    let script = lab::repo().join("control/tests/lab/gretun.py");
    let script = script.to_str().expect("utf-8 path");
    lab.spawn("out", &["python3", script, "198.51.100.1", "learn", "10.9.0.2", "10.9.0.1"], "gre-out.log");
    lab.spawn("in", &["python3", script, "100.64.0.2", "198.51.100.1", "10.9.0.1", "10.9.0.2"], "gre-in.log");
    let up = lab.wait_for(Duration::from_secs(10), || {
        lab.read("gre-out.log").contains("up") && lab.read("gre-in.log").contains("up")
    });
    assert!(up, "tunnel ends:\n{}\n{}", lab.read("gre-out.log"), lab.read("gre-in.log"));

    let ping = lab.run("in", &["ping", "-c", "3", "-i", "0.3", "-W", "2", "10.9.0.2"]);
    let out = String::from_utf8_lossy(&ping.stdout).into_owned();
    assert!(
        ping.status.success() && out.contains("3 received"),
        "ping over GRE through masq:\n{out}\noutside end:\n{}\ninside end:\n{}\nmasq:\n{}",
        lab.read("gre-out.log"),
        lab.read("gre-in.log"),
        lab.masq_log()
    );
    // The outside end saw the tunnel come from the pool address only, and
    // the inside end from the outside host.
    let outside = lab.read("gre-out.log");
    assert!(outside.contains("from 203.0.113.10"), "{outside}");
    assert!(!outside.contains("from 100.64."), "an inside address left the box: {outside}");
    assert!(lab.read("gre-in.log").contains("from 198.51.100.1"), "{}", lab.read("gre-in.log"));
    // One GRE session, listed by protocol.
    let o = lab.run("nat", &[env!("CARGO_BIN_EXE_masq"), "sessions", "--protocol", "47"]);
    let listing = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        listing.lines().any(|l| l.starts_with("gre")
            && l.contains("src=100.64.0.2 dst=198.51.100.1")
            && l.contains("dst=203.0.113.10")),
        "{listing}"
    );
}
