//! Receive-side scaling: the Toeplitz hash NICs use to pick a receive
//! queue, and which queue a reply to a public (address, port) lands on.
//!
//! The hash is Microsoft's ("Verifying the RSS hash calculation", the RSS
//! specification): for every set bit of the input, most significant first,
//! the 32 key bits starting at that bit position are XORed into the
//! result. The queue is `indirection[hash % indirection.len()]`.
//!
//! masq's outside NIC is set to hash IPv4 TCP/UDP on the destination
//! address and port only (`ethtool -N IF rx-flow-hash tcp4 dn` and `udp4
//! dn`), so the queue of a reply depends on the public (address, port)
//! alone, whoever the remote is. The fields a NIC leaves out of the hash
//! are masked to zero in place ([`InputSet::Masked`], Intel's input-set
//! masking) or left out of the input ([`InputSet::Packed`]); which one a
//! NIC does is a property of its hardware, so [`reply_queue`] takes it.
//!
//! Invariant: the hash of the Microsoft verification inputs equals the
//! published values (tests below).
#![forbid(unsafe_code)]

/// The Toeplitz key of the Microsoft RSS verification suite (and the
/// default of many drivers).
pub const MS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b,
    0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac,
    0x01, 0xfa,
];

/// The Toeplitz hash of `input` under `key`. Input bits past the key's
/// reach (key length - 4 bytes) contribute nothing.
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let mut hash = 0u32;
    // `window` holds key bits [i, i + 64) for the input bit i being looked at.
    let word = |k: usize| key.get(k).copied().map_or(0u64, u64::from);
    let mut window: u64 = (0..8).fold(0, |w, k| (w << 8) | word(k));
    for (byte_i, &b) in input.iter().enumerate() {
        for bit in 0..8 {
            if b & (0x80 >> bit) != 0 {
                hash ^= (window >> 32) as u32;
            }
            window <<= 1;
        }
        // Refill the low byte the eight shifts emptied.
        window |= word(byte_i + 8);
    }
    hash
}

/// How a NIC builds the hash input when some fields are left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputSet {
    /// The full (source, destination, source port, destination port) input
    /// with the left-out fields zeroed in place.
    Masked,
    /// Only the chosen fields, in order, concatenated.
    Packed,
}

/// A NIC's RSS configuration: key and indirection table (queue per entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rss {
    /// Toeplitz key.
    pub key: Vec<u8>,
    /// Indirection table: entry i is the queue of hashes with `hash % len == i`.
    pub indirection: Vec<u16>,
    /// How the input is built.
    pub input: InputSet,
}

impl Rss {
    /// The queue a hash selects.
    pub fn queue_of(&self, hash: u32) -> Option<u16> {
        let n = u32::try_from(self.indirection.len()).ok().filter(|&n| n > 0)?;
        self.indirection.get(usize::try_from(hash % n).ok()?).copied()
    }
}

/// The queue the outside NIC delivers a reply to public `addr`:`port` on,
/// when it hashes on the destination address and port only.
pub fn reply_queue(rss: &Rss, addr: u32, port: u16) -> Option<u16> {
    let mut buf = [0u8; 12];
    let input: &[u8] = match rss.input {
        InputSet::Masked => {
            buf[4..8].copy_from_slice(&addr.to_be_bytes());
            buf[10..12].copy_from_slice(&port.to_be_bytes());
            &buf
        }
        InputSet::Packed => {
            buf[..4].copy_from_slice(&addr.to_be_bytes());
            buf[4..6].copy_from_slice(&port.to_be_bytes());
            &buf[..6]
        }
    };
    rss.queue_of(toeplitz(&rss.key, input))
}

/// The RSS-aware port order of public address `addr` for
/// [`crate::nat::PoolParams::port_orders`]: ports `port_min..=port_max`
/// grouped by the queue their replies land on (worker `w` serves queue
/// `w`), cut into chunks of `chunk` so that chunk `c` holds only ports of
/// worker `c % workers`. As many whole rounds of chunks as every worker can
/// fill; ports that land on a queue no worker serves, or that do not fill a
/// round, are left out (they are never handed out).
pub fn port_order(rss: &Rss, addr: u32, port_min: u16, port_max: u16, chunk: u16, workers: u16) -> Vec<u16> {
    let mut per_worker: Vec<Vec<u16>> = vec![Vec::new(); usize::from(workers)];
    for port in port_min..=port_max {
        if let Some(list) = reply_queue(rss, addr, port).and_then(|q| per_worker.get_mut(usize::from(q))) {
            list.push(port);
        }
    }
    let chunk = usize::from(chunk.max(1));
    let rounds = per_worker.iter().map(|l| l.len() / chunk).min().unwrap_or(0);
    let mut order = Vec::with_capacity(rounds * chunk * usize::from(workers));
    for r in 0..rounds {
        for list in &per_worker {
            order.extend_from_slice(list.get(r * chunk..(r + 1) * chunk).unwrap_or(&[]));
        }
    }
    order
}

/// Which worker a subscriber belongs to when the inside NIC hashes on the
/// source address only (`ethtool -N IF rx-flow-hash udp4 s`, and tcp4):
/// the worker of the queue the NIC delivers its packets to, so inside
/// traffic needs no hand-off either. The Toeplitz hash of a 4-byte address
/// is precomputed per byte (four table lookups per call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberSteering {
    tables: Vec<[u32; 256]>,
    indirection: Vec<u16>,
}

impl SubscriberSteering {
    /// Steering from the inside NIC's RSS set-up. The source address leads
    /// the hash input whether left-out fields are masked or packed.
    pub fn new(rss: &Rss) -> Self {
        let tables = (0..4)
            .map(|i| {
                let mut t = [0u32; 256];
                for (slot, b) in t.iter_mut().zip(0..=u8::MAX) {
                    let mut input = [0u8; 4];
                    if let Some(x) = input.get_mut(i) {
                        *x = b;
                    }
                    *slot = toeplitz(&rss.key, &input);
                }
                t
            })
            .collect();
        Self { tables, indirection: rss.indirection.clone() }
    }

    /// The worker of inside address `ip` among `workers` (queue q is served
    /// by worker q; a queue past the last worker folds back).
    #[inline]
    pub fn owner(&self, ip: u32, workers: u16) -> u16 {
        let b = ip.to_be_bytes();
        let h = self.tables.iter().zip(b).fold(0u32, |h, (t, x)| h ^ t.get(usize::from(x)).copied().unwrap_or(0));
        let n = u32::try_from(self.indirection.len()).unwrap_or(1).max(1);
        let q = self.indirection.get(usize::try_from(h % n).unwrap_or(0)).copied().unwrap_or(0);
        q % workers.max(1)
    }
}

/// Reads the key and indirection table from `ethtool -x IF` output.
pub fn parse_ethtool_x(text: &str, input: InputSet) -> Option<Rss> {
    let mut indirection = Vec::new();
    let mut key = Vec::new();
    let mut in_key = false;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with("RSS hash key") {
            in_key = true;
            continue;
        }
        if in_key {
            if l.is_empty() || !l.contains(':') || l.starts_with("RSS hash function") {
                in_key = false;
                continue;
            }
            for b in l.split(':') {
                key.push(u8::from_str_radix(b.trim(), 16).ok()?);
            }
            continue;
        }
        // Indirection rows: "   0:      0     1     0     1 ..."
        if let Some((idx, rest)) = l.split_once(':') {
            if idx.trim().parse::<usize>().is_ok() {
                for q in rest.split_whitespace() {
                    indirection.push(q.parse().ok()?);
                }
            }
        }
    }
    (!key.is_empty() && !indirection.is_empty()).then_some(Rss { key, indirection, input })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(a: [u8; 4]) -> u32 {
        u32::from_be_bytes(a)
    }

    /// One of Microsoft's IPv4 verification vectors: destination and port,
    /// source and port, the IPv4-only hash, the hash with TCP ports.
    type Vector = ([u8; 4], u16, [u8; 4], u16, u32, u32);

    const VECTORS: [Vector; 5] = [
        ([161, 142, 100, 80], 1766, [66, 9, 149, 187], 2794, 0x323e_8fc2, 0x51cc_c178),
        ([65, 69, 140, 83], 4739, [199, 92, 111, 2], 14230, 0xd718_262a, 0xc626_b0ea),
        ([12, 22, 207, 184], 38024, [24, 19, 198, 95], 12898, 0xd2d0_a5de, 0x5c2b_394a),
        ([209, 142, 163, 6], 2217, [38, 27, 205, 30], 48228, 0x8298_9176, 0xafc7_327f),
        ([202, 188, 127, 2], 1303, [153, 39, 163, 191], 44251, 0x5d18_09c5, 0x10e8_28a2),
    ];

    #[test]
    fn the_microsoft_verification_vectors_hash_as_published() {
        for (dst, dport, src, sport, ipv4, tcp) in VECTORS {
            let mut input = Vec::new();
            input.extend_from_slice(&src);
            input.extend_from_slice(&dst);
            assert_eq!(toeplitz(&MS_KEY, &input), ipv4, "IPv4 {src:?} -> {dst:?}");
            input.extend_from_slice(&sport.to_be_bytes());
            input.extend_from_slice(&dport.to_be_bytes());
            assert_eq!(toeplitz(&MS_KEY, &input), tcp, "TCP {src:?}:{sport} -> {dst:?}:{dport}");
        }
    }

    #[test]
    fn masked_fields_hash_as_zeros_and_packed_ones_shift() {
        let rss = |input| Rss { key: MS_KEY.to_vec(), indirection: (0..128).map(|i| i % 4).collect(), input };
        let (a, p) = (ip([203, 0, 113, 10]), 40000u16);
        let mut masked = [0u8; 12];
        masked[4..8].copy_from_slice(&a.to_be_bytes());
        masked[10..12].copy_from_slice(&p.to_be_bytes());
        let h = toeplitz(&MS_KEY, &masked);
        assert_eq!(reply_queue(&rss(InputSet::Masked), a, p), Some(((h % 128) % 4) as u16));
        let mut packed = [0u8; 6];
        packed[..4].copy_from_slice(&a.to_be_bytes());
        packed[4..].copy_from_slice(&p.to_be_bytes());
        let h = toeplitz(&MS_KEY, &packed);
        assert_eq!(reply_queue(&rss(InputSet::Packed), a, p), Some(((h % 128) % 4) as u16));
    }

    #[test]
    fn every_queue_gets_a_share_of_the_ports() {
        let rss = Rss { key: MS_KEY.to_vec(), indirection: (0..128).map(|i| i % 4).collect(), input: InputSet::Masked };
        let mut per_queue = [0u32; 4];
        for port in 1024..=65535u16 {
            per_queue[usize::from(reply_queue(&rss, ip([203, 0, 113, 10]), port).unwrap())] += 1;
        }
        // Each of 4 queues gets a quarter of 64512 ports, give or take 10%.
        assert!(per_queue.iter().all(|&n| (14_500..=17_800).contains(&n)), "{per_queue:?}");
    }

    #[test]
    fn a_workers_ports_are_the_ones_whose_replies_reach_its_queue() {
        use crate::nat::{Engine, EngineParams, PoolMode, PoolParams, Rule, RuleAction, RuleMatch, Side, Verdict};
        use crate::testing::frames::{ip as dotted, tuple, udp};
        let rss = Rss { key: MS_KEY.to_vec(), indirection: (0..128).map(|i| i % 2).collect(), input: InputSet::Masked };
        let public = dotted("203.0.113.10");
        let order = port_order(&rss, public, 1024, 65535, 512, 2);
        assert!(order.len() >= 56 * 1024, "most ports are used: {}", order.len());
        let mut pool = PoolParams::cgnat("p", vec![public]);
        pool.mode = PoolMode::PortBlocks { block_size: 512, max_blocks_per_subscriber: 8 };
        pool.port_orders = vec![order];
        let rule = Rule { matches: RuleMatch::default(), action: RuleAction::Translate { pool: 0 } };
        for w in 0..2u16 {
            let mut p = EngineParams::single(vec![pool.clone()], vec![rule.clone()]);
            (p.worker, p.workers) = (w, 2);
            let mut e = Engine::new(&p).expect("engine");
            let mut seen = 0;
            for i in 0..4000u16 {
                let sub = dotted("100.64.0.0") + u32::from(i % 80);
                if crate::nat::subscriber_owner(sub, 2) != w {
                    continue;
                }
                let mut f = udp(sub, 1024 + i / 80, dotted("198.51.100.1"), 53, b"q");
                let v = e.process_one(Side::Inside, 1, &mut f);
                assert_eq!(v, Verdict::Forward(Side::Outside), "flow {i}");
                let (_, port, _, _) = tuple(&f);
                assert_eq!(reply_queue(&rss, public, port), Some(w), "worker {w} handed out port {port}");
                assert_eq!(e.public_owner(public, port), Some(w));
                seen += 1;
            }
            assert!(seen > 1000);
        }
    }

    #[test]
    fn subscriber_steering_is_the_toeplitz_queue_of_the_source_address() {
        let rss = Rss { key: MS_KEY.to_vec(), indirection: (0..128).map(|i| i % 4).collect(), input: InputSet::Masked };
        let st = SubscriberSteering::new(&rss);
        for (_, _, src, _, ipv4_only, _) in VECTORS {
            // Source only: the hash of the 4 source bytes.
            let h = toeplitz(&MS_KEY, &src);
            assert_eq!(st.owner(ip(src), 4), rss.queue_of(h).unwrap());
            assert_ne!(h, ipv4_only, "the destination is not part of the inside hash");
        }
        // An engine with the steering hands a packet to its subscriber's queue's worker.
        use crate::nat::{Engine, EngineParams, PoolParams, Rule, RuleAction, RuleMatch, Side, Verdict};
        use crate::testing::frames::{ip as dotted, udp};
        let rule = Rule { matches: RuleMatch::default(), action: RuleAction::Translate { pool: 0 } };
        let mut p = EngineParams::single(vec![PoolParams::cgnat("p", vec![dotted("203.0.113.10")])], vec![rule]);
        (p.worker, p.workers) = (1, 4);
        p.steering = Some(st.clone());
        let mut e = Engine::new(&p).expect("engine");
        for i in 0..64 {
            let sub = dotted("100.64.0.0") + i;
            let mut f = udp(sub, 1000, dotted("198.51.100.1"), 53, b"q");
            let v = e.process_one(Side::Inside, 1, &mut f);
            match st.owner(sub, 4) {
                1 => assert_eq!(v, Verdict::Forward(Side::Outside)),
                w => assert_eq!(v, Verdict::HandOff { worker: w, arrived_on: Side::Inside }),
            }
        }
    }

    #[test]
    fn ethtool_x_output_is_read() {
        let text = "RX flow hash indirection table for eth0 with 4 RX ring(s):
    0:      0     1     2     3     0     1     2     3
    8:      0     1     2     3     0     1     2     3
RSS hash key:
6d:5a:56:da:25:5b:0e:c2:41:67:25:3d:43:a3:8f:b0:d0:ca:2b:cb:ae:7b:30:b4:77:cb:2d:a3:80:30:f2:0c:6a:42:b7:3b:be:ac:01:fa
RSS hash function:
    toeplitz: on
    xor: off
";
        let rss = parse_ethtool_x(text, InputSet::Masked).expect("parsed");
        assert_eq!(rss.key, MS_KEY);
        assert_eq!(rss.indirection.len(), 16);
        assert_eq!(rss.indirection[5], 1);
        assert_eq!(parse_ethtool_x("no rss here", InputSet::Masked), None);
    }
}
