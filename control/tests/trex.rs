//! deploy/trex/*.py, masq's TRex profiles, compiled by TRex's own client
//! library (PyPI `lbr-trex-client`, in the venv deploy/setup.sh makes under
//! target/trex-venv; no TRex server, no root) and their compiled streams
//! checked by deploy/trex/check_profiles.py: frame sizes (64 B, IMIX
//! 64/594/1518 at 28:16:4, FCS excluded as TRex counts), the field engine's
//! address and port ranges (CSIT grid hosts x 63 ports from 100.64.0.0 and
//! back to the deterministic pool's addresses x ports; CPS over hosts x
//! 1024..65535) and the rates; the ASTF profile's client and server ranges,
//! the bytes its client and server programs send and wait for,
//! and connections per second.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn trex_profiles_compile_and_hold_their_ranges() {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let venv = std::env::var("MASQ_TREX_VENV")
        .ok()
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/trex-venv"));
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "{} missing: run deploy/setup.sh (it makes the venv with lbr-trex-client from PyPI)",
        py.display()
    );
    let o = Command::new(&py).arg(root.join("deploy/trex/check_profiles.py")).output().expect("python");
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "profile check failed:\n{out}\n{err}");
    assert!(out.contains("all checks hold"), "{out}");
}
