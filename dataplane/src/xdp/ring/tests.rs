//! The ring bookkeeping against a fake kernel: every frame in exactly one place, whatever the rings do.

use super::*;
use std::collections::VecDeque;

/// xorshift64*: deterministic, so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
    fn ring_size(&mut self) -> usize {
        1 << (1 + self.below(6)) // 2 to 64 entries
    }
}

/// One socket's four rings and the kernel behind them. The kernel takes
/// fill entries into its own hands, hands them back on RX as received
/// packets (at an offset into the frame, as zero-copy does), takes TX
/// entries and completes them. Writers reserve and insert exactly as
/// xdpilone's do: an item pulled past the reservation is dropped.
struct FakeKernel {
    rng: Rng,
    frame_size: u32,
    fill: VecDeque<u64>,
    fill_size: usize,
    rx: VecDeque<XdpDesc>,
    rx_size: usize,
    tx: VecDeque<XdpDesc>,
    tx_size: usize,
    completion: VecDeque<u64>,
    completion_size: usize,
    /// Taken from the fill ring, waiting for a packet.
    buffers: Vec<u64>,
    /// Taken from the TX ring, being sent.
    sending: Vec<XdpDesc>,
    need_wakeup: bool,
    /// How often a writer got fewer slots than it asked for.
    short_fill: u64,
    short_tx: u64,
    /// Frames sent and completed.
    completed: u64,
}

impl FakeKernel {
    fn new(seed: u64, frame_size: u32) -> Self {
        let mut rng = Rng(seed | 1);
        let (fill_size, rx_size, tx_size, completion_size) =
            (rng.ring_size(), rng.ring_size(), rng.ring_size(), rng.ring_size());
        Self {
            rng,
            frame_size,
            fill: VecDeque::new(),
            fill_size,
            rx: VecDeque::new(),
            rx_size,
            tx: VecDeque::new(),
            tx_size,
            completion: VecDeque::new(),
            completion_size,
            buffers: Vec::new(),
            sending: Vec::new(),
            need_wakeup: false,
            short_fill: 0,
            short_tx: 0,
            completed: 0,
        }
    }

    /// The kernel runs for a while: packets arrive, frames go out.
    fn step(&mut self) {
        for _ in 0..self.rng.below(8) {
            let Some(addr) = self.fill.pop_front() else { break };
            self.buffers.push(addr);
        }
        while self.rx.len() < self.rx_size && !self.buffers.is_empty() && !self.rng.one_in(4) {
            let addr = self.buffers.swap_remove(self.rng.below(self.buffers.len() as u64) as usize);
            let offset = if self.rng.one_in(2) { 0 } else { 256 };
            let len = 1 + self.rng.below(u64::from(self.frame_size) - offset) as u32;
            self.rx.push_back(XdpDesc { addr: addr + offset, len, options: 0 });
        }
        let n = self.rng.below(40) as usize;
        self.send(n);
        self.need_wakeup = self.rng.one_in(2);
    }

    /// Takes up to `n` frames off the TX ring and completes what the
    /// completion ring has room for.
    fn send(&mut self, n: usize) {
        for _ in 0..n {
            let Some(d) = self.tx.pop_front() else { break };
            self.sending.push(d);
        }
        while self.completion.len() < self.completion_size {
            let Some(d) = self.sending.pop() else { break };
            self.completion.push_back(d.addr);
            self.completed += 1;
        }
    }

    /// Every frame this socket's rings and kernel side hold.
    fn frames(&self) -> impl Iterator<Item = u64> + '_ {
        let fs = u64::from(self.frame_size);
        (self.fill.iter().chain(&self.buffers).chain(&self.completion).copied())
            .chain(self.rx.iter().chain(&self.tx).chain(&self.sending).map(|d| d.addr))
            .map(move |addr| addr / fs)
    }
}

impl KernelRings for FakeKernel {
    fn fill<I: Iterator<Item = u64>>(&mut self, max: u32, items: impl FnOnce(u32) -> I) -> u32 {
        let reserved = (self.fill_size - self.fill.len()).min(max as usize) as u32;
        self.short_fill += u64::from(reserved < max);
        let mut n = 0;
        for (addr, _slot) in items(reserved).zip(0..reserved) {
            self.fill.push_back(addr);
            n += 1;
        }
        n
    }

    fn fill_needs_wakeup(&self) -> bool {
        self.need_wakeup
    }

    fn fill_wake(&mut self) {
        self.step();
    }

    fn complete(&mut self, mut out: impl FnMut(u64)) -> u32 {
        let n = self.completion.len() as u32;
        self.completion.drain(..).for_each(&mut out);
        n
    }

    fn receive(&mut self, max: u32, mut out: impl FnMut(XdpDesc)) {
        for _ in 0..max {
            let Some(d) = self.rx.pop_front() else { break };
            out(d);
        }
    }

    fn transmit(&mut self, max: u32, items: impl Iterator<Item = XdpDesc>) -> u32 {
        let reserved = (self.tx_size - self.tx.len()).min(max as usize) as u32;
        self.short_tx += u64::from(reserved < max);
        let mut n = 0;
        for (d, _slot) in items.zip(0..reserved) {
            self.tx.push_back(d);
            n += 1;
        }
        n
    }

    fn tx_pending(&self) -> u32 {
        self.tx.len() as u32
    }

    fn tx_needs_wakeup(&self) -> bool {
        self.need_wakeup
    }

    fn tx_wake(&mut self) {
        // Copy mode: at most 32 frames per kick.
        self.send(32);
    }
}

/// Asserts that every frame is in exactly one place.
fn assert_conserved(l: &Ledger<FakeKernel>, held: &[Desc], frames: u64, seed: u64, round: usize) {
    let fs = u64::from(l.frame_size);
    let mut all: Vec<u64> = (l.free.iter().copied())
        .chain(l.pending.iter().flatten().map(|d| d.addr))
        .chain(held.iter().map(Desc::addr))
        .map(|addr| addr / fs)
        .chain(l.sides.iter().flat_map(FakeKernel::frames))
        .collect();
    all.sort_unstable();
    let in_hand = |frame: u64| held.iter().any(|d| d.addr() / fs == frame);
    assert!(
        (0..frames).all(|frame| l.held.contains(frame as usize) == in_hand(frame)),
        "seed {seed} round {round}: the held bitmap is not the frames in the worker's hands"
    );
    assert!(
        all.iter().copied().eq(0..frames),
        "seed {seed} round {round}: {} frames where {frames} should be, each once",
        all.len()
    );
}

/// A frame freed (or sent) twice would sit in two places; the second
/// is refused, loudly in debug builds.
#[test]
#[cfg_attr(debug_assertions, should_panic(expected = "sent or freed but not held"))]
fn a_frame_freed_twice_is_refused() {
    let sides = [FakeKernel::new(1, 2048), FakeKernel::new(2, 2048)];
    let mut l = Ledger::new(sides, 8, 2048, 4, false);
    let d = l.alloc(64).expect("a free frame");
    l.free(d);
    l.send(Side::Inside, d);
    l.free(d);
    assert_eq!(l.free.len(), 8, "each frame once on the free stack");
    assert!(l.pending.iter().all(Vec::is_empty));
}

/// Drives the bookkeeping as a worker does, against a fake kernel with
/// random ring sizes, and checks after every round that no frame was
/// lost or doubled.
#[test]
fn every_frame_is_in_exactly_one_place_whatever_the_rings_do() {
    const SIDES: [Side; 2] = [Side::Inside, Side::Outside];
    let frame_size = 2048;
    let (mut short_fill, mut short_tx, mut completed, mut ring_full) = (0, 0, 0, 0);
    for seed in 1..=120u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let frames = 16 + rng.below(300);
        let sides = [FakeKernel::new(rng.next(), frame_size), FakeKernel::new(rng.next(), frame_size)];
        let ring_size = sides[0].tx_size as u32;
        let mut l = Ledger::new(sides, frames as u32, frame_size, ring_size, rng.one_in(2));
        l.refill();
        let mut held: Vec<Desc> = Vec::new();
        let mut buf = [Desc::EMPTY; BATCH];
        for round in 0..150 {
            for side in SIDES {
                let want = 1 + rng.below(BATCH as u64) as usize;
                let n = l.recv(side, &mut buf[..want]);
                held.extend_from_slice(&buf[..n]);
            }
            // Hand-offs and fragments take frames off the free stack.
            for _ in 0..rng.below(4) {
                held.extend(l.alloc(1 + rng.below(u64::from(frame_size)) as u32));
            }
            // Most frames go out, some are dropped, some wait a round.
            let mut keep = Vec::new();
            for d in held.drain(..) {
                match rng.below(10) {
                    0 => l.free(d),
                    1 => keep.push(d),
                    _ => l.send(SIDES[rng.below(2) as usize], d),
                }
            }
            held = keep;
            assert_conserved(&l, &held, frames, seed, round);
            l.flush();
            assert_conserved(&l, &held, frames, seed, round);
            for k in &mut l.sides {
                k.step();
            }
            assert_conserved(&l, &held, frames, seed, round);
        }
        short_fill += l.sides.iter().map(|k| k.short_fill).sum::<u64>();
        short_tx += l.sides.iter().map(|k| k.short_tx).sum::<u64>();
        completed += l.sides.iter().map(|k| k.completed).sum::<u64>();
        ring_full += l.counters.tx_ring_full.iter().sum::<u64>();
    }
    // The edges this test is about were reached.
    assert!(short_fill > 0, "a refill found its fill ring short of room");
    assert!(short_tx > 0, "a flush found its TX ring short of room");
    assert!(ring_full > 0, "pending TX overflowed a ring's worth");
    assert!(completed > 0, "frames went round");
}
