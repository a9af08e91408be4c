//! frag-handoff-bench: what a fragment costs the engines when two workers
//! share the flows (issue 18): established UDP flows' datagrams in two
//! fragments, each fragment arriving at either worker (the first and the
//! later one spread over the workers every way: 0/0, 1/1, 0/1, 1/0), and
//! carried along each `HandOff` verdict to the worker it names (its
//! datagram's home, then its session's owner), as the workers' queues carry
//! them. Half the datagrams go inside to outside, half are replies.
//!
//! Every fragment must leave translated; the first fragments of a batch go
//! before its later ones (in order: holding out-of-order fragments is
//! `engine-bench --fragments --out-of-order`). Prints one JSON line: the
//! fragments sent and the engine passes they took (one per worker that
//! looked at one). Run under callgrind with `--toggle-collect` on
//! `Engine>::process` for instructions per fragment, both engines' work
//! included and the copies through the hand-off queues not
//! (perf/callgrind.sh does both run lengths and prints the difference).

use clap::Parser;
use dataplane::nat::{Engine, Side, Verdict, BATCH};
use dataplane::wire::bytes::{set_u16, set_u32, u16_at, u32_at};
use dataplane::wire::layout;
use perf::flows;
use serde::Serialize;

/// Where a datagram's first and later fragment come off the wire.
const SPREADS: [(usize, usize); 4] = [(0, 0), (1, 1), (0, 1), (1, 0)];

/// Fragments of established UDP flows crossing two workers' engines.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Distinct flows (sessions), over both workers.
    #[arg(long, default_value_t = 10_000)]
    flows: u32,
    /// Fragments to send (two per datagram).
    #[arg(long, default_value_t = 1_000_000)]
    packets: u64,
    /// Flows per subscriber (inside address): subscribers fall to either worker.
    #[arg(long, default_value_t = 100)]
    ports_per_sub: u32,
}

#[derive(Serialize)]
struct Report {
    flows: u32,
    fragments: u64,
    /// Engine passes: a fragment handed on counts once per worker it reached.
    passes: u64,
    /// Passes per fragment (1.0: no fragment crossed).
    passes_per_fragment: f64,
    forwarded: u64,
    /// Not forwarded: a later fragment whose first's record another
    /// datagram overwrote in the direct-mapped table (at most 1 in 1000).
    not_forwarded: u64,
}

struct Two {
    e: [Engine; 2],
    passes: u64,
    /// Fragments not forwarded (held for good or dropped: a record forgotten).
    lost: u64,
}

impl Two {
    /// Frames off the wire at each worker on `side`, carried along every
    /// hand-off until each is decided; returns how many were forwarded.
    fn deliver(&mut self, side: Side, mut at: [Vec<Vec<u8>>; 2]) -> u64 {
        let mut forwarded = 0;
        let mut handed = false;
        for _ in 0..4 {
            let mut next: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
            for (w, frames) in at.iter_mut().enumerate() {
                if frames.is_empty() {
                    continue;
                }
                let mut verdicts = vec![Verdict::Drop(dataplane::nat::DropReason::Malformed); frames.len()];
                let e = &mut self.e[w];
                e.set_handed_off(handed);
                e.process(side, 1, frames, &mut verdicts);
                e.set_handed_off(false);
                self.passes += frames.len() as u64;
                for (f, v) in frames.drain(..).zip(verdicts) {
                    match v {
                        Verdict::Forward(_) => forwarded += 1,
                        Verdict::HandOff { worker, .. } => next[usize::from(worker) % 2].push(f),
                        _ => self.lost += 1,
                    }
                }
            }
            if next.iter().all(Vec::is_empty) {
                return forwarded;
            }
            (at, handed) = (next, true);
        }
        eprintln!("frag-handoff-bench: a fragment was handed on more than three times");
        std::process::exit(1);
    }
}

/// IPv4's identification field (RFC 791) in an untagged frame.
const IDENT: usize = layout::L3 + dataplane::wire::ipv4::field::IDENT;

fn main() {
    let a = Args::parse();
    let n = a.flows.max(1);
    let mut params = flows::params(n, a.ports_per_sub, n);
    params.workers = 2;
    // The fragment table is direct-mapped: with a batch's 32 datagrams in
    // flight between their first and later fragments, a small table would
    // forget some (counted below as not forwarded); 64k slots keep that rare.
    params.max_fragments = 1 << 16;
    params.worker = 0;
    let e0 = Engine::new(&params);
    params.worker = 1;
    let (Ok(e0), Ok(e1)) = (e0, Engine::new(&params)) else {
        eprintln!("frag-handoff-bench: engine parameters refused");
        std::process::exit(2);
    };
    let mut two = Two { e: [e0, e1], passes: 0, lost: 0 };
    let all: Vec<flows::Flow> = (0..n).map(|i| flows::flow(i, a.ports_per_sub)).collect();

    // Every flow's session, set up at its owner; its public endpoint.
    let mut public = Vec::with_capacity(all.len());
    for f in &all {
        let mut at = [vec![flows::frame(*f)], Vec::new()];
        let mut probe = at[0].clone();
        let mut v = [Verdict::Drop(dataplane::nat::DropReason::Malformed)];
        two.e[0].process(Side::Inside, 1, &mut probe, &mut v);
        let owner = match v[0] {
            Verdict::HandOff { worker, .. } => usize::from(worker) % 2,
            _ => 0,
        };
        if owner == 1 {
            at.swap(0, 1);
        }
        let frame = at[owner].remove(0);
        let mut one = [frame];
        two.e[owner].process(Side::Inside, 1, &mut one, &mut v);
        if !matches!(v[0], Verdict::Forward(_)) {
            eprintln!("frag-handoff-bench: set-up of {f:?} gave {:?}", v[0]);
            std::process::exit(1);
        }
        public.push((u32_at(&one[0], layout::SRC), u16_at(&one[0], layout::SRC_PORT)));
    }
    let owners = [two.e[0].live_sessions(), two.e[1].live_sessions()];

    two.passes = 0;
    let datagrams = a.packets.div_ceil(2);
    let per_batch = (BATCH / 2) as u64;
    let (mut sent, mut forwarded, mut d) = (0u64, 0u64, 0u64);
    while d < datagrams {
        let o2i = (d / per_batch) % 2 == 1;
        let side = if o2i { Side::Outside } else { Side::Inside };
        let mut firsts: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
        let mut rests: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..per_batch.min(datagrams - d) {
            let i = usize::try_from(d % u64::from(n)).unwrap_or(0);
            let f = all[i];
            let mut b = flows::frame(f);
            if o2i {
                // The remote's reply to the flow's public endpoint.
                set_u32(&mut b, layout::SRC, flows::remote());
                set_u16(&mut b, layout::SRC_PORT, f.dport);
                set_u32(&mut b, layout::DST, public[i].0);
                set_u16(&mut b, layout::DST_PORT, public[i].1);
            }
            set_u16(&mut b, IDENT, u16::try_from(d & 0xffff).unwrap_or(0));
            let mut rest = b.clone();
            set_u16(&mut b, layout::FLAGS_FRAG, 0x2000); // MF, offset 0
            set_u16(&mut rest, layout::FLAGS_FRAG, 1); // offset 8 bytes, last
            let (first_at, rest_at) = SPREADS[(d % 4) as usize];
            firsts[first_at].push(b);
            rests[rest_at].push(rest);
            d += 1;
            sent += 2;
        }
        forwarded += two.deliver(side, firsts);
        forwarded += two.deliver(side, rests);
    }
    if forwarded + two.lost != sent || two.lost * 1000 > sent {
        eprintln!("frag-handoff-bench: only {forwarded} of {sent} fragments forwarded");
        std::process::exit(1);
    }
    eprintln!("frag-handoff-bench: sessions per worker {owners:?}");
    let r = Report {
        flows: n,
        fragments: sent,
        passes: two.passes,
        passes_per_fragment: two.passes as f64 / sent as f64,
        forwarded,
        not_forwarded: two.lost,
    };
    match serde_json::to_string(&r) {
        Ok(s) => println!("{s}"),
        Err(e) => {
            eprintln!("frag-handoff-bench: {e}");
            std::process::exit(1);
        }
    }
}
