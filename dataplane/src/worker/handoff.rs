//! Hand-offs: a frame whose session another worker owns goes to that
//! worker through a bounded single-producer, single-consumer queue, as a
//! copy (frames never cross workers' UMEMs), with the side it arrived on.
//!
//! Invariants: a hand-off that cannot be queued is dropped and counted by
//! reason (`handoff_no_queue`, `handoff_too_big`: a frame over
//! [`HANDOFF_MAX`], so a jumbo MTU's frames cannot cross workers;
//! `handoff_queue_full`; `handoff_no_frame`: none free at the owner), and a
//! fragment among them once more (`fragment_handoff_dropped`);
//! a round takes at most a batch from each peer's queue; the engine knows
//! the frames it runs from these queues were handed over
//! ([`crate::nat::Engine::set_handed_off`]), which bounds how often a
//! fragment crosses cores (`nat::frag`).

use super::Worker;
use crate::io::{Desc, FrameIo, BATCH};
use crate::nat::Side;
use crate::wire::ethernet::{EthernetFrame, ETHERTYPE_IPV4};
use crate::wire::ipv4::Ipv4Packet;
use crate::xdp::Wake;
use crossbeam_queue::ArrayQueue;
use std::sync::Arc;

/// Largest frame a hand-off carries (MTU 1500 + Ethernet + one VLAN tag, rounded).
pub const HANDOFF_MAX: usize = 1536;

/// A frame on its way to the worker that owns its session.
#[derive(Clone)]
pub struct HandOff {
    /// The side the frame arrived on: the owner processes it as arriving there.
    arrived_on: Side,
    len: u16,
    bytes: [u8; HANDOFF_MAX],
}

/// The bounded hand-off queues between every pair of workers (one
/// single-producer, single-consumer queue per ordered pair), and each
/// worker's [`Wake`], which a hand-off or a control request
/// ([`super::CommandTx`]) writes when the worker sleeps.
pub struct Mesh {
    workers: usize,
    queues: Vec<ArrayQueue<HandOff>>,
    /// `None` where no eventfd could be opened: that worker sleeps short.
    wakes: Vec<Option<Wake>>,
}

impl Mesh {
    /// Queues for `workers` workers, `depth` frames each.
    pub fn new(workers: usize, depth: usize) -> Self {
        let queues = (0..workers * workers).map(|_| ArrayQueue::new(depth.max(1))).collect();
        let wakes = (0..workers).map(|_| Wake::new().ok()).collect();
        Self { workers, queues, wakes }
    }
    fn queue(&self, from: usize, to: usize) -> Option<&ArrayQueue<HandOff>> {
        self.queues.get(to * self.workers + from)
    }
    /// Worker `w`'s wake-up, if it has one.
    pub fn wake_of(&self, w: usize) -> Option<&Wake> {
        self.wakes.get(w).and_then(Option::as_ref)
    }
    /// Wakes worker `to` if it sleeps (after a message was put in for it).
    pub fn wake(&self, to: usize) {
        if let Some(w) = self.wake_of(to) {
            w.wake();
        }
    }
    /// The queues from every other worker to worker `to`.
    fn queues_to(&self, to: usize) -> impl Iterator<Item = &ArrayQueue<HandOff>> {
        (0..self.workers).filter(move |&f| f != to).filter_map(move |f| self.queue(f, to))
    }
    /// True if another worker has handed worker `to` a frame not yet taken.
    pub(super) fn has_handoffs(&self, to: usize) -> bool {
        self.queues_to(to).any(|q| !q.is_empty())
    }
}

impl<I: FrameIo> Worker<I> {
    pub(super) fn hand_off(&mut self, to: usize, arrived_on: Side, d: Desc) {
        if self.mesh.queue(self.id, to).is_none() {
            self.counters.handoff_no_queue += 1;
            self.count_dropped_fragment(d);
            return;
        }
        let len = match u16::try_from(d.len()) {
            Ok(len) if usize::from(len) <= HANDOFF_MAX => len,
            _ => {
                self.counters.handoff_too_big += 1;
                self.count_dropped_fragment(d);
                return;
            }
        };
        let mut msg = HandOff { arrived_on, len, bytes: [0; HANDOFF_MAX] };
        self.io.with_views(&[d], |v| {
            if let (Some(dst), Some(src)) = (msg.bytes.get_mut(..usize::from(len)), v.first()) {
                dst.copy_from_slice(src);
            }
        });
        let Some(q) = self.mesh.queue(self.id, to) else {
            self.counters.handoff_no_queue += 1;
            self.count_dropped_fragment(d);
            return;
        };
        if let Err(msg) = q.push(msg) {
            self.counters.handoff_queue_full += 1;
            if is_fragment(msg.bytes.get(..usize::from(msg.len)).unwrap_or(&[])) {
                self.counters.fragment_handoff_dropped += 1;
            }
        } else {
            self.counters.handoff_out += 1;
            self.mesh.wake(to);
        }
    }

    /// Takes at most a batch of frames from each other worker's queue (the
    /// rest waits for the next round, so a round's work stays bounded).
    pub(super) fn take_handoffs(&mut self, now: u32) -> usize {
        let mut total = 0;
        let mesh = Arc::clone(&self.mesh);
        for q in mesh.queues_to(self.id) {
            let mut n = 0;
            let mut arrived_on = Side::Inside;
            for _ in 0..BATCH {
                let Some(msg) = q.pop() else { break };
                if n > 0 && msg.arrived_on != arrived_on {
                    // A batch is of one side: run what is gathered first.
                    self.run_handoff_batch(arrived_on, now, n);
                    total += n;
                    n = 0;
                }
                arrived_on = msg.arrived_on;
                let Some(d) = self.io.alloc(u32::from(msg.len)) else {
                    self.counters.handoff_no_frame += 1;
                    if is_fragment(msg.bytes.get(..usize::from(msg.len)).unwrap_or(&[])) {
                        self.counters.fragment_handoff_dropped += 1;
                    }
                    continue;
                };
                let len = usize::from(msg.len);
                self.io.with_views(&[d], |v| {
                    if let (Some(dst), Some(src)) = (v.first_mut(), msg.bytes.get(..len)) {
                        dst.copy_from_slice(src);
                    }
                });
                let Some(slot) = self.descs.get_mut(n) else {
                    self.io.free(d);
                    break;
                };
                *slot = d;
                n += 1;
            }
            if n > 0 {
                self.run_handoff_batch(arrived_on, now, n);
                total += n;
            }
        }
        total
    }

    /// Counts `d`, a hand-off being dropped, among the fragments if it is one.
    #[cold]
    fn count_dropped_fragment(&mut self, d: Desc) {
        if self.io.with_views(&[d], |v| v.first().is_some_and(|f| is_fragment(f))) {
            self.counters.fragment_handoff_dropped += 1;
        }
    }

    fn run_handoff_batch(&mut self, arrived_on: Side, now: u32, n: usize) {
        self.counters.handoff_in += n as u64;
        // The engine must know: a fragment handed over is never sent to its
        // fragment home again (`nat::frag`), so none bounces between workers.
        if let Some(e) = self.engine.as_mut() {
            e.set_handed_off(true);
        }
        self.batch(arrived_on, now, n);
        if let Some(e) = self.engine.as_mut() {
            e.set_handed_off(false);
        }
    }
}

/// True if `frame` (Ethernet, one optional VLAN tag) carries an IPv4 fragment.
fn is_fragment(frame: &[u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(frame) else { return false };
    eth.ethertype() == ETHERTYPE_IPV4
        && frame
            .get(eth.header_len()..)
            .and_then(|ip| Ipv4Packet::new_checked(ip).ok())
            .is_some_and(|ip| ip.is_fragment())
}

#[cfg(test)]
mod tests {
    //! The hand-off queues with fragments: a datagram whose fragments reach
    //! the wrong workers still leaves whole, and nothing bounces.
    use super::*;
    use crate::io::MemIo;
    use crate::l2::{L2Table, SideL2};
    use crate::nat::frag::{outside_home, FragKey};
    use crate::nat::{subscriber_owner, Engine, EngineParams, PoolParams, Prefix, Rule, RuleAction, RuleMatch};
    use crate::testing::frames::{frame_frag, ip, tuple, udp, udp_segment};
    use crate::worker::Worker;

    const SEED: u64 = 0x5eed;

    fn l2(sub: u32) -> Arc<L2Table> {
        let side = |ifname: &str, routes, neighbours: Vec<(u32, [u8; 6])>| SideL2 {
            ifname: ifname.into(),
            own_mac: [2, 0, 0, 0, 1, 1],
            routes,
            neighbours: neighbours.into_iter().collect(),
            static_mac: None,
            mtu: 0,
        };
        let router = ip("203.0.113.2");
        let inside = side("in", vec![(Prefix::new(ip("100.64.0.0"), 10), 0)], vec![(sub, [2, 0, 0, 0, 1, 2])]);
        let outside = side("out", vec![(Prefix::new(0, 0), router)], vec![(router, [2, 0, 0, 0, 2, 2])]);
        Arc::new(L2Table { sides: [inside, outside] })
    }

    fn worker(id: u16, mesh: &Arc<Mesh>, sub: u32) -> Worker<MemIo> {
        let pool = PoolParams::cgnat("p", vec![ip("203.0.113.10")]);
        let rule = Rule { matches: RuleMatch::default(), action: RuleAction::Translate { pool: 0 } };
        let mut p = EngineParams::single(vec![pool], vec![rule]);
        (p.worker, p.workers, p.seed) = (id, 2, SEED);
        let e = Engine::new(&p).expect("engine");
        Worker::new(usize::from(id), MemIo::new(256, 2048), Some(e), l2(sub), Arc::clone(mesh))
    }

    #[test]
    fn a_frame_or_a_request_for_a_sleeping_worker_wakes_it() {
        let mesh = Arc::new(Mesh::new(2, 64));
        let sub = (2..255).map(|i| ip("100.64.0.0") + i).find(|&a| subscriber_owner(a, 2) == 1).expect("one");
        let (cmd_tx, cmd_rx) = crossbeam_channel::bounded(4);
        let mut w = [worker(0, &mesh, sub), worker(1, &mesh, sub).with_commands(cmd_rx)];
        let wake = mesh.wake_of(1).expect("an eventfd");
        // Worker 1 goes to sleep with nothing queued; while it sleeps the
        // subscriber's first packet comes in at worker 0, which hands it to
        // its owner: the hand-off writes worker 1's eventfd.
        let slept = wake.sleep_unless(
            &mut w,
            |w| w[1].has_input(),
            |w, _| {
                assert!(w[0].io_mut().inject(Side::Inside, &udp(sub, 4000, ip("198.51.100.1"), 7, b"q")));
                w[0].round(1);
                assert_eq!(w[0].counters().handoff_out, 1);
                wake.written_within(0)
            },
        );
        assert!(slept, "the hand-off did not write worker 1's eventfd");
        assert!(w[1].has_input(), "worker 1 sees the frame");
        w[1].round(1);
        assert!(!w[1].has_input());
        // A control request, likewise; a worker awake is not written to.
        let tx = crate::worker::CommandTx::new(cmd_tx, Arc::clone(&mesh), 1);
        let census = || {
            let (reply, answer) = crossbeam_channel::bounded(1);
            (crate::worker::Command::Census { from_slot: 0, reply }, answer)
        };
        let (c, _answer) = census();
        tx.send(c).expect("queued");
        assert!(!wake.written_within(0), "awake: no write");
        assert!(w[1].has_input());
        assert!(!wake.sleep_unless(&mut w, |w| w[1].has_input(), |_, _| panic!("slept with a request waiting")));
        w[1].round(1);
        let (c, _answer) = census();
        let slept = wake.sleep_unless(
            &mut w,
            |w| w[1].has_input(),
            |_, _| {
                tx.send(c).expect("queued");
                wake.written_within(0)
            },
        );
        assert!(slept, "the request did not write worker 1's eventfd");
    }

    #[test]
    #[allow(clippy::indexing_slicing, clippy::cast_possible_truncation)] // test frames built to size
    fn a_reply_whose_fragments_all_reach_the_owner_off_its_home_leaves_whole() {
        let mesh = Arc::new(Mesh::new(2, 64));
        let sub = (2..255).map(|i| ip("100.64.0.0") + i).find(|&a| subscriber_owner(a, 2) == 1).expect("one");
        let mut w = [worker(0, &mesh, sub), worker(1, &mesh, sub)];
        assert!(w[1].io_mut().inject(Side::Inside, &udp(sub, 4000, ip("198.51.100.1"), 7, b"q")));
        w[1].round(1);
        let (public, pport, _, _) = tuple(&w[1].io_mut().tx[1].pop().expect("sent outside"));
        // A reply datagram whose fragment home is worker 0; every fragment
        // comes off the wire at worker 1, the owner.
        let remote = ip("198.51.100.1");
        let ident = (0..64)
            .find(|&i| outside_home(SEED, FragKey { src: remote, dst: public, ip_proto: 17, ident: i }, 2) == 0)
            .expect("a datagram homed at worker 0");
        let seg = udp_segment(remote, 7, public, pport, &[9; 2000]);
        let frags = [
            frame_frag(remote, public, 17, &seg[..1000], 64, ident, 0x2000),
            frame_frag(remote, public, 17, &seg[1000..], 64, ident, 1000 / 8),
        ];
        for f in &frags {
            assert!(w[1].io_mut().inject(Side::Outside, f));
        }
        for now in 2..8 {
            w[1].round(now);
            w[0].round(now);
        }
        let got = std::mem::take(&mut w[1].io_mut().tx[0]);
        assert_eq!(got.len(), 2, "both fragments reached the subscriber");
        assert!(got.iter().all(|f| f[30..34] == sub.to_be_bytes()));
        assert_eq!(&got[0][34..38], &[0, 7, 0x0f, 0xa0], "the first carries the inside port 4000");
        // Each fragment: 1 -> 0 (its home) -> 1 (the owner), once.
        assert_eq!((w[1].counters().handoff_out, w[0].counters().handoff_out), (2, 2));
        assert_eq!(w[0].counters().handoff_dropped() + w[1].counters().handoff_dropped(), 0);
    }

    #[test]
    #[allow(clippy::indexing_slicing, clippy::cast_possible_truncation)] // test frames built to size
    fn a_reply_whose_later_fragments_come_first_is_held_at_its_home_and_follows_its_first() {
        let mesh = Arc::new(Mesh::new(2, 64));
        let sub = (2..255).map(|i| ip("100.64.0.0") + i).find(|&a| subscriber_owner(a, 2) == 1).expect("one");
        let mut w = [worker(0, &mesh, sub), worker(1, &mesh, sub)];
        assert!(w[1].io_mut().inject(Side::Inside, &udp(sub, 4000, ip("198.51.100.1"), 7, b"q")));
        w[1].round(1);
        let (public, pport, _, _) = tuple(&w[1].io_mut().tx[1].pop().expect("sent outside"));
        // Homed at worker 0, owned by worker 1: the held fragments are
        // released at the home and handed to the owner after the first.
        let remote = ip("198.51.100.1");
        let ident = (0..64)
            .find(|&i| outside_home(SEED, FragKey { src: remote, dst: public, ip_proto: 17, ident: i }, 2) == 0)
            .expect("a datagram homed at worker 0");
        let seg = udp_segment(remote, 7, public, pport, &[9; 2400]);
        let frag = |at: usize, end: usize| {
            let more = if end < seg.len() { 0x2000 } else { 0 };
            frame_frag(remote, public, 17, &seg[at..end], 64, ident, more | (at / 8) as u16)
        };
        // The last, then the middle, come off the wire at worker 1 before the first.
        for f in [frag(1600, seg.len()), frag(800, 1600)] {
            assert!(w[1].io_mut().inject(Side::Outside, &f));
        }
        // (Within the hold's time: `timeouts.fragment_secs`, 2 s.)
        for _ in 0..2 {
            w[1].round(2);
            w[0].round(2);
        }
        assert!(w[1].io_mut().tx[0].is_empty(), "nothing reaches the subscriber before the first fragment");
        assert_eq!(w[0].engine().map(|e| e.counters().fragments_held), Some(2));
        assert!(w[1].io_mut().inject(Side::Outside, &frag(0, 800)));
        for _ in 0..3 {
            w[1].round(3);
            w[0].round(3);
        }
        let got = std::mem::take(&mut w[1].io_mut().tx[0]);
        assert_eq!(got.len(), 3, "every fragment reached the subscriber");
        assert!(got.iter().all(|f| f[30..34] == sub.to_be_bytes()));
        assert_eq!(&got[0][34..38], &[0, 7, 0x0f, 0xa0], "the first leaves first, with the inside port 4000");
        let offsets: Vec<u16> = got.iter().map(|f| u16::from_be_bytes([f[20], f[21]]) & 0x1fff).collect();
        assert_eq!(offsets, [0, 200, 100], "the held ones after it, in the order they came");
        assert_eq!(w[0].engine().map(|e| e.counters().fragments_released), Some(2));
        assert_eq!(w[0].counters().fragment_release_failed + w[1].counters().handoff_dropped(), 0);
        let frames = w[0].io_mut().free_frames();
        w[0].round(9);
        assert_eq!(w[0].io_mut().free_frames(), frames, "no frame kept at the home");
        assert_eq!(w[0].engine().map(|e| e.counters().total_drops()), Some(0));
    }
}
