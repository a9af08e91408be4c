//! Synthetic subscriber flows for benchmarks, in the lab's address plan:
//! flow `i` is 100.64.0.0/10 host `i / ports_per_sub`, source port
//! `1024 + i % ports_per_sub`, to 198.51.100.1 port `5000 + i % 61`.

use dataplane::nat::{EngineParams, PoolMode, PoolParams, Prefix, Rule, RuleAction, RuleMatch};
use dataplane::testing::frames::{frame as ip_frame, ip, tcp_segment_at, udp};
use dataplane::wire::ipv4::PROTO_TCP;
use dataplane::wire::tcp::ACK;

/// One flow's inside endpoint and remote port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// Inside address.
    pub src: u32,
    /// Inside port.
    pub sport: u16,
    /// Remote port.
    pub dport: u16,
}

/// 198.51.100.1, the remote every flow talks to, as a number: the
/// benchmarks' timed loops write it into every frame, and parsing the
/// dotted form there cost engine-bench ~140 instructions a packet, more
/// than half the engine's own at 1M flows.
const REMOTE: u32 = 0xc633_6401;
/// 100.64.0.0, the first inside address.
const INSIDE: u32 = 0x6440_0000;

/// The remote every flow talks to.
pub const fn remote() -> u32 {
    REMOTE
}

/// Flow number `i`.
pub fn flow(i: u32, ports_per_sub: u32) -> Flow {
    let sub = i / ports_per_sub;
    Flow {
        src: INSIDE + 256 + sub,
        sport: u16::try_from(1024 + i % ports_per_sub).unwrap_or(u16::MAX),
        dport: u16::try_from(5000 + i % 61).unwrap_or(5000),
    }
}

/// A 60-byte UDP frame of the flow (what "64 bytes on the wire" carries).
pub fn frame(f: Flow) -> Vec<u8> {
    udp(f.src, f.sport, remote(), f.dport, &[0u8; 18])
}

/// A 60-byte TCP frame of the flow: an ACK carrying 6 bytes.
pub fn tcp_frame(f: Flow) -> Vec<u8> {
    let seg = tcp_segment_at(f.src, f.sport, remote(), f.dport, ACK, (1, 1, 512), &[], &[0u8; 6]);
    ip_frame(f.src, remote(), PROTO_TCP, &seg, 64)
}

/// Engine parameters sized for `flows` flows: a CGNAT pool large enough for
/// every flow to hold its own public port, blocks of 512, a session table of
/// exactly `capacity` sessions.
pub fn params(flows: u32, ports_per_sub: u32, capacity: u32) -> EngineParams {
    let subs = flows.div_ceil(ports_per_sub).max(1);
    let blocks_per_sub = ports_per_sub.div_ceil(512) + 1;
    // 126 blocks of 512 per address (ports 1024-65535). Paired pooling picks
    // an address by hash and moves on past full ones, so what the flows need
    // plus two spare addresses is enough, as an operator would size it.
    let addrs = (subs * blocks_per_sub).div_ceil(126) + 2;
    let mut pool = PoolParams::cgnat("bench", (0..addrs).map(|i| ip("203.0.113.0") + i).collect());
    pool.mode = PoolMode::PortBlocks {
        block_size: 512,
        max_blocks_per_subscriber: u16::try_from(blocks_per_sub).unwrap_or(32).min(32),
    };
    pool.max_sessions_per_subscriber = u32::MAX;
    let rule = Rule {
        matches: RuleMatch { src: vec![Prefix::new(INSIDE, 10)], ..Default::default() },
        action: RuleAction::Translate { pool: 0 },
    };
    let mut p = EngineParams::single(vec![pool], vec![rule]);
    p.max_sessions = capacity;
    p.max_subscribers = subs + 16;
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_plan_is_the_dotted_one() {
        assert_eq!(remote(), ip("198.51.100.1"));
        assert_eq!(flow(0, 1).src, ip("100.64.1.0"));
        assert_eq!(flow(7, 2).src, ip("100.64.1.3"));
    }
}
