//! engine-bench: measures the NAT engine alone (no NIC), one core.
//!
//! Scenarios:
//! - `established`: set up `--flows` sessions (each answered once, so all
//!   are in the steady state), then translate `--packets` packets of those
//!   flows in batches of 64, in random flow order, half the batches
//!   inside-to-outside and half the replies.
//! - `new-sessions`: every packet opens a new session (`--flows` of them,
//!   `--packets` is ignored): the rate of session set-up.
//! - `first-replies`: set up `--flows` UDP sessions by one request each
//!   (not timed), then time one reply per flow in random order: the
//!   answered-state change (`REPLIED`, the UDP class's timeout, off the
//!   unreplied FIFO) every request/response flow pays once, as DNS does.
//!   With `--tcp` the requests are SYNs and each flow's timed packets its
//!   SYN/ACK and the handshake's last ACK (both counted): the connection
//!   set-up past its first packet.
//! - `expiry`: set up `--flows` unanswered UDP sessions (not timed), then
//!   time the sweep (`Engine::expire`, as a worker calls it each round, a
//!   budget of 64 removals a call) removing them all once their timeout
//!   has passed: in a table that churns, every session made is removed,
//!   so this rate bounds the sustained new-session rate as much as
//!   `new-sessions` does.
//! - `table-full`: fill the table with `--flows` unanswered UDP sessions
//!   (not timed, `max_sessions` is `--flows`), then time `--flows` more new
//!   flows, each arriving at a full table: the new session costs the
//!   eviction of the oldest unanswered one (netfilter's early drop, found
//!   by `SessionTable::evictable` on the expiry wheel) on top of its own
//!   set-up. What a flood of new flows into a full table costs a worker.
//! - `memory-ceiling`: no engine, only its memory pattern: an index of the
//!   size the engine's flow index has at `--flows`, and a slab of 32-byte
//!   hot halves; per "packet" one random slot read, then a read and a
//!   write of the session it names, in the engine's batch pipeline (all 64
//!   slots asked for, then all 64 sessions, then the work). What this
//!   machine's memory allows the lookup at that size: the ceiling the
//!   `established` figure sits under. `serial_ns` is the same walk one
//!   lookup at a time (the latency of the two dependent misses).
//!
//! With `--fragments`, `established` sends every datagram in two fragments
//! (a first one with the ports, then a later one, in one batch): the
//! general path's fragment handling (`nat::frag`), per fragment. With
//! `--out-of-order` too, each datagram's later fragment comes first: it is
//! held, then released when its first fragment is translated (the released
//! ones are taken after each batch, as the worker takes them).
//!
//! Frames are 60-byte UDP (64 on the wire), or with `--tcp` 60-byte TCP
//! ACKs of connections set up by a handshake (SYN, SYN/ACK, ACK). Each batch's frames are written
//! in place from a compact flow array (tuple and TTL), as a NIC would write
//! them; checksums are not recomputed (the engine updates them
//! incrementally and never needs them valid to do its work).
//!
//! Prints one JSON line. On a shared machine compare `cpu_mpps` (per second
//! this thread was on a CPU) rather than `mpps` (per wall-clock second). For instruction counts run it under
//! `valgrind --tool=callgrind --toggle-collect='dataplane::nat::Engine::process'`
//! (see perf/callgrind.sh).

use clap::{Parser, ValueEnum};
use dataplane::nat::{Engine, Side, Verdict, BATCH};
use dataplane::wire::tcp::{ACK, SYN};
use perf::flows;
use serde::Serialize;
use std::time::Instant;

#[derive(Clone, Copy, Debug, ValueEnum, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Scenario {
    /// Translate packets of already established flows.
    Established,
    /// Open a new session with every packet.
    NewSessions,
    /// The engine's memory pattern alone: the lookup's ceiling on this machine.
    MemoryCeiling,
    /// Each flow's first reply (UDP): the answered-state change a
    /// request/response flow (DNS) pays once.
    FirstReplies,
    /// The sweep removing sessions whose timeout ended: the other half of
    /// a churning table's work.
    Expiry,
    /// New flows into a full table of unanswered ones: each evicts one.
    TableFull,
}

/// Benchmark the NAT engine on one core, without a NIC.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Which scenario to run.
    #[arg(long, value_enum, default_value = "established")]
    scenario: Scenario,
    /// Distinct flows (sessions).
    #[arg(long, default_value_t = 10_000)]
    flows: u32,
    /// Packets to translate (established only).
    #[arg(long, default_value_t = 10_000_000)]
    packets: u64,
    /// Flows per subscriber (inside address).
    #[arg(long, default_value_t = 1000)]
    ports_per_sub: u32,
    /// Only inside-to-outside packets (default: half the batches are replies).
    #[arg(long)]
    one_way: bool,
    /// Visit flows in order instead of a random order (cache-friendly).
    #[arg(long)]
    sequential: bool,
    /// TCP connections instead of UDP flows.
    #[arg(long)]
    tcp: bool,
    /// Established flows' datagrams in two fragments each (UDP only).
    #[arg(long, conflicts_with = "tcp")]
    fragments: bool,
    /// With --fragments: each datagram's later fragment before its first (held, then released).
    #[arg(long, requires = "fragments")]
    out_of_order: bool,
    /// Pools log every session (`logging: sessions`); new-sessions then
    /// also runs with them off and prints the ratio (on / off time).
    #[arg(long)]
    session_events: bool,
    /// Tables on 4 KiB pages: no 2 MiB-aligned mappings advised to use
    /// transparent huge pages (masq's default allocator, `HugePageAlloc`).
    #[arg(long)]
    no_huge_pages: bool,
    /// Leave the tables' pages to fault in as the benchmark first touches
    /// them (masq's workers fault them in before traffic, `Engine::prefault`,
    /// and so does engine-bench by default).
    #[arg(long)]
    no_prefault: bool,
}

#[derive(Serialize)]
struct Report {
    scenario: Scenario,
    flows: u32,
    packets: u64,
    seconds: f64,
    mpps: f64,
    /// Seconds this thread spent on a CPU in the timed part
    /// (/proc/thread-self/schedstat; 0 if unreadable): unlike `seconds`,
    /// not inflated while other processes hold the CPU.
    cpu_seconds: f64,
    /// Packets (or sessions) per CPU second, in millions: the figure to
    /// compare on a shared machine.
    cpu_mpps: f64,
    ns_per_packet: f64,
    bytes_per_session: f64,
    sessions: u32,
    forwarded: u64,
    drops: u64,
    batch: usize,
    order: &'static str,
    session_events: bool,
    /// new-sessions with --session-events: time with them over time without.
    #[serde(skip_serializing_if = "Option::is_none")]
    session_events_ratio: Option<f64>,
    /// MiB of the process's large blocks advised to use huge pages.
    huge_pages_mib: u64,
    /// The kernel's transparent huge page mode.
    thp_mode: &'static str,
    /// MiB of the process's memory the kernel backs with huge pages
    /// (`AnonHugePages` of /proc/self/smaps_rollup) at the end.
    anon_huge_mib: u64,
    /// memory-ceiling: nanoseconds a lookup takes one at a time (slot,
    /// then session, each depending on the last).
    #[serde(skip_serializing_if = "Option::is_none")]
    serial_ns: Option<f64>,
}

/// Nanoseconds this thread has run on a CPU (the first field of
/// /proc/thread-self/schedstat; 0 if unreadable).
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0)
}

/// `AnonHugePages` of /proc/self/smaps_rollup, in MiB (0 if unreadable).
fn anon_huge_mib() -> u64 {
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("AnonHugePages:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib >> 10)
}

// masq's allocator: the engine's tables on huge pages, as in masq itself.
#[global_allocator]
static ALLOC: dataplane::xdp::HugePageAlloc = dataplane::xdp::HugePageAlloc;

/// The new-sessions loop: one batch after another, the events collected
/// and stamped after each as a worker does (seconds taken, events, CPU
/// seconds taken).
fn new_sessions(
    engine: &mut Engine,
    order: &[u32],
    all: &[flows::Flow],
    bufs: &mut [&mut [u8]],
    verdicts: &mut [Verdict],
) -> (f64, u64, f64) {
    let (t0, c0) = (Instant::now(), cpu_ns());
    let (mut kept, mut n) = (0u64, 0u64);
    for chunk in order.chunks(BATCH) {
        for (b, &i) in bufs.iter_mut().zip(chunk) {
            write_i2o(b, all[i as usize]);
        }
        engine.process(Side::Inside, 1, &mut bufs[..chunk.len()], &mut verdicts[..chunk.len()]);
        let mut t = None;
        for ev in engine.take_block_events() {
            n += 1;
            let ms = *t.get_or_insert_with(dataplane::nat::events::now_ms);
            kept += std::hint::black_box(dataplane::nat::events::NatEvent::stamp(&ev, ms)).time_ms & 1;
        }
    }
    std::hint::black_box(kept);
    let cpu = cpu_ns().saturating_sub(c0) as f64 / 1e9;
    (t0.elapsed().as_secs_f64(), n, cpu)
}

/// A translated inside-to-outside frame's source: its public endpoint.
fn source_of(b: &[u8]) -> (u32, u16) {
    (u32::from_be_bytes([b[SRC], b[SRC + 1], b[SRC + 2], b[SRC + 3]]), u16::from_be_bytes([b[SPORT], b[SPORT + 1]]))
}

/// The first-replies scenario: every flow's request (not timed), then a
/// reply each, in `order`. Returns (replies, seconds, CPU seconds).
fn first_replies(
    engine: &mut Engine,
    order: &[u32],
    all: &[flows::Flow],
    bufs: &mut [&mut [u8]],
    verdicts: &mut [Verdict],
    tcp: bool,
) -> (u64, f64, f64) {
    let flags = |bufs: &mut [&mut [u8]], f: u8| {
        if tcp {
            for b in bufs.iter_mut() {
                b[TCP_FLAGS] = f;
            }
        }
    };
    let mut public = vec![(0u32, 0u16); all.len()];
    flags(bufs, SYN);
    for chunk in order.chunks(BATCH) {
        for (b, &i) in bufs.iter_mut().zip(chunk) {
            write_i2o(b, all[i as usize]);
        }
        engine.process(Side::Inside, 1, &mut bufs[..chunk.len()], &mut verdicts[..chunk.len()]);
        for (b, &i) in bufs.iter().zip(chunk) {
            public[i as usize] = source_of(b);
        }
    }
    // The replies in an order of their own (a lower bound: answers come
    // back roughly in the order of their requests, whose sessions lie
    // side by side in the slab), prepared before the timing and read
    // sequentially like frames from a ring (as `established` does): the
    // harness's reads stay out of the figure, the engine's stay random.
    let mut replies = order.to_vec();
    shuffle(&mut replies);
    let visit: Vec<(flows::Flow, (u32, u16))> =
        replies.iter().map(|&i| (all[i as usize], public[i as usize])).collect();
    drop(public);
    let c = engine.counters();
    let before = c.fwd_o2i + c.fwd_i2o;
    let (t0, c0) = (Instant::now(), cpu_ns());
    for chunk in visit.chunks(BATCH) {
        flags(bufs, SYN | ACK);
        for (b, &(f, p)) in bufs.iter_mut().zip(chunk) {
            write_o2i(b, f, p);
        }
        engine.process(Side::Outside, 1, &mut bufs[..chunk.len()], &mut verdicts[..chunk.len()]);
        if tcp {
            // The handshake's last ACK: the session becomes established.
            flags(bufs, ACK);
            for (b, &(f, _)) in bufs.iter_mut().zip(chunk) {
                write_i2o(b, f);
            }
            engine.process(Side::Inside, 1, &mut bufs[..chunk.len()], &mut verdicts[..chunk.len()]);
        }
    }
    let cpu = cpu_ns().saturating_sub(c0) as f64 / 1e9;
    let secs = t0.elapsed().as_secs_f64();
    let c = engine.counters();
    let (fwd, want) = (c.fwd_o2i + c.fwd_i2o - before, visit.len() as u64 * if tcp { 2 } else { 1 });
    if fwd != want {
        eprintln!("engine-bench: only {fwd} of {want} first replies (and ACKs) forwarded");
        std::process::exit(1);
    }
    (fwd, secs, cpu)
}

/// The memory-ceiling walk: `flows` sessions in a flow index at load 1/2
/// (`Index::with_entries`: the engine's `i2o` and `o2i` from 64k to 2^21
/// sessions; 1/4 below, 3/4 above) and
/// a slab of hot halves; `packets` lookups in random flow order, 64 at a
/// time in three stages (every slot asked for, then every session, then
/// each read and its `last_seen` written), as `nat::batch` does. Returns
/// (lookups, seconds, CPU seconds, bytes of the two tables, nanoseconds a
/// lookup takes one at a time).
fn memory_ceiling(flows: u32, packets: u64, order: &[u32]) -> (u64, f64, f64, usize, f64) {
    use dataplane::nat::{hash, index, session::Session};
    use dataplane::xdp::prefetch;
    let seed = 0x5eed;
    let key = |i: u32| hash::hash_words(seed, u64::from(i), u64::from(i).rotate_left(17));
    let mut idx = index::Index::with_entries(flows);
    for i in 0..flows {
        idx.insert(key(i), i);
    }
    let mut hot = vec![Session::default(); flows as usize];
    let bytes = idx.memory_bytes() + hot.len() * std::mem::size_of::<Session>();
    let (slots, homes) = idx.raw();
    // The flows' hashes in visiting order, read sequentially like frames.
    let hashes: Vec<u64> = order.iter().map(|&i| key(i)).collect();
    let session_of = |slot: u32| (slot & index::IDX_MASK).wrapping_sub(1) as usize;
    let batches = packets.div_ceil(BATCH as u64);
    let (mut pos, mut sum) = (0usize, 0u64);
    let (t0, c0) = (Instant::now(), cpu_ns());
    let mut found = [0u32; BATCH];
    for _ in 0..batches {
        let start = pos;
        for k in 0..BATCH {
            let h = hashes[(start + k) % hashes.len()];
            if let Some(s) = slots.get(hash::home(h, homes)) {
                prefetch::read(s);
            }
        }
        for (k, f) in found.iter_mut().enumerate() {
            let h = hashes[(start + k) % hashes.len()];
            // The home slot holds the flow in most cases; a probe past it
            // stays in the same cache line.
            let mut p = hash::home(h, homes);
            let mut want = index::tag_of(h);
            let far = index::probe_key(want, index::FAR);
            *f = loop {
                match slots.get(p).copied() {
                    Some(s) if s != 0 && s & !index::IDX_MASK == want => break s,
                    // As the pipeline: from `index::FAR` on, the distance stays.
                    Some(s) if s != 0 => {
                        p += 1;
                        want = index::next_probe_key(want, far);
                    }
                    _ => break 0,
                }
            };
            if let Some(x) = hot.get(session_of(*f)) {
                prefetch::read(x);
            }
        }
        for &f in &found {
            if let Some(x) = hot.get_mut(session_of(f)) {
                sum = sum.wrapping_add(u64::from(x.public_ip.get()));
                x.last_seen = x.last_seen.wrapping_add(1);
            }
        }
        pos = (start + BATCH) % hashes.len();
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_ns().saturating_sub(c0) as f64 / 1e9;
    // One at a time: each lookup's slot and session before the next.
    let serial = (packets / 8).clamp(1, 2_000_000);
    let t1 = Instant::now();
    for n in 0..serial {
        // The next flow depends on the last read, so the loads cannot overlap.
        let h = hashes[(usize::try_from(n).unwrap_or(0) + usize::from(sum & 1 == 1)) % hashes.len()];
        let s = slots.get(hash::home(h, homes)).copied().unwrap_or(0);
        if let Some(x) = hot.get_mut(session_of(s)) {
            sum = sum.wrapping_add(u64::from(x.last_seen));
            x.last_seen = x.last_seen.wrapping_add(1);
        }
    }
    let serial_ns = t1.elapsed().as_secs_f64() * 1e9 / serial as f64;
    std::hint::black_box(sum);
    (batches * BATCH as u64, secs, cpu, bytes, serial_ns)
}

/// Offsets in the 60-byte frame.
const TTL: usize = 22;
const SRC: usize = 26;
const DST: usize = 30;
const SPORT: usize = 34;
const DPORT: usize = 36;
const TCP_FLAGS: usize = 47;
const IDENT: usize = 18;
const FLAGS_FRAG: usize = 20;

fn write_i2o(buf: &mut [u8], f: flows::Flow) {
    buf[TTL] = 64;
    buf[SRC..SRC + 4].copy_from_slice(&f.src.to_be_bytes());
    buf[DST..DST + 4].copy_from_slice(&flows::remote().to_be_bytes());
    buf[SPORT..SPORT + 2].copy_from_slice(&f.sport.to_be_bytes());
    buf[DPORT..DPORT + 2].copy_from_slice(&f.dport.to_be_bytes());
}

fn write_o2i(buf: &mut [u8], f: flows::Flow, public: (u32, u16)) {
    buf[TTL] = 64;
    buf[SRC..SRC + 4].copy_from_slice(&flows::remote().to_be_bytes());
    buf[DST..DST + 4].copy_from_slice(&public.0.to_be_bytes());
    buf[SPORT..SPORT + 2].copy_from_slice(&f.dport.to_be_bytes());
    buf[DPORT..DPORT + 2].copy_from_slice(&public.1.to_be_bytes());
}

/// A small deterministic permutation source (xorshift), so runs compare.
fn shuffle(v: &mut [u32]) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let j = usize::try_from(x % (i as u64 + 1)).unwrap_or(0);
        v.swap(i, j);
    }
}

fn main() {
    let a = Args::parse();
    dataplane::xdp::hugepages::set_enabled(!a.no_huge_pages);
    let flows_n = a.flows.max(1);
    // memory-ceiling runs no engine: a one-session one stands in for the report.
    let ceiling_only = a.scenario == Scenario::MemoryCeiling;
    let capacity = if ceiling_only { 1 } else { flows_n };
    let mut params = flows::params(capacity, a.ports_per_sub, capacity);
    if a.scenario == Scenario::TableFull {
        // Ports for both waves (the same subscribers, twice the flows
        // each): a flow whose first-wave session was evicted needs a new
        // one while the evicted ports wait out their hold. (Paired pooling
        // keeps a subscriber on one address, so the pool gets room on
        // every address, not only in total.)
        params = flows::params(capacity.saturating_mul(2), a.ports_per_sub.saturating_mul(2), capacity);
        for p in &mut params.pools {
            let n = u32::try_from(p.addresses.len()).unwrap_or(u32::MAX);
            let last = p.addresses.last().copied().unwrap_or(0);
            p.addresses.extend((1..=n).map(|i| last + i));
        }
    }
    let base_params = params.clone();
    for p in &mut params.pools {
        p.log_sessions = a.session_events;
    }
    let mut engine = match Engine::new(&params) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("engine-bench: {e}");
            std::process::exit(2);
        }
    };
    if !a.no_prefault && !ceiling_only {
        engine.prefault();
    }
    let f0 = flows::flow(0, a.ports_per_sub);
    let template = if a.tcp { flows::tcp_frame(f0) } else { flows::frame(f0) };
    // TCP set-up: the handshake's flags, then ACKs.
    let set_flags = |bufs: &mut [&mut [u8]], flags: u8| {
        if a.tcp {
            for b in bufs.iter_mut() {
                b[TCP_FLAGS] = flags;
            }
        }
    };
    // The engine is handed views of frames, as the worker hands it views
    // of UMEM frames (`FrameIo::with_views`): the same instantiation.
    let mut store: Vec<Vec<u8>> = vec![template.clone(); BATCH];
    let mut bufs: Vec<&mut [u8]> = store.iter_mut().map(Vec::as_mut_slice).collect();
    let mut verdicts = vec![Verdict::Drop(dataplane::nat::DropReason::Malformed); BATCH];
    let now = 1;
    let mut all: Vec<flows::Flow> = (0..flows_n).map(|i| flows::flow(i, a.ports_per_sub)).collect();
    if a.scenario == Scenario::TableFull {
        // The same subscribers' next flows: each to another remote port.
        let more: Vec<flows::Flow> = all.iter().map(|&f| flows::Flow { dport: f.dport + 100, ..f }).collect();
        all.extend(more);
    }
    let mut order: Vec<u32> = (0..flows_n).collect();
    if !a.sequential {
        shuffle(&mut order);
    }

    let mut ratio = None;
    let mut ceiling = None;
    let (packets, seconds, cpu_seconds) = match a.scenario {
        Scenario::MemoryCeiling => {
            let (n, secs, cpu, bytes, serial) = memory_ceiling(flows_n, a.packets, &order);
            ceiling = Some((bytes, serial));
            (n, secs, cpu)
        }
        Scenario::NewSessions => {
            if a.session_events {
                // The same run with session events off, on a fresh engine.
                let Ok(mut off) = Engine::new(&base_params) else { std::process::exit(2) };
                if !a.no_prefault {
                    off.prefault();
                }
                let (t_off, n_off, _) = new_sessions(&mut off, &order, &all, &mut bufs, &mut verdicts);
                let (t_on, n_on, cpu_on) = new_sessions(&mut engine, &order, &all, &mut bufs, &mut verdicts);
                ratio = Some(t_on / t_off);
                eprintln!(
                    "engine-bench: new sessions with per-session events {:.1} ns ({n_on} events), without {:.1} ns ({n_off} events): ratio {:.3}",
                    t_on * 1e9 / f64::from(flows_n),
                    t_off * 1e9 / f64::from(flows_n),
                    t_on / t_off
                );
                (u64::from(flows_n), t_on, cpu_on)
            } else {
                let (t, _, cpu) = new_sessions(&mut engine, &order, &all, &mut bufs, &mut verdicts);
                (u64::from(flows_n), t, cpu)
            }
        }
        Scenario::Expiry => {
            let (t, _, _) = new_sessions(&mut engine, &order, &all, &mut bufs, &mut verdicts);
            std::hint::black_box(t);
            if engine.live_sessions() != flows_n {
                eprintln!("engine-bench: set-up made {} sessions of {flows_n}", engine.live_sessions());
                std::process::exit(1);
            }
            let later = 2 + base_params.timeouts.udp_unreplied_secs;
            let (t0, c0) = (Instant::now(), cpu_ns());
            let mut removed = 0u64;
            while engine.live_sessions() > 0 {
                let n = engine.expire(later, BATCH);
                if n == 0 {
                    break;
                }
                removed += n as u64;
            }
            let cpu = cpu_ns().saturating_sub(c0) as f64 / 1e9;
            let secs = t0.elapsed().as_secs_f64();
            if removed != u64::from(flows_n) {
                eprintln!("engine-bench: the sweep removed {removed} of {flows_n}");
                std::process::exit(1);
            }
            (removed, secs, cpu)
        }
        Scenario::TableFull => {
            if a.fragments || a.tcp {
                eprintln!("engine-bench: table-full fills the table with UDP flows: no --tcp or --fragments");
                std::process::exit(2);
            }
            let (t, _, _) = new_sessions(&mut engine, &order, &all, &mut bufs, &mut verdicts);
            std::hint::black_box(t);
            if engine.live_sessions() != flows_n {
                eprintln!("engine-bench: set-up made {} sessions of {flows_n}", engine.live_sessions());
                std::process::exit(1);
            }
            let more: Vec<u32> = order.iter().map(|&i| i + flows_n).collect();
            let (created, evicted) = (engine.counters().sessions_created, engine.counters().sessions_evicted);
            let (t, _, cpu) = new_sessions(&mut engine, &more, &all, &mut bufs, &mut verdicts);
            let c = engine.counters();
            let (created, evicted) = (c.sessions_created - created, c.sessions_evicted - evicted);
            if created != u64::from(flows_n) || evicted != created || engine.live_sessions() != flows_n {
                eprintln!("engine-bench: into the full table {created} sessions made, {evicted} evicted, of {flows_n}; drops {:?}", c.drops);
                std::process::exit(1);
            }
            (created, t, cpu)
        }
        Scenario::FirstReplies => {
            if a.fragments {
                eprintln!("engine-bench: first-replies takes no fragments");
                std::process::exit(2);
            }
            first_replies(&mut engine, &order, &all, &mut bufs, &mut verdicts, a.tcp)
        }
        Scenario::Established => {
            // Set up every session, remembering each flow's public endpoint
            // (TCP: and completing its handshake).
            let mut public = vec![(0u32, 0u16); flows_n as usize];
            for chunk in (0..flows_n).collect::<Vec<_>>().chunks(BATCH) {
                set_flags(&mut bufs, SYN);
                for (b, &i) in bufs.iter_mut().zip(chunk) {
                    write_i2o(b, all[i as usize]);
                }
                engine.process(Side::Inside, now, &mut bufs[..chunk.len()], &mut verdicts[..chunk.len()]);
                for (b, &i) in bufs.iter().zip(chunk) {
                    public[i as usize] = source_of(b);
                }
                if !a.tcp {
                    // A reply each, so the sessions are answered (the fast
                    // lane's steady state) before the timed part: without it
                    // every flow's first reply there is a state change, which
                    // at 10M flows and 20M packets was half the packets.
                    for (b, &i) in bufs.iter_mut().zip(chunk) {
                        write_o2i(b, all[i as usize], public[i as usize]);
                    }
                    engine.process(Side::Outside, now, &mut bufs[..chunk.len()], &mut verdicts[..chunk.len()]);
                }
                if a.tcp {
                    set_flags(&mut bufs, SYN | ACK);
                    for (b, &i) in bufs.iter_mut().zip(chunk) {
                        write_o2i(b, all[i as usize], public[i as usize]);
                    }
                    engine.process(Side::Outside, now, &mut bufs[..chunk.len()], &mut verdicts[..chunk.len()]);
                    set_flags(&mut bufs, ACK);
                    for (b, &i) in bufs.iter_mut().zip(chunk) {
                        write_i2o(b, all[i as usize]);
                    }
                    engine.process(Side::Inside, now, &mut bufs[..chunk.len()], &mut verdicts[..chunk.len()]);
                }
            }
            set_flags(&mut bufs, ACK);
            if engine.live_sessions() != flows_n {
                eprintln!("engine-bench: set-up made {} sessions of {flows_n}", engine.live_sessions());
                std::process::exit(1);
            }
            // The flows in visiting order, read sequentially like frames from
            // a ring: the engine's lookups stay random, the harness's reads do not.
            let visit: Vec<(flows::Flow, (u32, u16))> =
                order.iter().map(|&i| (all[i as usize], public[i as usize])).collect();
            drop(public);
            let before = engine.counters().clone();
            let batches = a.packets.div_ceil(BATCH as u64);
            let mut pos = 0usize;
            let (t0, c0) = (Instant::now(), cpu_ns());
            for n in 0..batches {
                let o2i = !a.one_way && n % 2 == 1;
                for (k, b) in bufs.iter_mut().enumerate() {
                    // With --fragments a flow's first fragment, then its later one.
                    let (f, public) = visit[pos];
                    if !a.fragments || k % 2 == 1 {
                        pos += 1;
                        if pos == visit.len() {
                            pos = 0;
                        }
                    }
                    if o2i {
                        write_o2i(b, f, public);
                    } else {
                        write_i2o(b, f);
                    }
                    if a.fragments {
                        // MF with offset 0, then offset 8 bytes: one datagram per pair.
                        let ident = u16::try_from((n * (BATCH as u64 / 2) + (k / 2) as u64) & 0xffff).unwrap_or(0);
                        b[IDENT..IDENT + 2].copy_from_slice(&ident.to_be_bytes());
                        let ff: u16 = if (k % 2 == 0) != a.out_of_order { 0x2000 } else { 1 };
                        b[FLAGS_FRAG..FLAGS_FRAG + 2].copy_from_slice(&ff.to_be_bytes());
                    }
                }
                let side = if o2i { Side::Outside } else { Side::Inside };
                engine.process(side, now, &mut bufs, &mut verdicts);
                if a.out_of_order {
                    engine.take_released(BATCH, |_, _| {});
                }
            }
            let secs = t0.elapsed().as_secs_f64();
            let cpu = cpu_ns().saturating_sub(c0) as f64 / 1e9;
            let c = engine.counters();
            let fwd = c.fwd_i2o + c.fwd_o2i - before.fwd_i2o - before.fwd_o2i;
            if fwd != batches * BATCH as u64 {
                eprintln!("engine-bench: only {fwd} of {} packets forwarded", batches * BATCH as u64);
                std::process::exit(1);
            }
            (batches * BATCH as u64, secs, cpu)
        }
    };
    let c = engine.counters();
    let report = Report {
        scenario: a.scenario,
        flows: flows_n,
        packets,
        seconds,
        mpps: packets as f64 / seconds / 1e6,
        cpu_seconds,
        cpu_mpps: if cpu_seconds > 0.0 { packets as f64 / cpu_seconds / 1e6 } else { 0.0 },
        ns_per_packet: seconds * 1e9 / packets as f64,
        bytes_per_session: match ceiling {
            Some((bytes, _)) => bytes as f64 / f64::from(flows_n),
            None => engine.memory_bytes() as f64 / f64::from(engine.live_sessions().max(1)),
        },
        sessions: if ceiling.is_some() { flows_n } else { engine.live_sessions() },
        forwarded: c.fwd_i2o + c.fwd_o2i,
        drops: c.total_drops(),
        batch: BATCH,
        order: if a.sequential { "sequential" } else { "random" },
        session_events: a.session_events,
        session_events_ratio: ratio,
        huge_pages_mib: dataplane::xdp::hugepages::status().advised_bytes >> 20,
        thp_mode: dataplane::xdp::hugepages::status().mode,
        anon_huge_mib: anon_huge_mib(),
        serial_ns: ceiling.map(|(_, ns)| ns),
    };
    match serde_json::to_string(&report) {
        Ok(s) => println!("{s}"),
        Err(e) => {
            eprintln!("engine-bench: {e}");
            std::process::exit(1);
        }
    }
}
