//! What the scenario files share: an engine driven frame by frame, the
//! lab's CGNAT and home parameters, and rule helpers.
#![allow(dead_code, clippy::unwrap_used)] // each test binary uses part of it

use dataplane::nat::*;
use dataplane::testing::frames::{checksums_ok, ip, tuple};

pub const IN: Side = Side::Inside;
pub const OUT: Side = Side::Outside;

pub fn pfx(s: &str) -> Prefix {
    let (a, l) = s.split_once('/').unwrap();
    Prefix::new(ip(a), l.parse().unwrap())
}

pub fn translate_all(src: &str, pool: u16) -> Rule {
    Rule { matches: RuleMatch { src: vec![pfx(src)], ..Default::default() }, action: RuleAction::Translate { pool } }
}

/// A CGNAT worker: 100.64.0.0/10 behind 203.0.113.1-4, port blocks of 64, 4 a subscriber.
pub fn cgnat_params() -> EngineParams {
    let mut pool = PoolParams::cgnat("cgnat", (1..=4).map(|i| ip("203.0.113.0") + i).collect());
    pool.mode = PoolMode::PortBlocks { block_size: 64, max_blocks_per_subscriber: 4 };
    let mut p = EngineParams::single(vec![pool], vec![translate_all("100.64.0.0/10", 0)]);
    p.local_addrs = vec![ip("100.64.0.1"), ip("203.0.113.254")];
    p
}

/// A home router: 192.168.1.0/24 masqueraded behind its outside address 198.51.100.10.
pub fn home_params() -> EngineParams {
    let mut p = EngineParams::single(
        vec![PoolParams::masquerade("wan", ip("198.51.100.10"))],
        vec![translate_all("192.168.1.0/24", 0)],
    );
    p.local_addrs = vec![ip("192.168.1.1"), ip("198.51.100.10")];
    p
}

pub struct Nat {
    pub e: Engine,
    pub now: u32,
}

impl Nat {
    pub fn new(p: EngineParams) -> Self {
        Self { e: Engine::new(&p).unwrap(), now: 1000 }
    }
    pub fn send(&mut self, side: Side, f: &mut [u8]) -> Verdict {
        self.e.process_one(side, self.now, f)
    }
    /// Sends and expects a forward to the other side (or `to`), returning the frame.
    pub fn pass(&mut self, side: Side, mut f: Vec<u8>, to: Side) -> Vec<u8> {
        let v = self.send(side, &mut f);
        assert_eq!(v, Verdict::Forward(to), "frame {:?}", tuple(&f));
        assert!(checksums_ok(&f), "checksums after translation");
        f
    }
    pub fn out(&mut self, f: Vec<u8>) -> Vec<u8> {
        self.pass(IN, f, OUT)
    }
    pub fn back(&mut self, f: Vec<u8>) -> Vec<u8> {
        self.pass(OUT, f, IN)
    }

    /// Workers 0 and 1 of two, each an engine on `p`.
    pub fn two(mut p: EngineParams) -> [Nat; 2] {
        p.workers = 2;
        [0, 1].map(|w| Nat::new(EngineParams { worker: w, ..p.clone() }))
    }
}

/// The first address from `base` up that worker `w` of two owns as a subscriber.
pub fn owned_by(w: u16, base: &str) -> u32 {
    (0..100u32).map(|i| ip(base) + i).find(|&a| subscriber_owner(a, 2) == w).unwrap()
}
