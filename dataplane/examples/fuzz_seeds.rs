//! Writes seed inputs for the fuzz targets: well-formed frames of every kind
//! the engine handles (`cargo run -p dataplane --example fuzz_seeds -- DIR`).
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use dataplane::testing::frames::{self, icmp_echo, icmp_error, ip, tcp, udp};
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "dataplane/fuzz/seeds".into()));
    let (a, r, p) = (ip("100.64.1.2"), ip("198.51.100.1"), ip("203.0.113.1"));
    let out_udp = udp(a, 4000, r, 53, b"query");
    let frames: Vec<(&str, Vec<u8>)> = vec![
        ("udp", out_udp.clone()),
        ("tcp_syn", tcp(a, 40000, r, 80, 0x02)),
        ("tcp_synack_in", tcp(r, 80, p, 40000, 0x12)),
        ("tcp_fwd_syn", tcp(r, 41000, p, 8080, 0x02)),
        ("icmp_echo", icmp_echo(a, r, 7, 1, true)),
        ("icmp_reply", icmp_echo(r, p, 7, 1, false)),
        ("icmp_err", icmp_error(ip("192.0.2.1"), p, 11, 0, &udp(p, 1024, r, 53, b"x"), 8)),
        ("frag_first", frames::frame_frag(a, r, 17, &frames::udp_segment(a, 1, r, 2, &[0; 40])[..24], 64, 9, 0x2000)),
        ("frag_later", frames::frame_frag(a, r, 17, &[0; 24], 64, 9, 3)),
    ];
    for side in [0u8, 1] {
        let sub = dir.join(if side == 0 { "engine" } else { "engine-outside" });
        std::fs::create_dir_all(&sub).unwrap();
        for (name, f) in &frames {
            // engine target format: side byte, length byte, frame.
            let mut d = vec![side, f.len().min(255) as u8];
            d.extend_from_slice(f);
            std::fs::write(sub.join(name), d).unwrap();
        }
    }
    // A sequence: a later fragment before its first (the hold, `nat::frag`).
    let mut seq = Vec::new();
    for name in ["frag_later", "frag_first"] {
        let f = &frames.iter().find(|(n, _)| *n == name).unwrap().1;
        seq.extend_from_slice(&[0, f.len().min(255) as u8]);
        seq.extend_from_slice(f);
    }
    std::fs::write(dir.join("engine").join("frag_later_first"), seq).unwrap();
    let pdir = dir.join("parse");
    std::fs::create_dir_all(&pdir).unwrap();
    for (name, f) in &frames {
        std::fs::write(pdir.join(name), f).unwrap();
    }
    let fdir = dir.join("ftp");
    std::fs::create_dir_all(&fdir).unwrap();
    for (i, line) in [
        &b"PORT 100,64,1,2,156,65\r\n"[..],
        b"EPRT |1|100.64.1.2|40001|\r\n",
        b"227 Entering Passive Mode (198,51,100,1,195,80).\r\n",
        b"229 Entering Extended Passive Mode (|||50001|)\r\n",
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(fdir.join(format!("line{i}")), line).unwrap();
    }
    let hdir = dir.join("ha_records");
    std::fs::create_dir_all(&hdir).unwrap();
    let block = dataplane::nat::ha::ImportedBlock {
        inside: 0x6440_0002,
        public: 0xcb00_710a,
        first_port: 1536,
        last_port: 2047,
    };
    let session = dataplane::nat::ha::SyncedSession {
        proto: 17,
        inside: (0x6440_0002, 40000),
        public: (0xcb00_710a, 1600),
        remote: (0xc633_6401, 9000),
    };
    let batch = [
        dataplane::nat::ha::SyncRecord::Block { held: true, block },
        dataplane::nat::ha::SyncRecord::Session { live: true, session },
        dataplane::nat::ha::SyncRecord::Session { live: false, session },
        dataplane::nat::ha::SyncRecord::Block { held: false, block },
    ];
    std::fs::write(hdir.join("batch"), dataplane::nat::ha::encode_records(&batch)).unwrap();
    println!("seeds written under {}", dir.display());
}
