//! The worker loop against the in-memory backend: translation, next hops,
//! hand-offs between workers, fragmentation, counters.

use super::*;
use crate::io::MemIo;
use crate::l2::SideL2;
use crate::nat::{subscriber_owner, EngineParams, PoolParams, Prefix, Rule, RuleAction, RuleMatch};
use crate::testing::frames::{checksums_ok, ip, ttl, tuple, udp};

const IN_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const OUT_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 1, 2];
const ROUTER_MAC: [u8; 6] = [2, 0, 0, 0, 2, 2];

fn l2() -> Arc<L2Table> {
    let inside = SideL2 {
        ifname: "in".into(),
        own_mac: IN_MAC,
        routes: vec![(Prefix::new(ip("100.64.0.0"), 10), 0)],
        neighbours: [(ip("100.64.0.2"), HOST_MAC), (ip("100.64.0.3"), HOST_MAC)].into_iter().collect(),
        static_mac: None,
        mtu: 0,
    };
    let outside = SideL2 {
        ifname: "out".into(),
        own_mac: OUT_MAC,
        routes: vec![(Prefix::new(0, 0), ip("203.0.113.2"))],
        neighbours: [(ip("203.0.113.2"), ROUTER_MAC)].into_iter().collect(),
        static_mac: None,
        mtu: 0,
    };
    Arc::new(L2Table { sides: [inside, outside] })
}

fn engine(worker: u16, workers: u16) -> Engine {
    let pool = PoolParams::cgnat("p", vec![ip("203.0.113.10")]);
    let rule = Rule { matches: RuleMatch::default(), action: RuleAction::Translate { pool: 0 } };
    let mut p = EngineParams::single(vec![pool], vec![rule]);
    (p.worker, p.workers) = (worker, workers);
    Engine::new(&p).expect("engine")
}

fn worker(id: usize, e: Option<Engine>, mesh: &Arc<Mesh>) -> Worker<MemIo> {
    Worker::new(id, MemIo::new(256, 2048), e, l2(), Arc::clone(mesh))
}

#[test]
fn a_frame_leaves_translated_with_the_next_hops_mac_and_no_frame_is_lost() {
    let mesh = Arc::new(Mesh::new(1, 8));
    let mut w = worker(0, Some(engine(0, 1)), &mesh);
    let free = w.io_mut().free_frames();
    assert!(w.io_mut().inject(Side::Inside, &udp(ip("100.64.0.2"), 4000, ip("198.51.100.1"), 53, b"q")));
    assert_eq!(w.round(1), 1);
    let sent = std::mem::take(&mut w.io_mut().tx[1]);
    assert_eq!(sent.len(), 1);
    assert_eq!(&sent[0][..12], &[ROUTER_MAC, OUT_MAC].concat()[..]);
    assert_eq!(tuple(&sent[0]).0, ip("203.0.113.10"));
    assert!(checksums_ok(&sent[0]));
    assert_eq!(w.counters().tx, [0, 1]);
    assert_eq!(w.io_mut().free_frames(), free, "every frame is back on the free stack after the flush");
}

#[test]
fn a_session_lists_as_assured_once_its_reply_came_back() {
    let mesh = Arc::new(Mesh::new(1, 8));
    let mut w = worker(0, Some(engine(0, 1)), &mesh);
    let assured =
        |w: &Worker<MemIo>| -> Vec<bool> { w.engine().expect("nat").sessions(2).map(|s| s.assured).collect() };
    assert!(w.io_mut().inject(Side::Inside, &udp(ip("100.64.0.2"), 4000, ip("198.51.100.1"), 53, b"q")));
    w.round(1);
    let (public, pport, _, _) = tuple(&w.io_mut().tx[1].pop().expect("sent outside"));
    assert_eq!(assured(&w), [false]);
    assert!(w.io_mut().inject(Side::Outside, &udp(ip("198.51.100.1"), 53, public, pport, b"r")));
    w.round(2);
    assert_eq!(w.io_mut().tx[0].len(), 1, "the reply went inside");
    assert_eq!(assured(&w), [true]);
}

#[test]
fn an_unresolved_next_hop_is_counted_reported_and_the_frame_freed() {
    let mesh = Arc::new(Mesh::new(1, 8));
    let (_l2_tx, l2_rx) = crossbeam_channel::bounded(1);
    let (un_tx, un_rx) = crossbeam_channel::bounded(4);
    let mut w = worker(0, None, &mesh).with_l2_channels(l2_rx, un_tx);
    // No-NAT mode: an outside frame to an inside host with no neighbour entry.
    assert!(w.io_mut().inject(Side::Outside, &udp(ip("198.51.100.1"), 53, ip("100.64.0.9"), 4000, b"r")));
    w.round(1);
    assert_eq!(w.counters().no_neighbour, [1, 0]);
    assert_eq!(un_rx.try_recv(), Ok((Side::Inside, ip("100.64.0.9"))));
    assert!(w.io_mut().tx.iter().all(Vec::is_empty));
    assert_eq!(w.io_mut().freed, 1);
    // Outside of every route: counted as no_route.
    assert!(w.io_mut().inject(Side::Outside, &udp(ip("198.51.100.1"), 53, ip("10.1.1.1"), 4000, b"r")));
    w.round(2);
    assert_eq!(w.counters().no_route, [1, 0]);
}

#[test]
fn a_new_table_from_the_control_thread_is_used_from_the_next_round() {
    let mesh = Arc::new(Mesh::new(1, 8));
    let (l2_tx, l2_rx) = crossbeam_channel::bounded(1);
    let (un_tx, _un_rx) = crossbeam_channel::bounded(4);
    let mut w = worker(0, None, &mesh).with_l2_channels(l2_rx, un_tx);
    let mut t = (*l2()).clone();
    t.sides[0].neighbours.insert(ip("100.64.0.9"), [2, 9, 9, 9, 9, 9]);
    l2_tx.send(Arc::new(t)).unwrap();
    assert!(w.io_mut().inject(Side::Outside, &udp(ip("198.51.100.1"), 53, ip("100.64.0.9"), 4000, b"r")));
    w.round(1);
    assert_eq!(&w.io_mut().tx[0][0][..6], &[2, 9, 9, 9, 9, 9]);
}

#[test]
fn a_reply_arriving_at_the_wrong_worker_is_handed_to_the_owner() {
    let mesh = Arc::new(Mesh::new(2, 8));
    // A subscriber owned by worker 1.
    let sub =
        (2..255).map(|i| ip("100.64.0.0") + i).find(|&a| subscriber_owner(a, 2) == 1).expect("one maps to worker 1");
    let mut w0 = worker(0, Some(engine(0, 2)), &mesh);
    let mut w1 = worker(1, Some(engine(1, 2)), &mesh);
    w1.l2 = {
        let mut t = (*l2()).clone();
        t.sides[0].neighbours.insert(sub, HOST_MAC);
        Arc::new(t)
    };
    // Its first packet reaches worker 1 and makes the mapping there.
    assert!(w1.io_mut().inject(Side::Inside, &udp(sub, 4000, ip("198.51.100.1"), 53, b"q")));
    w1.round(1);
    let out = w1.io_mut().tx[1].pop().expect("sent outside");
    let (public, pport, _, _) = tuple(&out);
    // The reply reaches worker 0 (as RSS might spread it): worker 0 hands it over.
    assert!(w0.io_mut().inject(Side::Outside, &udp(ip("198.51.100.1"), 53, public, pport, b"r")));
    w0.round(2);
    assert_eq!(w0.counters().handoff_out, 1);
    assert!(w0.io_mut().tx.iter().all(Vec::is_empty));
    w1.round(2);
    assert_eq!(w1.counters().handoff_in, 1);
    let back = w1.io_mut().tx[0].pop().expect("the owner sent it inside");
    assert_eq!(tuple(&back), (ip("198.51.100.1"), 53, sub, 4000));
    assert!(checksums_ok(&back));
}

#[test]
fn a_packet_too_big_for_the_outside_mtu_is_fragmented_unless_df() {
    let mesh = Arc::new(Mesh::new(1, 8));
    let mut w = worker(0, Some(engine(0, 1)), &mesh);
    let mut t = (*l2()).clone();
    t.sides[1].mtu = 1400;
    w.l2 = Arc::new(t);
    let free = w.io_mut().free_frames();
    let mut big = udp(ip("100.64.0.2"), 4000, ip("198.51.100.1"), 53, &[5u8; 1800]);
    big[20] &= !0x40; // DF clear
    assert!(w.io_mut().inject(Side::Inside, &big));
    w.round(1);
    let sent = std::mem::take(&mut w.io_mut().tx[1]);
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|f| f.len() - 14 <= 1400 && f[..12] == [ROUTER_MAC, OUT_MAC].concat()[..]));
    assert_eq!(tuple(&sent[0]).0, ip("203.0.113.10"), "translated before it was cut");
    assert_eq!(sent.iter().map(|f| f.len() - 34).sum::<usize>(), 8 + 1800);
    assert_eq!(w.counters().fragmented, [0, 1]);
    assert_eq!(w.io_mut().free_frames(), free);
    // DF set: not cut, counted (the XDP program gives these to the kernel first).
    let df = udp(ip("100.64.0.2"), 4000, ip("198.51.100.1"), 53, &[5u8; 1800]);
    assert!(w.io_mut().inject(Side::Inside, &df));
    w.round(2);
    assert!(w.io_mut().tx[1].is_empty());
    assert_eq!(w.counters().too_big, [0, 1]);
}

#[test]
fn a_full_hand_off_queue_drops_and_counts() {
    let mesh = Arc::new(Mesh::new(2, 1));
    let mut w0 = worker(0, None, &mesh);
    w0.engine = None;
    let d = w0.io_mut().alloc(60).expect("frame");
    w0.hand_off(1, Side::Outside, d);
    w0.hand_off(1, Side::Outside, d);
    assert_eq!((w0.counters().handoff_out, w0.counters().handoff_queue_full), (1, 1));
}

#[test]
#[allow(clippy::cast_possible_truncation)] // test frames of a few bytes
fn a_hand_off_that_cannot_be_made_is_counted_by_reason_and_fragments_among_them() {
    use crate::testing::frames::frame_frag;
    let mesh = Arc::new(Mesh::new(2, 1));
    let (mut w0, mut w1) = (worker(0, None, &mesh), worker(1, None, &mesh));
    let put = |w: &mut Worker<MemIo>, f: &[u8]| {
        let d = w.io_mut().alloc(f.len() as u32).expect("frame");
        w.io_mut().with_views(&[d], |v| v.first_mut().map(|x| x.copy_from_slice(f)));
        d
    };
    let (remote, public) = (ip("198.51.100.1"), ip("203.0.113.10"));
    let frag = frame_frag(remote, public, 17, &[7; 100], 64, 9, 0x2000);
    let jumbo = udp(remote, 53, public, 4000, &[7; 1600]);
    let jumbo_frag = frame_frag(remote, public, 17, &[7; 1600], 64, 9, 0x2000);
    let c = |w: &Worker<MemIo>| {
        let c = w.counters();
        [c.handoff_no_queue, c.handoff_too_big, c.handoff_queue_full, c.handoff_no_frame, c.fragment_handoff_dropped]
    };
    // To no such worker.
    let d = put(&mut w0, &frag);
    w0.hand_off(5, Side::Outside, d);
    assert_eq!(c(&w0), [1, 0, 0, 0, 1]);
    // Longer than HANDOFF_MAX (a jumbo MTU's frame), fragment or not.
    for f in [&jumbo, &jumbo_frag] {
        let d = put(&mut w0, f);
        w0.hand_off(1, Side::Outside, d);
    }
    assert_eq!(c(&w0), [1, 2, 0, 0, 2]);
    // The owner's queue (one frame deep) full.
    for _ in 0..2 {
        let d = put(&mut w0, &frag);
        w0.hand_off(1, Side::Outside, d);
    }
    assert_eq!(c(&w0), [1, 2, 1, 0, 3]);
    // No free frame at the owner to take the queued one in.
    while w1.io_mut().alloc(64).is_some() {}
    w1.take_handoffs(1);
    assert_eq!(c(&w1), [0, 0, 0, 1, 1]);
    assert_eq!(w0.counters().handoff_dropped() + w1.counters().handoff_dropped(), 5);
}

/// An engine whose subscribers may hold one session, answering refusals
/// from the box's inside address.
fn limited_engine() -> Engine {
    let mut pool = PoolParams::cgnat("p", vec![ip("203.0.113.10")]);
    pool.max_sessions_per_subscriber = 1;
    let rule = Rule { matches: RuleMatch::default(), action: RuleAction::Translate { pool: 0 } };
    let mut p = EngineParams::single(vec![pool], vec![rule]);
    p.icmp_source = Some(ip("100.64.0.1"));
    Engine::new(&p).expect("engine")
}

#[test]
fn a_refused_subscriber_is_sent_host_unreachable_on_the_inside() {
    let mesh = Arc::new(Mesh::new(1, 8));
    let mut w = worker(0, Some(limited_engine()), &mesh);
    let free = w.io_mut().free_frames();
    let sub = ip("100.64.0.2");
    assert!(w.io_mut().inject(Side::Inside, &udp(sub, 4000, ip("198.51.100.1"), 53, b"q")));
    let refused = udp(sub, 4001, ip("198.51.100.1"), 53, b"second flow");
    assert!(w.io_mut().inject(Side::Inside, &refused));
    w.round(1);
    let out = std::mem::take(&mut w.io_mut().tx[1]);
    let back = std::mem::take(&mut w.io_mut().tx[0]);
    assert_eq!((out.len(), back.len()), (1, 1), "the first flow out, an error back in");
    let err = &back[0];
    assert_eq!(&err[..12], &[HOST_MAC, IN_MAC].concat()[..], "to the subscriber's MAC from the inside one");
    assert!(checksums_ok(err));
    let ip4 = crate::wire::ipv4::Ipv4Packet::new_checked(&err[14..]).expect("IPv4");
    assert_eq!((ip4.src(), ip4.dst()), (ip("100.64.0.1"), sub));
    let icmp = crate::wire::icmp::IcmpPacket::new_checked(ip4.payload()).expect("ICMP");
    assert_eq!((icmp.msg_type(), icmp.code()), (3, 1));
    assert_eq!(icmp.embedded(), &refused[14..], "the refused packet, quoted whole");
    assert_eq!((w.counters().icmp_unreachable_sent, w.counters().icmp_unreachable_failed), (1, 0));
    assert_eq!(w.counters().tx, [1, 1]);
    let e = w.engine().expect("nat").counters();
    assert_eq!(e.drop_count(crate::nat::DropReason::SubscriberSessionLimit), 1);
    assert_eq!(w.io_mut().free_frames(), free, "the refused frame and the error's frame are back");
}

#[test]
fn an_error_with_no_next_hop_is_counted_reported_and_its_frame_given_back() {
    let mesh = Arc::new(Mesh::new(1, 8));
    let (_l2_tx, l2_rx) = crossbeam_channel::bounded(1);
    let (un_tx, un_rx) = crossbeam_channel::bounded(4);
    let mut w = worker(0, Some(limited_engine()), &mesh).with_l2_channels(l2_rx, un_tx);
    let free = w.io_mut().free_frames();
    let sub = ip("100.64.0.9"); // no neighbour entry
    assert!(w.io_mut().inject(Side::Inside, &udp(sub, 4000, ip("198.51.100.1"), 53, b"q")));
    assert!(w.io_mut().inject(Side::Inside, &udp(sub, 4001, ip("198.51.100.1"), 53, b"q")));
    w.round(1);
    assert!(w.io_mut().tx[0].is_empty());
    assert_eq!((w.counters().icmp_unreachable_sent, w.counters().icmp_unreachable_failed), (0, 1));
    assert_eq!(un_rx.try_recv(), Ok((Side::Inside, sub)), "the control thread is asked to resolve it");
    assert_eq!(w.io_mut().free_frames(), free);
}

#[test]
fn a_census_names_the_pools_in_the_engines_numbering() {
    let mesh = Arc::new(Mesh::new(1, 8));
    let (tx, rx) = crossbeam_channel::bounded(4);
    let mut w = worker(0, Some(limited_engine()), &mesh).with_commands(rx);
    let (reply, answer) = crossbeam_channel::bounded(1);
    tx.send(Command::Census { from_slot: 0, reply }).expect("queued");
    w.round(1);
    let census = answer.try_recv().expect("answered in the round").part;
    assert_eq!(census.pools, ["p"]);
}

#[test]
fn a_hairpinned_df_packet_too_big_for_the_inside_gets_fragmentation_needed() {
    let mesh = Arc::new(Mesh::new(1, 8));
    let mut w = worker(0, Some(engine(0, 1)), &mesh);
    let mut t = (*l2()).clone();
    t.sides[0].mtu = 1400;
    w.l2 = Arc::new(t);
    let free = w.io_mut().free_frames();
    let (a, b) = (ip("100.64.0.2"), ip("100.64.0.3"));
    // B's mapping, then A reaches it through the public address, DF set.
    assert!(w.io_mut().inject(Side::Inside, &udp(b, 5000, ip("198.51.100.1"), 3478, b"stun")));
    w.round(1);
    let (public, pb, _, _) = tuple(&w.io_mut().tx[1].pop().expect("B's packet out"));
    let big = udp(a, 4000, public, pb, &[5u8; 1800]);
    assert!(w.io_mut().inject(Side::Inside, &big));
    w.round(2);
    let back = std::mem::take(&mut w.io_mut().tx[0]);
    assert_eq!(back.len(), 1, "only the error: the packet itself is not sent");
    let err = &back[0];
    assert_eq!(&err[..12], &[HOST_MAC, IN_MAC].concat()[..]);
    assert!(checksums_ok(err));
    let ip4 = crate::wire::ipv4::Ipv4Packet::new_checked(&err[14..]).expect("IPv4");
    assert_eq!((ip4.src(), ip4.dst()), (public, a), "from the public address A sent to");
    let icmp = crate::wire::icmp::IcmpPacket::new_checked(ip4.payload()).expect("ICMP");
    assert_eq!((icmp.msg_type(), icmp.code()), (3, 4));
    assert_eq!(crate::wire::bytes::u16_at(ip4.payload(), crate::wire::icmp::NEXT_HOP_MTU), 1400);
    // The quote is A's packet as A sent it (TTL one lower), checksums right.
    let quoted = icmp.embedded();
    let at = |o: usize| crate::wire::bytes::u32_at(quoted, o);
    assert_eq!((at(12), at(16)), (a, public), "truncated quote: read by hand");
    assert_eq!(crate::wire::checksum::checksum(&quoted[..20]), 0, "quoted header checksum");
    assert_eq!(&quoted[20..24], &big[34..38], "ports as sent");
    assert_eq!(&quoted[24..28], &big[38..42], "length and UDP checksum as sent");
    assert_eq!(w.counters().too_big, [1, 0]);
    assert_eq!((w.counters().icmp_frag_needed_sent, w.counters().icmp_frag_needed_failed), (1, 0));
    assert_eq!(w.io_mut().free_frames(), free);
}

/// A packet the FTP ALG lengthens past its frame (an EPRT naming a longer
/// public address) leaves whole: the worker copies the engine's grown
/// packet into the frame's room and sends the longer frame.
#[test]
fn a_packet_the_ftp_alg_lengthens_leaves_whole_from_its_frame() {
    use crate::testing::frames::{frame, tcp_segment_at};
    use crate::wire::tcp::{ACK, PSH, SYN};
    let mesh = Arc::new(Mesh::new(1, 8));
    let pool = PoolParams::cgnat("p", vec![ip("203.0.113.10")]);
    let rule = Rule { matches: RuleMatch::default(), action: RuleAction::Translate { pool: 0 } };
    let mut p = EngineParams::single(vec![pool], vec![rule]);
    p.rule_options = vec![crate::nat::RuleOptions { ftp_alg: true, ..Default::default() }];
    let mut w = worker(0, Some(Engine::new(&p).expect("engine")), &mesh);
    let (c, s) = (ip("100.64.0.2"), ip("198.51.100.1"));
    let seg = |src, sp, dst, dp, flags, sa: (u32, u32), data: &[u8]| {
        frame(src, dst, 6, &tcp_segment_at(src, sp, dst, dp, flags, (sa.0, sa.1, 64_000), &[], data), 64)
    };
    assert!(w.io_mut().inject(Side::Inside, &seg(c, 40000, s, 21, SYN, (100, 0), b"")));
    w.round(1);
    let syn = std::mem::take(&mut w.io_mut().tx[1]).pop().expect("the SYN left");
    let (pub_ip, pub_port, ..) = tuple(&syn);
    assert!(w.io_mut().inject(Side::Outside, &seg(s, 21, pub_ip, pub_port, SYN | ACK, (5000, 101), b"")));
    assert!(w.io_mut().inject(Side::Inside, &seg(c, 40000, s, 21, ACK, (101, 5001), b"")));
    w.round(1);
    let cmd = b"EPRT |1|100.64.0.2|40001|\r\n";
    let f = seg(c, 40000, s, 21, ACK | PSH, (101, 5001), cmd);
    assert!(w.io_mut().inject(Side::Inside, &f));
    w.round(1);
    let sent = std::mem::take(&mut w.io_mut().tx[1]);
    let out = sent.last().expect("the EPRT left");
    let want = b"EPRT |1|203.0.113.10|";
    assert_eq!(&out[54..54 + want.len()], want, "{:?}", String::from_utf8_lossy(&out[54..]));
    assert!(out.len() > f.len(), "a longer frame: {} bytes from {}", out.len(), f.len());
    assert!(out.ends_with(b"|\r\n") && checksums_ok(out), "whole, checksums right");
    assert_eq!(&out[..12], &[ROUTER_MAC, OUT_MAC].concat()[..], "with its next hop's MAC");
    assert_eq!(w.counters().grown_dropped, 0);
}

/// Two workers over a pool of two addresses, every 100.64.0.x a neighbour:
/// hosts on either worker, on either address.
fn two_workers_two_addresses() -> [Worker<MemIo>; 2] {
    let mesh = Arc::new(Mesh::new(2, 8));
    let mut t = (*l2()).clone();
    for i in 2..250 {
        t.sides[0].neighbours.insert(ip("100.64.0.0") + i, HOST_MAC);
    }
    let t = Arc::new(t);
    [0, 1].map(|id| {
        let pool = PoolParams::cgnat("p", vec![ip("203.0.113.10"), ip("203.0.113.11")]);
        let rule = Rule { matches: RuleMatch::default(), action: RuleAction::Translate { pool: 0 } };
        let mut p = EngineParams::single(vec![pool], vec![rule]);
        (p.worker, p.workers) = (id, 2);
        let mut w = worker(usize::from(id), Some(Engine::new(&p).expect("engine")), &mesh);
        w.l2 = Arc::clone(&t);
        w
    })
}

fn rounds(w: &mut [Worker<MemIo>; 2], now: u32) {
    for _ in 0..3 {
        w[0].round(now);
        w[1].round(now);
    }
}

#[test]
fn an_echo_hairpin_reaches_a_host_on_the_other_worker_and_its_reply_comes_back() {
    use crate::testing::frames::icmp_echo;
    let mut w = two_workers_two_addresses();
    let remote = ip("198.51.100.1");
    let hosts = |owner| (2..250).map(|i| ip("100.64.0.0") + i).filter(move |&a| subscriber_owner(a, 2) == owner);
    // B, on worker 1, pings outside: its echo mapping lives there.
    let b = hosts(1).next().expect("a host of worker 1");
    assert!(w[1].io_mut().inject(Side::Inside, &icmp_echo(b, remote, 77, 1, true)));
    rounds(&mut w, 1);
    let (b_pub, b_id, ..) = tuple(&w[1].io_mut().tx[1].pop().expect("B's ping left"));
    // A, on worker 0, on the other public address (one address cannot
    // hairpin an echo: both ends would have one key).
    let a = hosts(0)
        .find(|&a| {
            assert!(w[0].io_mut().inject(Side::Inside, &udp(a, 5000, remote, 53, b"q")));
            rounds(&mut w, 1);
            tuple(&w[0].io_mut().tx[1].pop().expect("A's datagram left")).0 != b_pub
        })
        .expect("a host of worker 0 on the other address");
    let a_pub = if b_pub == ip("203.0.113.10") { ip("203.0.113.11") } else { ip("203.0.113.10") };
    // A's request to B's public address and identifier reaches worker 0 (RSS).
    assert!(w[0].io_mut().inject(Side::Inside, &icmp_echo(a, b_pub, b_id, 9, true)));
    rounds(&mut w, 2);
    assert!(w[0].io_mut().tx[1].is_empty() && w[1].io_mut().tx[1].is_empty(), "nothing went outside");
    let req = w[1].io_mut().tx[0].pop().expect("B got the request");
    assert_eq!(tuple(&req), (a_pub, 77, b, 77), "from A's public address, with B's own identifier");
    assert!(checksums_ok(&req));
    // B's reply reaches worker 0 as well: it goes to worker 1, and back to A.
    assert!(w[0].io_mut().inject(Side::Inside, &icmp_echo(b, a_pub, 77, 9, false)));
    rounds(&mut w, 3);
    let rep = w[1].io_mut().tx[0].pop().expect("A got the reply");
    assert_eq!(tuple(&rep), (b_pub, b_id, a, b_id), "from B's public address, with the identifier A sent");
    assert!(checksums_ok(&rep));
    assert_eq!(ttl(&rep), 63, "the TTL drops once");
    assert_eq!((w[0].counters().handoff_out, w[1].counters().handoff_in), (2, 2));
    assert_eq!(w[0].counters().handoff_dropped() + w[1].counters().handoff_dropped(), 0);
}

#[test]
fn gre_on_one_public_address_and_remote_is_one_hosts_box_wide_and_its_answers_reach_it() {
    use crate::nat::DropReason;
    use crate::testing::frames::frame;
    let mesh = Arc::new(Mesh::new(2, 8));
    let mut t = (*l2()).clone();
    for i in 2..250 {
        t.sides[0].neighbours.insert(ip("100.64.0.0") + i, HOST_MAC);
    }
    let t = Arc::new(t);
    // One public address: every subscriber of either worker shares it.
    let mut w = [0u16, 1].map(|id| {
        let mut x = worker(usize::from(id), Some(engine(id, 2)), &mesh);
        x.l2 = Arc::clone(&t);
        x
    });
    let (public, remote) = (ip("203.0.113.10"), ip("198.51.100.1"));
    let host = |owner| (2..250).map(|i| ip("100.64.0.0") + i).find(|&a| subscriber_owner(a, 2) == owner);
    let (a, b) = (host(0).expect("a host of worker 0"), host(1).expect("a host of worker 1"));
    let gre = |src, dst| frame(src, dst, 47, &[0, 0, 0x08, 0, 0x45, 0, 0, 20], 64);
    let sent = |w: &mut [Worker<MemIo>; 2], side: usize| -> Vec<Vec<u8>> {
        w.iter_mut().flat_map(|x| std::mem::take(&mut x.io_mut().tx[side])).collect()
    };
    // A's tunnel, off the wire at A's worker.
    assert!(w[0].io_mut().inject(Side::Inside, &gre(a, remote)));
    rounds(&mut w, 1);
    let out = sent(&mut w, 1);
    assert_eq!(out.len(), 1, "A's GRE left");
    assert_eq!(tuple(&out[0]).0, public);
    // B, on the other worker, would take (public, remote, GRE) too: refused.
    assert!(w[1].io_mut().inject(Side::Inside, &gre(b, remote)));
    rounds(&mut w, 2);
    assert!(sent(&mut w, 1).is_empty(), "B's GRE did not leave");
    let busy: u64 =
        w.iter().filter_map(|x| x.engine()).map(|e| e.counters().drop_count(DropReason::OtherProtoBusy)).sum();
    assert_eq!(busy, 1);
    // The remote's answers, off the wire at either worker, reach A.
    for x in &mut w {
        assert!(x.io_mut().inject(Side::Outside, &gre(remote, public)));
    }
    rounds(&mut w, 3);
    let back = sent(&mut w, 0);
    assert_eq!(back.len(), 2, "both answers came in");
    assert!(back.iter().all(|f| tuple(f).2 == a && checksums_ok(f)), "to A");
    let handed: u64 = w.iter().filter_map(|x| x.engine()).map(|e| e.counters().other_proto_handoffs).sum();
    assert!(handed >= 1, "one of the answers went to the home");
    assert_eq!(w[0].counters().handoff_dropped() + w[1].counters().handoff_dropped(), 0);
}
