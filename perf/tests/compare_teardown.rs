//! `compare` tears its lab down on every way out (issue 17): SIGINT while a
//! row runs, and a panic (which aborts, as release builds do) once the lab
//! is up. Each time: exit code non-zero, no `mqcmp-` namespace left,
//! nf_conntrack_max back to what it was, no `/tmp/mqcmp-*` file left.
//!
//! Needs root (namespaces, XDP); a kernel-route-only run, so no masq binary.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CT_MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
const CT_HASH: &str = "/sys/module/nf_conntrack/parameters/hashsize";

fn namespaces() -> Vec<String> {
    let o = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("mqcmp-"))
        .map(String::from)
        .collect()
}

fn temp_files() -> Vec<String> {
    std::fs::read_dir(std::env::temp_dir())
        .expect("temp dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("mqcmp-"))
        .collect()
}

/// nf_conntrack_max and the conntrack hash size.
fn ct_limits() -> (String, String) {
    let read = |f: &str| std::fs::read_to_string(f).expect(f).trim().to_string();
    (read(CT_MAX), read(CT_HASH))
}

/// Puts the host back if the test fails half-way (a run left behind).
struct Restore((String, String));

impl Drop for Restore {
    fn drop(&mut self) {
        let lab = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/lab/lab.sh");
        let _ = Command::new(lab).arg("down").env("LAB_PREFIX", "mqcmp-").output();
        let _ = std::fs::write(CT_HASH, &self.0 .1);
        let _ = std::fs::write(CT_MAX, &self.0 .0);
        for f in temp_files() {
            let _ = std::fs::remove_file(std::env::temp_dir().join(f));
        }
    }
}

/// A short kernel-route run (one 1flow row of 30 s: it is interrupted long before).
fn start(panic_at: Option<&str>) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_compare"));
    c.args(["--paths", "kernel-route", "--scenarios", "1flow", "--seconds", "30", "--warmup", "0.5"])
        .args(["--no-latency", "--idle-seconds", "0"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(step) = panic_at {
        c.env("MQCMP_TEST_PANIC_AT", step);
    }
    c.spawn().expect("compare")
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for the run's end (at most 20 s), returns its exit code and stderr.
fn finish(child: Child) -> (Option<i32>, String) {
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output());
    let end = Instant::now() + Duration::from_secs(20);
    while !waiter.is_finished() {
        if Instant::now() > end {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("compare did not end within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = waiter.join().expect("waiter").expect("compare's output");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn assert_clean(what: &str, ct_before: &(String, String), code: Option<i32>, stderr: &str) {
    assert_ne!(code, Some(0), "{what}: exit code 0\n{stderr}");
    assert_eq!(namespaces(), Vec::<String>::new(), "{what}: namespaces left\n{stderr}");
    assert_eq!(&ct_limits(), ct_before, "{what}: nf_conntrack_max or hashsize not put back\n{stderr}");
    assert_eq!(temp_files(), Vec::<String>::new(), "{what}: files left in the temp dir\n{stderr}");
}

#[test]
fn compare_tears_the_lab_down_after_sigint_and_after_a_panic() {
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(String::from_utf8_lossy(&uid.stdout).trim(), "0", "needs root: network namespaces and XDP");
    assert!(namespaces().is_empty(), "a compare lab is already up: {:?}", namespaces());
    let ct_before = ct_limits();
    let _restore = Restore(ct_before.clone());

    // SIGINT while the row runs (the sink's object is written once the lab is up).
    let child = start(None);
    wait_until("the lab up and the sink written", 30, || {
        namespaces().len() >= 4 && temp_files().iter().any(|f| f == "mqcmp-sink.o")
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_ne!(ct_limits().0, ct_before.0, "the run raised nf_conntrack_max (else its restoring is not tested)");
    let sent = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(sent.success());
    let (code, stderr) = finish(child);
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_clean("SIGINT", &ct_before, code, &stderr);

    // A panic once the lab is up: the hook tears down, then aborts.
    let (code, stderr) = finish(start(Some("lab")));
    assert!(stderr.contains("MQCMP_TEST_PANIC_AT=lab") && stderr.contains("torn down"), "{stderr}");
    assert_clean("panic", &ct_before, code, &stderr);
}
