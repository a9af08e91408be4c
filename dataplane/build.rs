//! Compiles the XDP programs (`bpf/masq_xdp.c`, and with feature `lab` the
//! lab's traffic sink `bpf/sink.c`) with clang for the BPF target. The
//! objects are embedded in the library (`include_bytes!`), so `masq` is a
//! single file. Needs clang and libbpf-dev (the README's set-up installs
//! them).
use std::path::PathBuf;
use std::process::Command;

fn main() {
    compile("masq_xdp");
    if std::env::var_os("CARGO_FEATURE_LAB").is_some() {
        compile("sink");
    }
}

fn compile(name: &str) {
    let src = format!("bpf/{name}.c");
    println!("cargo:rerun-if-changed={src}");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join(format!("{name}.o"));
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let multiarch = match arch.as_str() {
        "aarch64" => "aarch64-linux-gnu",
        _ => "x86_64-linux-gnu",
    };
    let status = Command::new("clang")
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .arg(format!("-I/usr/include/{multiarch}"))
        .args(["-c", &src, "-o"])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("clang failed to compile {src} ({s}); the README's set-up installs clang and libbpf-dev"),
        Err(e) => panic!(
            "cannot run clang ({e}): install it with `apt-get install clang libbpf-dev` (test.sh and demo.sh do)"
        ),
    }
}
