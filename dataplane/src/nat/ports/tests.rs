//! Unit tests of the port maps: ownership, pairing, limits, holds, classes.

use super::*;
use crate::nat::params::{EngineParams, PoolParams};

proptest::proptest! {
    #[test]
    fn taking_a_free_port_takes_the_first_clear_bit_from_start_wrapping(
        busy in proptest::collection::vec(proptest::prelude::any::<u64>(), 1..9),
        in_use in proptest::collection::vec(proptest::prelude::any::<u64>(), 8),
        start in 0u16..512,
        fill in 0u8..3,
    ) {
        // Dense blocks (most bits set) make the scan leave the start word;
        // full ones leave nothing to take.
        let busy: Vec<u64> = busy
            .iter()
            .map(|&x| match fill { 0 => x, 1 => x | (x << 1) | (x >> 3), _ => u64::MAX })
            .collect();
        let words = busy.len();
        let n = words * 64;
        let start = start % n as u16;
        let clear = |i: usize| busy[i / 64] & (1 << (i % 64)) == 0;
        let want = (usize::from(start)..n).chain(0..usize::from(start)).find(|&i| clear(i));
        // One block's planes: some of its busy ports in use (a port in use
        // is busy), `busy` in the busy plane.
        let mut ports = cgnat(512, 4, 1, 0);
        let ad = ports.addrs.get_mut(0).unwrap();
        let counts = |ad: &AddrPorts| (ad.blocks[0].used, ad.blocks[0].used_by_proto[L4::Udp.index()]);
        let before = counts(ad);
        let mut planes = vec![0u64; PLANES * words];
        for w in 0..words {
            planes[w] = busy[w] & in_use[w];
        }
        planes[BUSY * words..].copy_from_slice(&busy);
        let mut after = planes.clone();
        let got = take_first_free_at(ad, &mut planes, words, 0, L4::Udp, start);
        proptest::prop_assert_eq!(got.map(usize::from), want);
        // The port taken is marked in use and busy and counted, and
        // nothing else changes.
        if let Some(b) = want {
            after[b / 64] |= 1 << (b % 64);
            after[BUSY * words + b / 64] |= 1 << (b % 64);
        }
        proptest::prop_assert_eq!(planes, after);
        let taken = u32::from(want.is_some());
        proptest::prop_assert_eq!(counts(ad), (before.0 + taken, before.1 + taken as u16));
    }
}

fn cgnat(block: u16, max_blocks: u16, workers: u16, worker: u16) -> Ports {
    let mut pool = PoolParams::cgnat("cg", vec![0xcb00_7101, 0xcb00_7102]);
    pool.mode = PoolMode::PortBlocks { block_size: block, max_blocks_per_subscriber: max_blocks };
    let mut p = EngineParams::single(vec![pool], vec![]);
    p.workers = workers;
    p.worker = worker;
    Ports::new(&p).unwrap()
}

#[test]
fn ownership_is_a_pure_function_of_the_port() {
    let w0 = cgnat(512, 8, 2, 0);
    let w1 = cgnat(512, 8, 2, 1);
    for port in [1024u16, 1535, 1536, 2047, 2048, 65535] {
        let o = w0.owner_of(0, port);
        assert_eq!(o, w1.owner_of(0, port));
    }
    assert_eq!(w0.owner_of(0, 1024), Some(0));
    assert_eq!(w0.owner_of(0, 1536), Some(1));
    assert_eq!(w0.owner_of(0, 80), None);
}

#[test]
fn subscriber_keeps_port_in_its_block_and_pairs_address() {
    let mut p = cgnat(512, 2, 1, 0);
    let s = p.subscriber(0x6440_0001, 0).unwrap();
    let (port, newb) = p.alloc(s, L4::Udp, 40000, 0, 0).unwrap();
    assert_eq!(newb, 1);
    // First block handed out is the lowest; the port keeps its offset in the block.
    assert!((1024..1536).contains(&port), "{port}");
    let addr = p.sub(s).unwrap().addr;
    // Same subscriber, same address for every later port (paired pooling).
    for i in 0..600 {
        let (q, _) = p.alloc(s, L4::Udp, 2000 + i, 0, 0).unwrap();
        assert_eq!(p.sub(s).unwrap().addr, addr);
        assert!(q >= 1024);
    }
    assert_eq!(p.sub(s).unwrap().n_blocks, 2);
}

#[test]
fn subscriber_exhausts_only_its_own_blocks() {
    let mut p = cgnat(64, 2, 1, 0);
    let greedy = p.subscriber(0x6440_0001, 0).unwrap();
    for _ in 0..128 {
        assert!(p.alloc(greedy, L4::Udp, 5000, 0, 0).is_some());
    }
    assert!(p.alloc(greedy, L4::Udp, 5000, 0, 0).is_none(), "limit of 2 blocks of 64");
    // Another protocol has its own port space in the same blocks.
    assert!(p.alloc(greedy, L4::Tcp, 5000, 0, 0).is_some());
    let neighbour = p.subscriber(0x6440_0002, 0).unwrap();
    assert!(p.alloc(neighbour, L4::Udp, 5000, 0, 0).is_some());
}

#[test]
fn freed_port_is_held_for_the_hold_time() {
    let mut p = cgnat(64, 1, 1, 0);
    let s = p.subscriber(0x6440_0001, 0).unwrap();
    p.add_session(s);
    let mut got = Vec::new();
    for _ in 0..64 {
        got.push(p.alloc(s, L4::Udp, 0, 10, 0).unwrap().0);
    }
    assert!(p.alloc(s, L4::Udp, 0, 10, 0).is_none());
    let a = p.sub(s).unwrap().addr;
    p.release(a, L4::Udp, got[5], 10);
    // 119 s later it is still held back (RFC 6888 REQ-8).
    assert!(p.alloc(s, L4::Udp, got[5], 129, 0).is_none());
    // After the hold time it can be reused.
    assert_eq!(p.alloc(s, L4::Udp, got[5], 10 + 181, 0).map(|x| x.0), Some(got[5]));
}

#[test]
fn shared_pool_keeps_source_port_and_class() {
    let mut p = EngineParams::single(vec![PoolParams::masquerade("m", 0xcb00_7101)], vec![]);
    p.max_subscribers = 4;
    let mut ports = Ports::new(&p).unwrap();
    let a = ports.subscriber(0xc0a8_0102, 0).unwrap();
    let b = ports.subscriber(0xc0a8_0103, 0).unwrap();
    assert_eq!(ports.alloc(a, L4::Udp, 5353, 0, 0).unwrap().0, 5353);
    let second = ports.alloc(b, L4::Udp, 5353, 0, 0).unwrap().0;
    assert!(second >= 1024 && second != 5353, "{second}");
    assert_eq!(ports.alloc(a, L4::Tcp, 22, 0, 0).unwrap().0, 22);
    let low = ports.alloc(b, L4::Tcp, 22, 0, 0).unwrap().0;
    assert!((1..512).contains(&low) && low != 22, "{low}");
    let mid = ports.alloc(a, L4::Tcp, 700, 0, 0).unwrap().0;
    assert_eq!(mid, 700);
    let mid2 = ports.alloc(b, L4::Tcp, 700, 0, 0).unwrap().0;
    assert!((600..1024).contains(&mid2), "{mid2}");
}

#[test]
fn empty_block_goes_back_and_subscriber_freed() {
    let mut p = cgnat(64, 4, 1, 0);
    let s = p.subscriber(0x6440_0001, 0).unwrap();
    p.add_session(s);
    let mut ports = Vec::new();
    for _ in 0..65 {
        ports.push(p.alloc(s, L4::Udp, 0, 0, 0).unwrap().0);
    }
    assert_eq!(p.blocks_in_use, 2);
    let a = p.sub(s).unwrap().addr;
    assert!(p.release(a, L4::Udp, ports[64], 0), "second block emptied");
    assert_eq!(p.blocks_in_use, 1);
    assert_eq!(p.remove_session(s), 1);
    assert_eq!(p.blocks_in_use, 0);
    assert_eq!(p.subscribers(), 0);
}

/// One address of `blocks` blocks of 64 ports, up to 4 blocks a subscriber.
fn small_address(blocks: u16) -> Ports {
    let mut pool = PoolParams::cgnat("cg", vec![0xcb00_7101]);
    pool.mode = PoolMode::PortBlocks { block_size: 64, max_blocks_per_subscriber: 4 };
    (pool.port_min, pool.port_max) = (1024, 1024 + blocks * 64 - 1);
    Ports::new(&EngineParams::single(vec![pool], vec![])).unwrap()
}

/// Takes `n` UDP ports for subscriber `s` at `now`.
fn take(p: &mut Ports, s: u32, n: usize, now: u32) -> Vec<u16> {
    (0..n).map(|_| p.alloc(s, L4::Udp, 0, now, 0).expect("a free port").0).collect()
}

#[test]
fn a_new_block_is_not_the_one_just_given_back_with_its_ports_held() {
    // A subscriber's second block empties and goes back, its ports held
    // (RFC 6888 REQ-8). Its next new block is a free one with free ports,
    // not that one again (which would refuse the flow with ports to spare).
    let mut p = small_address(8);
    let s = p.subscriber(0x6440_0001, 0).unwrap();
    p.add_session(s);
    take(&mut p, s, 64, 10);
    let second = take(&mut p, s, 64, 10);
    let a = p.sub(s).unwrap().addr;
    for (k, &port) in second.iter().enumerate() {
        assert_eq!(p.release(a, L4::Udp, port, 10), k == 63, "the block empties with its last port");
    }
    let got = p.alloc(s, L4::Udp, 0, 11, 0).map(|x| x.0);
    assert!(got.is_some_and(|x| !second.contains(&x)), "{got:?}");
}

#[test]
fn a_held_free_block_is_passed_over_for_one_with_free_ports() {
    // Three blocks: `s` fills the first, `t` the second, `u` takes one port
    // of the third. `t` releases its 64 and leaves, then `u` its one: both
    // blocks are free, the second first in line with every port held, the
    // third with 63 never used. `s`'s new block is the third.
    let mut p = small_address(3);
    let [s, t, u] = [1, 2, 3].map(|i| p.subscriber(0x6440_0000 + i, 0).unwrap());
    for x in [s, t, u] {
        p.add_session(x);
    }
    take(&mut p, s, 64, 10);
    let burst = take(&mut p, t, 64, 10);
    let one = take(&mut p, u, 1, 10);
    let a = p.sub(t).unwrap().addr;
    for (x, ports) in [(t, &burst), (u, &one)] {
        for &port in ports {
            p.release(a, L4::Udp, port, 10);
        }
        p.remove_session(x);
    }
    assert_eq!(p.block_use(a), (1, 2));
    let got = p.alloc(s, L4::Udp, 0, 11, 0).map(|x| x.0);
    assert!(got.is_some_and(|x| !burst.contains(&x) && x != one[0]), "{got:?}");
}

#[test]
fn reserved_forward_port_is_never_allocated() {
    let mut p = cgnat(64, 1, 1, 0);
    assert!(p.reserve(0, L4::Tcp, 1024));
    // Addresses are paired by hash: take the first subscriber on address 0.
    let mut s = None;
    for i in 1..64u32 {
        let x = p.subscriber(0x6440_0000 + i, 0).unwrap();
        if p.sub(x).unwrap().addr == 0 {
            s = Some(x);
            break;
        }
    }
    let s = s.expect("some subscriber pairs with address 0");
    // Its one block (the lowest: 1024-1087) holds the reserved port; every
    // other port of it is handed out, then nothing: 1024 never.
    let mut got = Vec::new();
    while let Some((port, _)) = p.alloc(s, L4::Tcp, 1024, 0, 0) {
        got.push(port);
    }
    assert_eq!(got.len(), 63, "{got:?}");
    assert!(got.iter().all(|&port| (1025..1088).contains(&port)), "{got:?}");
}

#[test]
fn pools_past_max_pools_are_refused_at_start_and_live() {
    let pool = |i: u32| PoolParams::cgnat(&format!("p{i}"), vec![0xcb00_7100 + i]);
    let mut p = EngineParams::single((0..MAX_POOLS as u32).map(pool).collect(), vec![]);
    let mut ports = Ports::new(&p).unwrap();
    assert_eq!(ports.add_pool(&pool(99)).err(), Some(ParamError::TooMany("pools")));
    p.pools.push(pool(99));
    assert_eq!(Ports::new(&p).err(), Some(ParamError::TooMany("pools")));
}

#[test]
fn every_address_keeps_its_own_bitmaps_in_the_shared_arena_across_live_pool_changes() {
    // The bitmaps of every address lie in one arena (`Ports::bits`): a
    // port taken on one address must not show on another, a pool added
    // live must append its own, and a pool refused live must leave the
    // arena as it was.
    let mut p = cgnat(512, 2, 1, 0);
    let words = p.bits.len();
    assert_eq!(words, p.addrs.iter().map(|a| a.bits.len).sum::<usize>());
    let (a, b) = (p.subscriber(0x6440_0001, 0).unwrap(), p.subscriber(0x6440_0002, 0).unwrap());
    assert_ne!(p.sub(a).unwrap().addr, p.sub(b).unwrap().addr, "the two subscribers pair with both addresses");
    // The same port wanted on both addresses: each keeps it.
    let pa = p.alloc(a, L4::Udp, 1024, 0, 0).unwrap().0;
    let pb = p.alloc(b, L4::Udp, 1024, 0, 0).unwrap().0;
    assert_eq!((pa, pb), (1024, 1024));
    // A pool whose address is taken is refused, the arena unchanged.
    let clash = PoolParams::cgnat("clash", vec![0xcb00_7102]);
    assert!(p.add_pool(&clash).is_err());
    assert_eq!(p.bits.len(), words);
    // A new pool's address has its own bitmaps after the others'.
    let added = p.add_pool(&PoolParams::cgnat("more", vec![0xcb00_7103])).unwrap();
    let new_addr = p.addrs.last().unwrap();
    assert_eq!((new_addr.bits.at, p.bits.len()), (words, words + new_addr.bits.len), "appended after the others");
    let c = p.subscriber(0x6440_0003, added).unwrap();
    assert_eq!(p.alloc(c, L4::Udp, 1024, 0, 0).unwrap().0, 1024);
    assert_eq!(p.alloc(a, L4::Udp, 1024, 0, 0).unwrap().0, 1025, "address a's 1024 is still taken");
}

/// A small port-block pool (blocks of `block`, 2048 ports an address from
/// a port no block size divides, up to 3 blocks a subscriber) for the
/// equivalence below, its ports in numeric order or reversed (an
/// RSS-aware order's `perm`/`inv`), on worker `worker` of two.
fn plain_pool(block: u16, ordered: bool, worker: u16) -> Ports {
    let mut pool = PoolParams::cgnat("cg", vec![0xcb00_7101, 0xcb00_7102]);
    pool.mode = PoolMode::PortBlocks { block_size: block, max_blocks_per_subscriber: 3 };
    (pool.port_min, pool.port_max) = (2000, 2000 + 2048 - 1);
    if ordered {
        pool.port_orders = vec![(pool.port_min..=pool.port_max).rev().collect(); 2];
    }
    let mut p = EngineParams::single(vec![pool], vec![]);
    (p.workers, p.worker) = (2, worker);
    Ports::new(&p).unwrap()
}

proptest::proptest! {
    /// `alloc_current` takes the port the general path takes in the same
    /// state, and leaves the allocation to it (changing nothing) when it
    /// cannot: two copies of a pool, the one allocating through both, the
    /// other through the general path only, hand out the same ports
    /// through a run of allocations and releases over hold windows. With
    /// `crowded`, one subscriber in blocks of 64 and few releases: its
    /// blocks fill (with ports in use and ports held), it takes new ones
    /// and reaches its limit.
    #[test]
    fn the_current_block_path_takes_the_general_paths_port(
        ops in proptest::collection::vec((0u32..3, proptest::prelude::any::<bool>(), 0u16..8, 0u32..40, 0u8..8), 1..400),
        ordered in proptest::prelude::any::<bool>(),
        crowded in proptest::prelude::any::<bool>(),
        worker in 0u16..2,
    ) {
        let (block, n_subs, releases) = if crowded { (64, 1, 1) } else { (128, 3, 2) };
        let (mut both, mut general) = (plain_pool(block, ordered, worker), plain_pool(block, ordered, worker));
        let subs: Vec<u32> = (0..n_subs).map(|i| both.subscriber(0x6440_0001 + i, 0).unwrap()).collect();
        for i in 0..n_subs {
            proptest::prop_assert_eq!(general.subscriber(0x6440_0001 + i, 0).unwrap(), subs[i as usize]);
        }
        let (mut now, mut held, mut current) = (0u32, Vec::new(), 0u32);
        // The blocks each side took (`alloc_general` counts them; the
        // engine's count is tested in `nat::batch`).
        let mut blocks = (0u64, 0u64);
        for (sub, tcp, near, step, what) in ops {
            now += if crowded { step / 8 } else { step };
            let proto = if tcp { L4::Tcp } else { L4::Udp };
            if what < releases && !held.is_empty() {
                let (a, proto, port) = held.remove(usize::from(near) % held.len());
                proptest::prop_assert_eq!(both.release(a, proto, port, now), general.release(a, proto, port, now));
                continue;
            }
            // Preferred ports in and out of the subscriber's blocks.
            let preferred = 2000 + near * 300 + u16::try_from(now % 97).unwrap();
            let s = subs[(sub % n_subs) as usize];
            let window = both.window(now);
            let got = match both.alloc_current(s, proto, preferred, window) {
                Some(got) => {
                    current += 1;
                    Some(got)
                }
                None => both.alloc_general(s, proto, preferred, now, || 0, &mut blocks.0),
            };
            let want = general.alloc_general(s, proto, preferred, now, || 0, &mut blocks.1);
            proptest::prop_assert_eq!(got, want);
            if let Some((port, a, _)) = got {
                held.push((a, proto, port));
            }
        }
        // The path under test served some of them (most runs: many).
        proptest::prop_assume!(current > 0);
    }
}

proptest::proptest! {
    /// The recent-subscriber table never changes what `subscriber` finds:
    /// with inside addresses whose low bits collide (a table of 4), two
    /// pools that both hold them, and subscribers made and freed in any
    /// order, each call returns the slot the index holds for (address,
    /// pool) when there is one, and always one the index holds, of that
    /// address and pool.
    #[test]
    fn the_recent_subscriber_is_the_indexed_one(
        ops in proptest::collection::vec((0u32..6, 0u16..2, proptest::prelude::any::<bool>()), 1..200),
    ) {
        let pools = [0xcb00_7101, 0xcb00_7201].map(|a| PoolParams::cgnat("p", vec![a]));
        let mut params = EngineParams::single(pools.into(), vec![]);
        params.pools[1].name = "q".into();
        params.max_subscribers = 4;
        let mut p = Ports::new(&params).unwrap();
        let mut live: Vec<u32> = Vec::new();
        for (k, pool, free) in ops {
            // Four addresses apart share their low bits.
            let ip = 0x6440_0001 + (k << 2);
            if free && !live.is_empty() {
                let s = live.remove(k as usize % live.len());
                p.remove_session(s);
                continue;
            }
            let indexed = p.find_subscriber(ip, pool);
            let Ok(s) = p.subscriber(ip, pool) else {
                // Only a full table refuses, and only a new subscriber.
                proptest::prop_assert!(indexed.is_none());
                continue;
            };
            proptest::prop_assert!(indexed.is_none_or(|i| i == s));
            proptest::prop_assert_eq!(p.find_subscriber(ip, pool), Some(s), "a slot the index holds");
            let x = p.sub(s).unwrap();
            proptest::prop_assert_eq!((x.inside_ip, x.pool), (ip, pool));
            p.add_session(s);
            live.push(s);
        }
    }
}

#[test]
fn a_subscriber_refused_its_first_session_is_given_back() {
    let mut pool = PoolParams::cgnat("cg", vec![0xcb00_7101]);
    pool.max_sessions_per_subscriber = 1;
    let mut p = Ports::new(&EngineParams::single(vec![pool], vec![])).unwrap();
    let s = p.subscriber_session(0x6440_0001, 0).unwrap();
    // At its limit with a session: refused, and kept.
    assert_eq!(p.subscriber_session(0x6440_0001, 0), Err(DropReason::SubscriberSessionLimit));
    assert_eq!(p.find_subscriber(0x6440_0001, 0), Some(s));
    // A pool that allows none: refused, and not left holding a slot.
    p.pools[0].params.max_sessions_per_subscriber = 0;
    assert_eq!(p.subscriber_session(0x6440_0002, 0), Err(DropReason::SubscriberSessionLimit));
    assert_eq!(p.find_subscriber(0x6440_0002, 0), None);
}
