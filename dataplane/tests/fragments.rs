//! Fragments with two workers (issue 18): whichever worker a fragment comes
//! off the wire at, the datagram leaves translated whole. Two engines, as
//! two workers run them; each `HandOff` verdict is carried to the other
//! engine by hand, marked as handed over, as the worker's hand-off queue
//! does (`worker/handoff.rs`).
//!
//! Fragments in any order (issue 12, RFC 4787 REQ-14): a later fragment
//! that comes before its first is held and leaves after it, in both
//! directions, hairpinned, with one worker and with two; what the hold
//! cannot keep is counted. Fragments an engine releases are taken after
//! each frame, as the worker takes them after each batch (`worker/release.rs`).
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // test code: a failed unwrap is a failed test

use dataplane::nat::*;
use dataplane::testing::frames::{self as build, checksums_ok, ip, tuple, udp};
use dataplane::wire::checksum::{checksum, verify};
use proptest::prelude::*;

mod common;
use common::*;

/// Where a datagram's fragments come off the wire: (the first, the rest).
/// Together, every fragment reaches each worker, in both splits.
const SPREADS: [(usize, usize); 4] = [(0, 0), (1, 1), (0, 1), (1, 0)];

struct Two {
    w: [Engine; 2],
    now: u32,
}

impl Two {
    fn new() -> Self {
        Self::with(cgnat_params())
    }

    fn with(mut p: EngineParams) -> Self {
        p.workers = 2;
        p.worker = 0;
        let w0 = Engine::new(&p).unwrap();
        p.worker = 1;
        Self { w: [w0, Engine::new(&p).unwrap()], now: 1000 }
    }

    /// A frame off the wire at worker `at` on `side`, carried along every
    /// hand-off until a worker decides. Returns that verdict, the frame and
    /// the workers it went through; panics on a hand-off loop.
    fn deliver(&mut self, at: usize, side: Side, mut f: Vec<u8>) -> (Verdict, Vec<u8>, Vec<usize>) {
        let (mut w, mut side, mut handed) = (at, side, false);
        let mut path = vec![at];
        for _ in 0..4 {
            let e = &mut self.w[w];
            e.set_handed_off(handed);
            let v = e.process_one(side, self.now, &mut f);
            e.set_handed_off(false);
            match v {
                Verdict::HandOff { worker, arrived_on } => {
                    assert_ne!(usize::from(worker), w, "handed to itself");
                    (w, side, handed) = (usize::from(worker), arrived_on, true);
                    path.push(w);
                }
                v => return (v, f, path),
            }
        }
        panic!("hand-off loop: {path:?}");
    }

    /// An unfragmented frame that must leave on `to`.
    fn pass(&mut self, at: usize, side: Side, f: Vec<u8>, to: Side) -> Vec<u8> {
        let (v, f, path) = self.deliver(at, side, f);
        assert_eq!(v, Verdict::Forward(to), "via {path:?}");
        f
    }

    /// A datagram's fragments, the first at `spread.0` and the rest at
    /// `spread.1`, in order; every one must leave on `to`. Returns them
    /// as they left.
    fn datagram(&mut self, side: Side, frags: Vec<Vec<u8>>, spread: (usize, usize), to: Side) -> Vec<Vec<u8>> {
        frags
            .into_iter()
            .enumerate()
            .map(|(i, f)| {
                let at = if i == 0 { spread.0 } else { spread.1 };
                let (v, f, path) = self.deliver(at, side, f);
                assert_eq!(v, Verdict::Forward(to), "fragment {i} of {spread:?} went {path:?}");
                f
            })
            .collect()
    }

    /// A frame off the wire at worker `at` on `side`, carried along every
    /// hand-off, with every fragment an engine releases on the way carried
    /// on after the frame that released it (as the worker's FIFO hand-off
    /// queues carry them). Returns every frame that ended, in the order
    /// they ended, with its verdict (never `HandOff`; `Held` for a frame
    /// held, which comes back later as a released frame).
    fn run(&mut self, at: usize, side: Side, f: Vec<u8>) -> Vec<(Verdict, Vec<u8>)> {
        let mut queue = std::collections::VecDeque::from([(at, side, f, false, 0)]);
        let mut ended = Vec::new();
        while let Some((w, side, mut f, handed, hops)) = queue.pop_front() {
            assert!(hops < 4, "hand-off loop");
            let e = &mut self.w[w];
            e.set_handed_off(handed);
            let v = e.process_one(side, self.now, &mut f);
            e.set_handed_off(false);
            let mut after = vec![(v, f)];
            e.take_released(usize::MAX, |v, b| after.push((v, b.to_vec())));
            for (v, f) in after {
                match v {
                    Verdict::HandOff { worker, arrived_on } => {
                        assert_ne!(usize::from(worker), w, "handed to itself");
                        queue.push_back((usize::from(worker), arrived_on, f, true, hops + 1));
                    }
                    v => ended.push((v, f)),
                }
            }
        }
        ended
    }

    /// A datagram's fragments sent in the order `order` (indexes), the
    /// first at `spread.0` and the rest at `spread.1`: every one must leave
    /// on `to`. Returns them as they left, in offset order.
    fn shuffled(
        &mut self,
        side: Side,
        frags: &[Vec<u8>],
        order: &[usize],
        spread: (usize, usize),
        to: Side,
    ) -> Vec<Vec<u8>> {
        let mut left = Vec::new();
        for &i in order {
            let at = if i == 0 { spread.0 } else { spread.1 };
            for (v, f) in self.run(at, side, frags[i].clone()) {
                match v {
                    Verdict::Held => {}
                    v => {
                        assert_eq!(v, Verdict::Forward(to), "fragment {i} of {order:?}, {spread:?}");
                        left.push(f);
                    }
                }
            }
        }
        by_offset(left)
    }

    fn sum(&self, c: impl Fn(&Counters) -> u64) -> u64 {
        self.w.iter().map(|e| c(e.counters())).sum()
    }
}

/// Cuts an unfragmented frame's IP payload into fragments of `piece`
/// bytes (a multiple of 8), all with IP id `ident` (RFC 791 section 3.2).
fn cut(f: &[u8], piece: usize, ident: u16) -> Vec<Vec<u8>> {
    let word = |at: usize| u32::from_be_bytes(f[at..at + 4].try_into().unwrap());
    let (src, dst, ttl, proto) = (word(26), word(30), f[22], f[23]);
    let l4 = &f[34..];
    l4.chunks(piece)
        .enumerate()
        .map(|(i, c)| {
            let more = if (i + 1) * piece < l4.len() { 0x2000 } else { 0 };
            build::frame_frag(src, dst, proto, c, ttl, ident, more | (i * piece / 8) as u16)
        })
        .collect()
}

/// The datagram the fragments make: each fragment's IP header checksum
/// verifies, they agree on addresses, protocol and IP id, and together
/// they make one unfragmented frame (built here) whose checksums verify.
fn glue(frags: &[Vec<u8>]) -> Vec<u8> {
    assert!(frags.len() > 1);
    let mut payload = Vec::new();
    for (i, f) in frags.iter().enumerate() {
        assert!(verify(&f[14..34]), "fragment {i}: IP header checksum");
        assert_eq!(&f[26..34], &frags[0][26..34], "fragment {i}: addresses");
        assert_eq!(
            (f[18..20].to_vec(), f[23]),
            (frags[0][18..20].to_vec(), frags[0][23]),
            "fragment {i}: IP id, protocol"
        );
        let offset = usize::from(u16::from_be_bytes([f[20], f[21]]) & 0x1fff) * 8;
        assert_eq!(offset, payload.len(), "fragment {i}: offset");
        payload.extend_from_slice(&f[34..]);
    }
    let word = |at: usize| u32::from_be_bytes(frags[0][at..at + 4].try_into().unwrap());
    let whole = build::frame(word(26), word(30), frags[0][23], &payload, 64);
    assert!(checksums_ok(&whole), "the reassembled datagram's checksums");
    whole
}

/// Fragments sorted by their offset (as the receiver reassembles them).
fn by_offset(mut frags: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    frags.sort_by_key(|f| u16::from_be_bytes([f[20], f[21]]) & 0x1fff);
    frags
}

/// The orders a three-fragment datagram is sent in, each with a later
/// fragment before the first: last first, middle first, both later ones first.
const DISORDERS: [[usize; 3]; 4] = [[2, 1, 0], [1, 0, 2], [2, 0, 1], [1, 2, 0]];

/// One engine: sends `frags` in `order` on `side`; every fragment must leave
/// on `to`, the later ones that came first right after their first.
/// Returns them as they left, in offset order.
fn one_worker_shuffled(n: &mut Nat, side: Side, frags: &[Vec<u8>], order: &[usize], to: Side) -> Vec<Vec<u8>> {
    let mut left = Vec::new();
    let mut held = Vec::new();
    for &i in order {
        let mut f = frags[i].clone();
        let v = n.send(side, &mut f);
        if i != 0 && !order[..order.iter().position(|&x| x == i).unwrap()].contains(&0) {
            assert_eq!(v, Verdict::Held, "fragment {i} of {order:?} came before its first");
            held.push(i);
            continue;
        }
        assert_eq!(v, Verdict::Forward(to), "fragment {i} of {order:?}");
        left.push(f);
        let mut released = Vec::new();
        n.e.take_released(usize::MAX, |v, b| released.push((v, b.to_vec())));
        if i == 0 {
            assert_eq!(released.len(), held.len(), "every held fragment of {order:?} released after its first");
            for ((v, f), &j) in released.into_iter().zip(&held) {
                assert_eq!(v, Verdict::Forward(to), "held fragment {j} of {order:?}");
                assert_eq!(
                    u16::from_be_bytes([f[20], f[21]]) & 0x1fff,
                    u16::from_be_bytes([frags[j][20], frags[j][21]]) & 0x1fff,
                    "released in arrival order"
                );
                left.push(f);
            }
        } else {
            assert!(released.is_empty());
        }
    }
    by_offset(left)
}

/// An ICMP echo request (or reply) with `len` bytes of payload.
fn ping(src: u32, dst: u32, ident: u16, request: bool, len: usize) -> Vec<u8> {
    let mut m = vec![if request { 8 } else { 0 }, 0, 0, 0];
    m.extend_from_slice(&ident.to_be_bytes());
    m.extend_from_slice(&7u16.to_be_bytes());
    m.extend((0..len).map(|i| (i * 7) as u8));
    let c = checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    build::frame(src, dst, 1, &m, 64)
}

/// A subscriber each worker owns.
fn subscribers() -> [u32; 2] {
    let find = |w| (0..200u32).map(|i| ip("100.64.7.0") + i).find(|&a| subscriber_owner(a, 2) == w).unwrap();
    [find(0), find(1)]
}

const REMOTE: &str = "198.51.100.1";

#[test]
fn a_fragmented_reply_reaches_the_subscriber_whichever_workers_its_fragments_reach() {
    let mut t = Two::new();
    let remote = ip(REMOTE);
    let mut homes_at_owner = [0u32; 2];
    for sub in subscribers() {
        // The subscriber's request makes the session at its worker.
        let out = t.pass(0, IN, udp(sub, 4000, remote, 7, b"q"), OUT);
        let (pub_ip, pub_port, _, _) = tuple(&out);
        let owner = t.w[0].public_owner(pub_ip, pub_port).unwrap();
        let reply = udp(remote, 7, pub_ip, pub_port, &[0x5a; 4000]);
        for (n, spread) in SPREADS.iter().enumerate() {
            for ident in 0..8u16 {
                let ident = ident * 4 + n as u16 * 100;
                let key = frag::FragKey { src: remote, dst: pub_ip, ip_proto: 17, ident };
                let home = frag::outside_home(cgnat_params().seed, key, 2);
                homes_at_owner[usize::from(home == owner)] += 1;
                let frags = cut(&reply, 1480, ident);
                assert_eq!(frags.len(), 3);
                let got = glue(&t.datagram(OUT, frags, *spread, IN));
                assert_eq!(tuple(&got), (remote, 7, sub, 4000), "{spread:?}, IP id {ident}");
            }
        }
    }
    assert!(homes_at_owner.iter().all(|&n| n > 0), "homes at and away from the owner: {homes_at_owner:?}");
    assert!(t.sum(|c| c.fragments_to_home) > 0 && t.sum(|c| c.fragments_to_owner) > 0);
    assert_eq!(t.sum(Counters::total_drops), 0);
    assert_eq!(t.sum(|c| c.fragments_followed), 2 * 4 * 8 * 2, "every later fragment followed its first");
}

#[test]
fn a_fragmented_request_leaves_translated_whichever_workers_its_fragments_reach() {
    let mut t = Two::new();
    let remote = ip(REMOTE);
    for sub in subscribers() {
        for (n, spread) in SPREADS.iter().enumerate() {
            // A new flow's first packet is a fragment (n = 0, 1), or the flow exists already.
            let sport = 5000 + (n as u16 % 2);
            let request = udp(sub, sport, remote, 53, &[0x33; 3000]);
            let got = glue(&t.datagram(IN, cut(&request, 1480, 0x100 + n as u16), *spread, OUT));
            let (pub_ip, pub_port, dst, dport) = tuple(&got);
            assert!((ip("203.0.113.1")..=ip("203.0.113.4")).contains(&pub_ip), "{spread:?}");
            assert_eq!((dst, dport), (remote, 53));
            // The reply, unfragmented, finds the session the fragments made.
            let back = t.pass(spread.1, OUT, udp(remote, 53, pub_ip, pub_port, b"a"), IN);
            assert_eq!(tuple(&back), (remote, 53, sub, sport), "{spread:?}");
        }
    }
    assert!(t.sum(|c| c.fragments_to_home) > 0);
    assert_eq!(t.sum(Counters::total_drops), 0);
}

#[test]
fn a_fragmented_ping_and_its_fragmented_reply_cross_two_workers() {
    let mut t = Two::new();
    let remote = ip(REMOTE);
    for sub in subscribers() {
        for (n, spread) in SPREADS.iter().enumerate() {
            let id = 0x700 + n as u16;
            let request = ping(sub, remote, id, true, 3000);
            let out = glue(&t.datagram(IN, cut(&request, 1480, id), *spread, OUT));
            let (pub_ip, pub_id, dst, _) = tuple(&out);
            assert_eq!(dst, remote);
            let reply = ping(remote, pub_ip, pub_id, false, 3000);
            for ident in [id, id + 0x40, id + 0x80] {
                let back = glue(&t.datagram(OUT, cut(&reply, 1480, ident), *spread, IN));
                assert_eq!(tuple(&back), (remote, id, sub, id), "{spread:?}");
            }
        }
    }
    assert_eq!(t.sum(Counters::total_drops), 0);
}

#[test]
fn a_fragmented_hairpin_crosses_two_workers() {
    let mut t = Two::new();
    let [a, b] = subscribers();
    for (from, to) in [(a, b), (b, a)] {
        // The target's mapping, at its worker.
        let tb = t.pass(0, IN, udp(to, 6000, ip(REMOTE), 3478, b"stun"), OUT);
        let (pub_to, pub_to_port, _, _) = tuple(&tb);
        for (n, spread) in SPREADS.iter().enumerate() {
            let f = udp(from, 7000 + n as u16, pub_to, pub_to_port, &[0x77; 3000]);
            let got = glue(&t.datagram(IN, cut(&f, 1480, 0x900 + n as u16), *spread, IN));
            let (src, sport, dst, dport) = tuple(&got);
            assert_eq!((dst, dport), (to, 6000), "delivered to the target's inside endpoint, {spread:?}");
            assert!((ip("203.0.113.1")..=ip("203.0.113.4")).contains(&src), "seen from the sender's public endpoint");
            // The target answers the sender's public endpoint, fragmented too.
            let r = udp(to, 6000, src, sport, &[0x88; 3000]);
            let back = glue(&t.datagram(IN, cut(&r, 1480, 0xa00 + n as u16), *spread, IN));
            assert_eq!(tuple(&back), (pub_to, pub_to_port, from, 7000 + n as u16), "{spread:?}");
        }
    }
    assert_eq!(t.sum(Counters::total_drops), 0);
    assert!(t.sum(|c| c.fragments_to_owner) > 0, "some second halves crossed to the target's worker");
}

#[test]
fn a_fragmented_hairpin_on_one_worker_takes_both_halves() {
    let mut n = Nat::new(cgnat_params());
    let b = ip("100.64.2.2");
    let tb = n.out(udp(b, 5000, ip(REMOTE), 3478, b"stun"));
    let (pb, pbp, _, _) = tuple(&tb);
    let f = udp(ip("100.64.1.1"), 6000, pb, pbp, &[0x42; 2000]);
    let frags: Vec<Vec<u8>> = cut(&f, 1480, 0x4444)
        .into_iter()
        .map(|mut x| {
            assert_eq!(n.send(IN, &mut x), Verdict::Forward(IN));
            x
        })
        .collect();
    let got = glue(&frags);
    assert_eq!((tuple(&got).2, tuple(&got).3), (b, 5000));
    assert!(frags.iter().all(|x| build::ttl(x) == 63), "one hop for every fragment");
    assert_eq!(n.e.counters().hairpinned, 2);
}

#[test]
fn a_fragment_its_owner_forgot_is_dropped_and_counted_not_bounced() {
    // One entry per worker: a second datagram recorded at the owner alone
    // overwrites the first's entry there, while its home still points at it.
    let mut p = cgnat_params();
    p.max_fragments = 1;
    let mut t = Two::with(p);
    let remote = ip(REMOTE);
    let sub = subscribers()[1];
    let out = t.pass(1, IN, udp(sub, 4000, remote, 7, b"q"), OUT);
    let (pub_ip, pub_port, _, _) = tuple(&out);
    let owner = usize::from(t.w[0].public_owner(pub_ip, pub_port).unwrap());
    // A reply datagram whose home is not the owner.
    let ident = (0..100u16)
        .find(|&i| {
            usize::from(frag::outside_home(
                cgnat_params().seed,
                frag::FragKey { src: remote, dst: pub_ip, ip_proto: 17, ident: i },
                2,
            )) != owner
        })
        .unwrap();
    let frags = cut(&udp(remote, 7, pub_ip, pub_port, &[1; 3000]), 1480, ident);
    let home = 1 - owner;
    let (v, _, path) = t.deliver(home, OUT, frags[0].clone());
    assert_eq!((v, path), (Verdict::Forward(IN), vec![home, owner]));
    // The owner's one entry goes to a request from its own subscriber.
    let request = cut(&udp(sub, 4001, remote, 7, &[2; 3000]), 1480, 0x5555);
    t.datagram(IN, request[..1].to_vec(), (owner, owner), OUT);
    let (v, _, path) = t.deliver(home, OUT, frags[1].clone());
    assert_eq!((v, path), (Verdict::Drop(DropReason::FragmentUnknownAtOwner), vec![home, owner]));
    assert_eq!(t.w[owner].counters().drop_count(DropReason::FragmentUnknownAtOwner), 1);
}

#[test]
fn a_port_forwards_server_answers_in_fragments_through_the_port_owner() {
    // The server's session lives with the public port's owner, not with the
    // server's own (subscriber) worker, which is its fragments' home: the
    // home hands the first fragment on and its later ones after it.
    let public = ip("203.0.113.1");
    let owner_of = |port| Two::new().w[0].public_owner(public, port).unwrap();
    let port = (1024..2048u16).find(|&p| owner_of(p) == 0).unwrap();
    let server = subscribers()[1];
    let mut p = cgnat_params();
    p.forwards = vec![Forward::one(17, public, port, server, 53)];
    let mut t = Two::with(p);
    let client = ip(REMOTE);
    let q = t.pass(1, OUT, udp(client, 3333, public, port, b"query"), IN);
    assert_eq!(tuple(&q), (client, 3333, server, 53));
    for (n, spread) in SPREADS.iter().enumerate() {
        let answer = udp(server, 53, client, 3333, &[0xdd; 3000]);
        let got = glue(&t.datagram(IN, cut(&answer, 1480, 0xb00 + n as u16), *spread, OUT));
        assert_eq!(tuple(&got), (public, port, client, 3333), "{spread:?}");
    }
    assert!(t.w[1].counters().fragments_to_owner > 0, "the server's worker handed fragments to the port's owner");
    assert_eq!(t.sum(Counters::total_drops), 0);
}

#[test]
fn a_request_whose_later_fragments_come_first_leaves_whole_with_one_worker() {
    let mut n = Nat::new(cgnat_params());
    let (sub, remote) = (ip("100.64.1.2"), ip(REMOTE));
    for (k, order) in DISORDERS.iter().enumerate() {
        // A new flow whose first packet is the datagram (k even), or one that exists already.
        let sport = 7000 + (k as u16 / 2);
        let request = udp(sub, sport, remote, 53, &[k as u8; 3000]);
        let frags = cut(&request, 1480, 0x100 + k as u16);
        let got = glue(&one_worker_shuffled(&mut n, IN, &frags, order, OUT));
        let (pub_ip, pub_port, dst, dport) = tuple(&got);
        assert!((ip("203.0.113.1")..=ip("203.0.113.4")).contains(&pub_ip), "{order:?}");
        assert_eq!((dst, dport), (remote, 53));
        assert_eq!(tuple(&n.back(udp(remote, 53, pub_ip, pub_port, b"a"))), (remote, 53, sub, sport));
    }
    let c = n.e.counters();
    assert_eq!((c.fragments_held, c.fragments_released), (6, 6));
    assert_eq!(c.total_drops(), 0);
}

#[test]
fn a_reply_whose_later_fragments_come_first_reaches_the_subscriber_whole_with_one_worker() {
    let mut n = Nat::new(cgnat_params());
    let (sub, remote) = (ip("100.64.1.2"), ip(REMOTE));
    let out = n.out(udp(sub, 4000, remote, 7, b"q"));
    let (pub_ip, pub_port, _, _) = tuple(&out);
    for (k, order) in DISORDERS.iter().enumerate() {
        let reply = udp(remote, 7, pub_ip, pub_port, &[k as u8; 3000]);
        let frags = cut(&reply, 1480, 0x200 + k as u16);
        let got = glue(&one_worker_shuffled(&mut n, OUT, &frags, order, IN));
        assert_eq!(tuple(&got), (remote, 7, sub, 4000), "{order:?}");
    }
    // A fragmented ping's reply, last fragment first.
    let out = n.out(ping(sub, remote, 0x77, true, 100));
    let (pub_ip, pub_id, _, _) = tuple(&out);
    let frags = cut(&ping(remote, pub_ip, pub_id, false, 3000), 1480, 0x2ff);
    let got = glue(&one_worker_shuffled(&mut n, OUT, &frags, &[2, 1, 0], IN));
    assert_eq!(tuple(&got), (remote, 0x77, sub, 0x77));
    let c = n.e.counters();
    assert_eq!((c.fragments_held, c.fragments_released), (8, 8));
    assert_eq!(c.total_drops(), 0);
}

#[test]
fn a_hairpinned_datagram_whose_later_fragments_come_first_takes_both_halves() {
    let mut n = Nat::new(cgnat_params());
    let (a, b) = (ip("100.64.1.1"), ip("100.64.2.2"));
    let tb = n.out(udp(b, 5000, ip(REMOTE), 3478, b"stun"));
    let (pb, pbp, _, _) = tuple(&tb);
    for (k, order) in DISORDERS.iter().enumerate() {
        let f = udp(a, 6000 + k as u16, pb, pbp, &[0x42; 3000]);
        let frags = cut(&f, 1480, 0x300 + k as u16);
        let left = one_worker_shuffled(&mut n, IN, &frags, order, IN);
        assert!(left.iter().all(|x| build::ttl(x) == 63), "one hop for every fragment");
        let got = glue(&left);
        let (src, _, dst, dport) = tuple(&got);
        assert_eq!((dst, dport), (b, 5000), "{order:?}");
        assert!((ip("203.0.113.1")..=ip("203.0.113.4")).contains(&src));
    }
    assert_eq!(n.e.counters().hairpinned, 3 * 4);
    assert_eq!(n.e.counters().total_drops(), 0);
}

#[test]
fn later_fragments_that_come_first_cross_two_workers_in_both_directions() {
    let mut t = Two::new();
    let remote = ip(REMOTE);
    for sub in subscribers() {
        for (n, spread) in SPREADS.iter().enumerate() {
            for (k, order) in DISORDERS.iter().enumerate() {
                let id = (n * 4 + k) as u16;
                // Inside to outside: a new flow, its first packet out of order.
                let request = udp(sub, 5000 + id, remote, 53, &[0x33; 3000]);
                let frags = cut(&request, 1480, 0x100 + id);
                let got = glue(&t.shuffled(IN, &frags, order, *spread, OUT));
                let (pub_ip, pub_port, dst, _) = tuple(&got);
                assert_eq!(dst, remote, "{spread:?} {order:?}");
                // Outside to inside: the reply, out of order too; its home may
                // be either worker, and its owner the other.
                let reply = udp(remote, 53, pub_ip, pub_port, &[0x44; 3000]);
                let frags = cut(&reply, 1480, 0x200 + id);
                let got = glue(&t.shuffled(OUT, &frags, order, *spread, IN));
                assert_eq!(tuple(&got), (remote, 53, sub, 5000 + id), "{spread:?} {order:?}");
            }
        }
    }
    assert_eq!(t.sum(Counters::total_drops), 0);
    assert_eq!(t.sum(|c| c.fragments_held), t.sum(|c| c.fragments_released));
    assert_eq!(t.sum(|c| c.fragments_held), 2 * 4 * 2 * 6, "every later fragment that came first was held");
    assert!(t.sum(|c| c.fragments_to_owner) > 0 && t.sum(|c| c.fragments_to_home) > 0);
}

#[test]
fn a_hairpin_whose_later_fragments_come_first_crosses_two_workers() {
    let mut t = Two::new();
    let [a, b] = subscribers();
    for (from, to) in [(a, b), (b, a)] {
        let tb = t.pass(0, IN, udp(to, 6000, ip(REMOTE), 3478, b"stun"), OUT);
        let (pub_to, pub_to_port, _, _) = tuple(&tb);
        for (n, spread) in SPREADS.iter().enumerate() {
            for (k, order) in DISORDERS.iter().enumerate() {
                let id = (n * 4 + k) as u16;
                let f = udp(from, 7000 + id, pub_to, pub_to_port, &[0x77; 3000]);
                let got = glue(&t.shuffled(IN, &cut(&f, 1480, 0x900 + id), order, *spread, IN));
                assert_eq!((tuple(&got).2, tuple(&got).3), (to, 6000), "{spread:?} {order:?}");
            }
        }
    }
    assert_eq!(t.sum(Counters::total_drops), 0);
    assert!(t.sum(|c| c.fragments_held) > 0);
    assert!(t.sum(|c| c.fragments_to_owner) > 0, "some second halves crossed to the target's worker");
}

/// A later fragment of datagram `ident` from a subscriber, alone.
fn stray(ident: u16, len: usize) -> Vec<u8> {
    let request = udp(ip("100.64.1.2"), 7000, ip(REMOTE), 53, &vec![1; 1480 + len]);
    cut(&request, 1480, ident).pop().unwrap()
}

#[test]
fn a_full_hold_drops_and_counts_what_does_not_fit() {
    let mut p = cgnat_params();
    (p.fragment_hold, p.fragment_hold_bytes) = (2, 1 << 20);
    let mut n = Nat::new(p);
    assert_eq!(n.send(IN, &mut stray(1, 100)), Verdict::Held);
    assert_eq!(n.send(IN, &mut stray(2, 100)), Verdict::Held);
    assert_eq!(n.send(IN, &mut stray(3, 100)), Verdict::Drop(DropReason::FragmentHoldFull), "two fragments at most");
    // The byte budget: one full frame fits, a second does not.
    let mut p = cgnat_params();
    (p.fragment_hold, p.fragment_hold_bytes) = (8, 2000);
    let mut n = Nat::new(p);
    assert_eq!(n.send(IN, &mut stray(1, 1400)), Verdict::Held);
    assert_eq!(n.send(IN, &mut stray(2, 1400)), Verdict::Drop(DropReason::FragmentHoldFull), "2000 bytes at most");
    assert_eq!(n.send(IN, &mut stray(3, 400)), Verdict::Held, "a small one still fits");
    assert_eq!(n.e.counters().drop_count(DropReason::FragmentHoldFull), 1);
    assert_eq!(n.e.counters().fragments_held, 2);
    // Released, the hold has room again.
    let first = cut(&udp(ip("100.64.1.2"), 7000, ip(REMOTE), 53, &[1; 2880]), 1480, 1).remove(0);
    assert_eq!(n.send(IN, &mut first.clone()), Verdict::Forward(OUT));
    assert_eq!(n.e.take_released(usize::MAX, |v, _| assert_eq!(v, Verdict::Forward(OUT))), 1);
    assert_eq!(n.send(IN, &mut stray(4, 1400)), Verdict::Held);
}

#[test]
fn a_held_fragment_whose_first_comes_too_late_expires_and_is_counted() {
    let mut n = Nat::new(cgnat_params());
    let frags = cut(&udp(ip("100.64.1.2"), 7000, ip(REMOTE), 53, &[1; 3000]), 1480, 9);
    assert_eq!(n.send(IN, &mut frags[2].clone()), Verdict::Held);
    n.now += n.e.timeouts().fragment_secs - 1;
    assert_eq!(n.send(IN, &mut frags[1].clone()), Verdict::Held);
    n.now += 1;
    // Any batch (or an idle worker's expiry) drops those whose time is up.
    n.out(udp(ip("100.64.9.9"), 1, ip(REMOTE), 2, b"x"));
    assert_eq!(n.e.counters().drop_count(DropReason::FragmentHoldExpired), 1);
    assert_eq!(n.send(IN, &mut frags[0].clone()), Verdict::Forward(OUT));
    let mut released = Vec::new();
    n.e.take_released(usize::MAX, |v, b| released.push((v, b.to_vec())));
    assert_eq!(released.len(), 1, "the one still in time");
    assert_eq!(&released[0].1[20..22], &frags[1][20..22]);
    n.now += n.e.timeouts().fragment_secs;
    n.e.expire(n.now, 1);
    assert_eq!(n.e.counters().drop_count(DropReason::FragmentHoldExpired), 1, "a released fragment never expires");
}

#[test]
fn a_held_fragment_whose_first_is_dropped_is_dropped_and_an_off_hold_holds_nothing() {
    let mut n = Nat::new(cgnat_params());
    // No rule covers 10.0.0.0/8: the first fragment is dropped, its held one after it.
    let frags = cut(&udp(ip("10.1.1.1"), 7000, ip(REMOTE), 53, &[1; 3000]), 1480, 5);
    assert_eq!(n.send(IN, &mut frags[1].clone()), Verdict::Held);
    assert_eq!(n.send(IN, &mut frags[0].clone()), Verdict::Drop(DropReason::NoRule));
    assert_eq!(n.e.take_released(usize::MAX, |_, _| panic!("nothing to send")), 0);
    assert_eq!(n.e.counters().drop_count(DropReason::FragmentUnknown), 1);
    assert_eq!(n.e.counters().fragments_released, 1);
    let mut p = cgnat_params();
    p.fragment_hold = 0;
    let mut n = Nat::new(p);
    assert_eq!(n.send(IN, &mut stray(1, 100)), Verdict::Drop(DropReason::FragmentUnknown));
}

#[test]
fn another_protocols_first_fragment_releases_its_held_ones_too() {
    let mut p = cgnat_params();
    let exempt = RuleMatch { src: vec![pfx("100.64.9.0/24")], ..Default::default() };
    p.rules.insert(0, Rule { matches: exempt, action: RuleAction::NoNat });
    let mut n = Nat::new(p);
    let gre = build::frame(ip("100.64.9.1"), ip(REMOTE), 47, &[0x47; 3000], 64);
    let frags = cut(&gre, 1480, 0x47);
    assert_eq!(n.send(IN, &mut frags[2].clone()), Verdict::Held);
    assert_eq!(n.send(IN, &mut frags[0].clone()), Verdict::Forward(OUT), "routed unchanged (no NAT)");
    // Released at its first fragment, not left to expire. (Other protocols'
    // later fragments have no entry to follow yet: dropped as unknown.)
    assert_eq!(n.e.counters().fragments_released, 1);
    assert_eq!(n.e.counters().drop_count(DropReason::FragmentUnknown), 1);
}

/// Both subscribers' sessions made through `t`, then four datagrams of
/// `len` payload bytes for the property tests: a reply to each subscriber,
/// a request, and a hairpin from the first to the second.
fn four_datagrams(t: &mut Two, len: usize) -> [(Side, Vec<u8>); 4] {
    let [a, b] = subscribers();
    let remote = ip(REMOTE);
    let ta = t.pass(0, IN, udp(a, 4000, remote, 7, b"q"), OUT);
    let tb = t.pass(0, IN, udp(b, 4000, remote, 7, b"q"), OUT);
    let ((pa, pap, _, _), (pb, pbp, _, _)) = (tuple(&ta), tuple(&tb));
    [
        (OUT, udp(remote, 7, pa, pap, &vec![1; len])),
        (OUT, udp(remote, 7, pb, pbp, &vec![2; len])),
        (IN, udp(b, 4000, remote, 7, &vec![3; len])),
        (IN, udp(a, 4000, pb, pbp, &vec![4; len])),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever fragments come off the wire at whichever worker, in any
    /// order, with tables small enough to collide: every one ends in a
    /// decision within the hops `nat::frag` allows (`deliver` panics on a
    /// loop) and never takes the same hop twice.
    #[test]
    fn fragments_in_any_order_at_any_worker_never_bounce(
        max_fragments in 1u32..4,
        arrivals in proptest::collection::vec((0usize..2, 0usize..4, 0u16..3, any::<bool>()), 1..40),
    ) {
        let mut p = cgnat_params();
        p.max_fragments = max_fragments;
        let mut t = Two::with(p);
        let datagrams = four_datagrams(&mut t, 1600);
        for (at, which, ident, first) in arrivals {
            let (side, whole) = &datagrams[which];
            let frags = cut(whole, 1480, ident);
            let f = if first { frags[0].clone() } else { frags[1].clone() };
            let (v, _, path) = t.deliver(at, *side, f);
            prop_assert!(path.len() <= 4, "{path:?}");
            // Wire -> home -> owner -> a hairpin's target: no hop twice (no forwards here).
            let hops: Vec<&[usize]> = path.windows(2).collect();
            prop_assert!(hops.iter().enumerate().all(|(i, h)| !hops[..i].contains(h)), "bounced: {path:?}");
            prop_assert!(!matches!(v, Verdict::HandOff { .. }), "ended in a hand-off: {:?}", v);
        }
    }
    /// Fragments of a few datagrams, each of its three at a worker of its
    /// own, in any order, holds small enough to fill: every frame, and
    /// every fragment released on the way, ends in a decision within the
    /// hops `nat::frag` allows (`run` panics past them), and nothing
    /// released is left for the worker to take.
    #[test]
    fn held_fragments_in_any_order_at_any_worker_end_and_never_bounce(
        fragment_hold in 1u32..4,
        arrivals in proptest::collection::vec((0usize..2, 0usize..4, 0u16..2, 0usize..3), 1..40),
    ) {
        let mut p = cgnat_params();
        p.fragment_hold = fragment_hold;
        let mut t = Two::with(p);
        let datagrams = four_datagrams(&mut t, 3000);
        for (at, which, ident, piece) in arrivals {
            let (side, whole) = &datagrams[which];
            let f = cut(whole, 1480, ident)[piece].clone();
            for (v, _) in t.run(at, *side, f) {
                prop_assert!(!matches!(v, Verdict::HandOff { .. }), "ended in a hand-off: {:?}", v);
            }
        }
        prop_assert_eq!(t.w[0].released() + t.w[1].released(), 0);
        prop_assert!(t.sum(|c| c.fragments_released) <= t.sum(|c| c.fragments_held));
    }
}
