//! End-to-end tests with two workers (issue 18): the real masq binary on
//! two-queue veths, one worker per queue. veth has no RSS: a frame lands on
//! the queue of the CPU that sent it, so a datagram's fragments reach
//! whichever worker the sender's CPU picks, and the worker that owns the
//! session is often the other one (`nat::frag`: the fragment home).
//! They need root (CI is root); without it they fail and say so.

mod lab;

use lab::{total, Lab, UDP_CLIENT, UDP_ECHO};
use std::time::Duration;

#[test]
fn two_workers_carry_fragmented_udp_echoes_and_large_pings_from_either_cpu() {
    let mut lab = Lab::up_with("2frag", 1500, 2);
    // One echo server per CPU: the echoes' fragments leave from either CPU,
    // so they reach either of masq's outside queues.
    for (cpu, port) in [("0", "5353"), ("1", "5354")] {
        lab.spawn(
            "out",
            &["taskset", "-c", cpu, "python3", "-c", UDP_ECHO, "198.51.100.1", port],
            &format!("echo{port}.log"),
        );
    }
    lab.start_masq(&["--pool", "203.0.113.10", "--nat-src", "100.64.0.0/10", "--cores", "0,1"]);
    std::thread::sleep(Duration::from_millis(300));
    for host in ["in", "in2"] {
        for cpu in ["0", "1"] {
            for port in ["5353", "5354"] {
                let out = lab
                    .ok(host, &["taskset", "-c", cpu, "python3", "-c", UDP_CLIENT, "198.51.100.1", port, "5", "4000"]);
                assert_eq!(
                    out.trim(),
                    "echoed 5 of 5",
                    "{host} on CPU {cpu} to port {port}\nmasq:\n{}",
                    lab.masq_log()
                );
            }
            let ping = lab.run(
                host,
                &["taskset", "-c", cpu, "ping", "-c", "2", "-i", "0.3", "-W", "2", "-s", "3000", "198.51.100.1"],
            );
            let ping = String::from_utf8_lossy(&ping.stdout);
            assert!(ping.contains("2 received"), "{host} on CPU {cpu}: {ping}\nmasq:\n{}", lab.masq_log());
        }
    }
    for port in ["5353", "5354"] {
        let log = lab.read(&format!("echo{port}.log"));
        assert_eq!(log.lines().count(), 20, "2 hosts x 2 CPUs x 5 datagrams: {log}");
        assert!(log.lines().all(|l| l.starts_with("from 203.0.113.10:") && l.ends_with(" 4000 bytes")), "{log}");
    }
    // Fragments did cross workers (the workers publish every 100 ms).
    let metrics = |lab: &Lab| lab.ok("nat", &["curl", "-sS", "http://127.0.0.1:9091/metrics"]);
    let crossed =
        |m: &str| ["\nmasq_fragments_to_home_total ", "\nmasq_fragments_to_owner_total "].map(|k| total(m, k));
    assert!(
        lab.wait_for(Duration::from_secs(2), || crossed(&metrics(&lab)).iter().all(|&n| n > 0)),
        "no fragment went home, or none on to its owner:\n{}",
        metrics(&lab)
            .lines()
            .filter(|l| l.contains("fragment") || l.contains("handoff"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let log = lab.stop_masq();
    assert!(log.contains("worker 1 on core 1 queue 1"), "{log}");
    assert!(total(&log, "handed off ") >= 1, "{log}");
    for drop in [
        "fragment_unknown=",
        "fragment_unknown_at_owner=",
        "handoff_no_queue=",
        "handoff_too_big=",
        "handoff_queue_full=",
        "handoff_no_frame=",
    ] {
        assert_eq!(total(&log, drop), 0, "{drop}\n{log}");
    }
}
