//! `masq`: the one binary. The daemon, control API and operator subcommands
//! arrive with the config/control issue; until then it only names itself.

use clap::Parser;

/// masq: a carrier-grade NAT44 in user space (AF_XDP, per-core workers).
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
    println!("masq {}: the engine is a library for now; see README.md", env!("CARGO_PKG_VERSION"));
}
