//! Fragments in any order, end to end (issue 12, RFC 4787 REQ-14): a UDP
//! datagram whose fragments reach masq last first (scapy sends them so)
//! crosses it whole, from inside to a real echo server outside, and from
//! outside back to the inside host on the session it made. The hosts'
//! kernels reassemble: a datagram arrives only if every fragment did.
//! Needs root, like every lab test; `MASQ_LAB_WORKERS=2` runs it with two
//! workers (test.sh does).

mod lab;

use lab::{total, Lab, UDP_ECHO};
use std::time::Duration;

#[test]
fn a_udp_datagram_sent_last_fragment_first_crosses_whole_both_ways() {
    let mut lab = Lab::up("fragoo", 1500);
    lab.spawn("out", &["python3", "-c", UDP_ECHO, "198.51.100.1", "5353"], "echo.log");
    lab.start_masq(&["--pool", "203.0.113.10", "--nat-src", "100.64.0.0/10", "--cores", "1"]);
    std::thread::sleep(Duration::from_millis(300));
    let script = lab::repo().join("control/tests/lab/frag_out_of_order.py");
    let script = script.to_str().unwrap();
    // Debian's python, which has python3-scapy (deploy/setup.sh).
    // Senders pinned to one CPU: with two queues (veth queues by the
    // sending CPU) the fragments still reach masq in the order sent.
    lab.spawn(
        "in",
        &["taskset", "-c", "1", "/usr/bin/python3", script, "echo", "198.51.100.1", "5353", "6000", "3000"],
        "inside.log",
    );
    assert!(
        lab.wait_for(Duration::from_secs(10), || lab.read("inside.log").contains("echo")),
        "no echo of the out-of-order request: {}\nechoes: {}\nmasq:\n{}",
        lab.read("inside.log"),
        lab.read("echo.log"),
        lab.masq_log()
    );
    assert!(lab.read("inside.log").contains("echo intact"), "{}", lab.read("inside.log"));
    // The echo server saw the request whole, from the pool address.
    let echo = lab.read("echo.log");
    let line = echo.lines().next().unwrap_or_default();
    assert!(line.starts_with("from 203.0.113.10:") && line.ends_with(" 3000 bytes"), "{echo}");
    let port = line.trim_start_matches("from 203.0.113.10:").split(' ').next().unwrap_or_default();

    // Outside to inside: a datagram on that session, last fragment first.
    let sent = lab.ok(
        "out",
        &[
            "taskset",
            "-c",
            "1",
            "/usr/bin/python3",
            script,
            "send",
            "198.51.100.1",
            "5353",
            "203.0.113.10",
            port,
            "3000",
        ],
    );
    assert_eq!(sent.trim(), "sent 3 fragments");
    assert!(
        lab.wait_for(Duration::from_secs(5), || lab.read("inside.log").contains("second")),
        "the out-of-order datagram from outside did not arrive: {}\nmasq:\n{}",
        lab.read("inside.log"),
        lab.masq_log()
    );
    assert!(lab.read("inside.log").contains("second intact from 198.51.100.1:5353"), "{}", lab.read("inside.log"));

    // Both later fragments of each direction waited in the hold, and left
    // (the workers publish every 100 ms; the echo's own fragments come in
    // order, unless two queues reorder them: then more were held).
    let metrics = |lab: &Lab| lab.ok("nat", &["curl", "-sS", "http://127.0.0.1:9091/metrics"]);
    let counts = |m: &str| ["\nmasq_fragments_held_total ", "\nmasq_fragments_released_total "].map(|k| total(m, k));
    assert!(
        lab.wait_for(Duration::from_secs(2), || {
            let [held, released] = counts(&metrics(&lab));
            held >= 4 && held == released
        }),
        "held and released: {:?}\n{}",
        counts(&metrics(&lab)),
        metrics(&lab).lines().filter(|l| l.contains("fragment")).collect::<Vec<_>>().join("\n")
    );
    let log = lab.stop_masq();
    for drop in ["fragment_unknown=", "fragment_hold_full=", "fragment_hold_expired=", "fragment_release_failed="] {
        assert_eq!(total(&log, drop), 0, "{drop}\n{log}");
    }
}
