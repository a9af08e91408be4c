//! deploy/grafana/masq.json is what deploy/grafana/generate.py builds with
//! grafana-foundation-sdk (PyPI, pinned in the venv deploy/setup.sh makes
//! under target/grafana-venv; no root, no Grafana): the test regenerates it
//! and fails on any difference, so the checked-in dashboard is never edited
//! by hand and never left behind its generator.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_checked_in_dashboard_is_what_the_generator_builds() {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let venv = std::env::var("MASQ_GRAFANA_VENV")
        .ok()
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/grafana-venv"));
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "{} missing: run deploy/setup.sh (it makes the venv with grafana-foundation-sdk from PyPI)",
        py.display()
    );
    let o = Command::new(&py).arg(root.join("deploy/grafana/generate.py")).arg("-").output().expect("python");
    assert!(o.status.success(), "generate.py failed:\n{}", String::from_utf8_lossy(&o.stderr));
    let built = String::from_utf8(o.stdout).expect("utf-8 JSON");
    let checked_in = std::fs::read_to_string(root.join("deploy/grafana/masq.json")).expect("masq.json");
    if built != checked_in {
        let first = built.lines().zip(checked_in.lines()).position(|(a, b)| a != b);
        let line = first.unwrap_or(built.lines().count().min(checked_in.lines().count()));
        panic!(
            "deploy/grafana/masq.json differs from what generate.py builds, from line {}:\n  built:      {:?}\n  checked in: {:?}\n\
             run `target/grafana-venv/bin/python deploy/grafana/generate.py` and commit masq.json",
            line + 1,
            built.lines().nth(line),
            checked_in.lines().nth(line)
        );
    }
    // The JSON is a dashboard with queries (not an empty file that matches).
    assert!(built.contains("\"expr\": \"masq_ready{instance=~"), "{built}");
}
