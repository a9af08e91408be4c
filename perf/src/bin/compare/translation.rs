//! Did a NAT path translate? (issue 17)
//!
//! The sink counts every frame that reaches the outside router, translated
//! or not, so a NAT path that forwarded frames with their inside source
//! (einat not attached, a rule that did not match) would read as fast as
//! a working one. After each NAT row's measured window, while the
//! generator still sends, the dropping XDP sink is taken off `out0` for a
//! moment and `tcpdump -c 20` samples what arrives (XDP drops before
//! tcpdump's tap, so it cannot look while the sink is on). Every sampled
//! UDP frame must come from the path's public address: 203.0.113.1
//! (nat-out's, which the kernel's masquerade and einat take) or masq's
//! pool 198.18.0.0/24. One that does not fails the row.

use super::{in_ns, Res, EINAT, NAT_LOG};
use std::net::Ipv4Addr;

/// Frames sampled per row.
pub const SAMPLE: usize = 20;

/// Whether `path` translates sources, and so is checked.
pub fn is_nat(path: &str) -> bool {
    matches!(path, "kernel-nat" | "masq-nat" | NAT_LOG | EINAT)
}

/// Whether a frame leaving the box on `path` with source `src` was translated.
pub fn translated(path: &str, src: Ipv4Addr) -> bool {
    match path {
        // masquerade and einat: the address of the box's outside interface.
        "kernel-nat" | EINAT => src == Ipv4Addr::new(203, 0, 113, 1),
        // masq's pool, 198.18.0.0/24 (super::masq_nat_config).
        _ => src.octets()[..3] == [198, 18, 0],
    }
}

/// The source addresses of UDP frames in tcpdump's `-n` lines
/// (`12:00:00.000000 IP 203.0.113.1.1024 > 198.51.100.1.5000: UDP, length 18`).
pub fn sources(tcpdump: &str) -> Vec<Ipv4Addr> {
    tcpdump
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.find(|x| *x == "IP")?;
            let addr_port = w.next()?;
            // a.b.c.d.port: the address is what is left of the last dot.
            let (addr, _port) = addr_port.rsplit_once('.')?;
            addr.parse().ok()
        })
        .collect()
}

/// The verdict on a row's sample: `Ok(text)` when every frame was
/// translated (or there was nothing to sample), `Err(text)` naming the
/// untranslated sources otherwise.
pub fn judge(path: &str, srcs: &[Ipv4Addr]) -> Result<String, String> {
    if srcs.is_empty() {
        return Ok("translation: no frames to sample".into());
    }
    let bad: Vec<String> = srcs.iter().filter(|s| !translated(path, **s)).map(Ipv4Addr::to_string).collect();
    if bad.is_empty() {
        return Ok(format!("translation: {n}/{n} sampled frames from the public address", n = srcs.len()));
    }
    let mut shown = bad.clone();
    shown.dedup();
    shown.truncate(3);
    Err(format!("FAILED: {} of {} sampled frames untranslated (from {})", bad.len(), srcs.len(), shown.join(", ")))
}

/// Samples what reaches `out0` for up to a second with the sink `obj` off,
/// then puts the sink back (also when the sample failed).
pub fn sample(sink_obj: &std::path::Path) -> Res<Vec<Ipv4Addr>> {
    in_ns("out", &["ip", "link", "set", "dev", "out0", "xdpdrv", "off"])?;
    let n = SAMPLE.to_string();
    // `timeout` exits 124 when the second passes first: what was printed counts.
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &format!("{}out", super::PREFIX)])
        .args(["timeout", "1", "tcpdump", "-n", "-l", "-c", &n, "-i", "out0", "udp"])
        .output()
        .map_err(|e| format!("tcpdump: {e}"));
    let back = in_ns(
        "out",
        &["ip", "link", "set", "dev", "out0", "xdpdrv", "obj", sink_obj.to_str().unwrap_or_default(), "sec", "xdp"],
    );
    let out = out?;
    back?;
    Ok(sources(&String::from_utf8_lossy(&out.stdout)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_read_from_tcpdump_and_judged_by_the_paths_public_address() {
        let dump = "19:40:01.123456 IP 203.0.113.1.1024 > 198.51.100.1.5000: UDP, length 18\n\
                    19:40:01.123457 IP 100.64.0.7.1025 > 198.51.100.1.5001: UDP, length 18\n\
                    19:40:01.123458 IP 198.18.0.200.40000 > 198.51.100.1.5002: UDP, length 18\n\
                    2 packets captured\n";
        let s = sources(dump);
        assert_eq!(s, [Ipv4Addr::new(203, 0, 113, 1), Ipv4Addr::new(100, 64, 0, 7), Ipv4Addr::new(198, 18, 0, 200)]);
        assert!(judge("kernel-nat", &s[..1]).is_ok());
        assert!(judge(EINAT, &s[..1]).is_ok());
        assert!(judge("masq-nat", &s[..1]).is_err(), "masq translates into its pool, not nat-out's address");
        assert!(judge("masq-nat", &s[2..]).is_ok());
        assert!(judge(NAT_LOG, &s[2..]).is_ok());
        let e = judge(EINAT, &s).expect_err("an inside source arrived");
        assert!(e.contains("2 of 3") && e.contains("100.64.0.7"), "{e}");
        assert!(judge(EINAT, &[]).is_ok(), "nothing forwarded: nothing to check");
        assert!(is_nat(EINAT) && is_nat("kernel-nat") && !is_nat("kernel-route") && !is_nat("masq-forward"));
    }
}
