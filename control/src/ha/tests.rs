//! The sync link between two [`Ha`]s on loopback, with stand-in workers
//! (threads answering the HA commands): the handshake, the bulk resync,
//! the stream, a wrong key, and the backlog's bound. No root needed.
#![allow(clippy::unwrap_used)]

use super::*;
use dataplane::nat::events::NatEventKind;
use dataplane::nat::ha::ImportedBlock;
use dataplane::worker::Sliced;
use std::sync::atomic::AtomicUsize;

const KEY: &[u8] = b"0123456789abcdef-test-key";

fn block(i: u32) -> SyncRecord {
    SyncRecord::Block {
        held: true,
        block: ImportedBlock { inside: 0x6440_0000 + i, public: 0xcb00_710a, first_port: 1024, last_port: 1535 },
    }
}

/// A stand-in worker: exports `export`, counts what it applies in `applied`.
fn worker(export: Vec<SyncRecord>, applied: Arc<AtomicUsize>) -> CommandTx {
    let (tx, rx) = crossbeam_channel::bounded::<Command>(16);
    std::thread::spawn(move || {
        for c in rx {
            match c {
                Command::HaExport { reply, .. } => drop(reply.send(Sliced { part: export.clone(), next_slot: None })),
                Command::HaApply { records, reply } => {
                    applied.fetch_add(records.len(), Ordering::Relaxed);
                    let _ = reply.send(records.len());
                }
                Command::HaClear { reply } => drop(reply.send(0)),
                Command::HaRole { standby, reply } => drop(reply.send(standby)),
                Command::HaUnpin { reply } => {
                    // Counted as a million applied: the test tells the two apart.
                    applied.fetch_add(1_000_000, Ordering::Relaxed);
                    let _ = reply.send(0);
                }
                _ => {}
            }
        }
    });
    CommandTx::unwoken(tx)
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn plan(active: bool, listen: SocketAddr, peer: SocketAddr, key: &[u8]) -> HaPlan {
    HaPlan {
        active,
        listen,
        peer,
        key: key.to_vec(),
        sync_sessions: true,
        hold: Duration::from_secs(300),
        backlog: 65536,
    }
}

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn event(i: u32) -> NatEvent {
    NatEvent {
        time_ms: 0,
        kind: NatEventKind::BlockAllocated,
        inside: 0x6440_0000 + i,
        public: 0xcb00_710a,
        port_start: 1024,
        port_end: 1535,
        pool: 0,
    }
}

#[test]
fn a_standby_gets_a_resync_then_the_stream_and_a_wrong_key_gets_nothing() {
    let (a_addr, b_addr) = (free_port(), free_port());
    let stop_a = Arc::new(AtomicBool::new(false));
    let stop_b = Arc::new(AtomicBool::new(false));
    let stop_bad = Arc::new(AtomicBool::new(false));
    let applied = Arc::new(AtomicUsize::new(0));
    let bad_applied = Arc::new(AtomicUsize::new(0));
    let exported: Vec<SyncRecord> = (0..3).map(block).collect();
    let a_workers = vec![worker(exported, Arc::new(AtomicUsize::new(0)))];
    let mut a = Ha::start(plan(true, a_addr, b_addr, KEY), a_workers, Arc::clone(&stop_a)).unwrap();
    let sa = a.shared();

    // A standby with another key is refused at the handshake.
    let bad_workers = vec![worker(Vec::new(), Arc::clone(&bad_applied))];
    let bad =
        Ha::start(plan(false, free_port(), a_addr, b"another key, not the shared"), bad_workers, Arc::clone(&stop_bad))
            .unwrap();
    wait("the wrong key's refusal", || sa.stats.auth_failures.load(Ordering::Relaxed) >= 1);
    stop_bad.store(true, Ordering::Relaxed);
    bad.join();
    assert_eq!(bad_applied.load(Ordering::Relaxed), 0, "nothing applied without the key");

    let b_workers = vec![worker(Vec::new(), Arc::clone(&applied))];
    let b_plan = HaPlan { hold: Duration::ZERO, ..plan(false, b_addr, a_addr, KEY) };
    let mut b = Ha::start(b_plan, b_workers, Arc::clone(&stop_b)).unwrap();
    let sb = b.shared();
    wait("the bulk resync", || applied.load(Ordering::Relaxed) == 3 && sb.stats.resyncs.load(Ordering::Relaxed) == 1);
    assert!(sa.stats.connected.load(Ordering::Relaxed) && sb.stats.connected.load(Ordering::Relaxed));

    // 1,000 new blocks over 20 turns of the control loop (1,000 a second).
    let (m0, b0) = (sa.stats.msgs_sent.load(Ordering::Relaxed), sa.stats.bytes_sent.load(Ordering::Relaxed));
    for t in 0..20 {
        for i in 0..50 {
            a.feed(&event(t * 50 + i));
        }
        a.flush();
        std::thread::sleep(Duration::from_millis(50));
    }
    wait("the stream", || applied.load(Ordering::Relaxed) == 1003);
    let msgs = sa.stats.msgs_sent.load(Ordering::Relaxed) - m0;
    let bytes = sa.stats.bytes_sent.load(Ordering::Relaxed) - b0;
    println!("ha sync cost: 1,000 new blocks over 1 s (20 control-loop turns): {msgs} messages, {bytes} bytes");
    assert_eq!((msgs, bytes), (20, 20 * (wire::OVERHEAD as u64 + 2) + 13 * 1000));
    assert_eq!(sb.stats.records_received.load(Ordering::Relaxed), 1003);

    // Events the workers lost: the standby is resynced.
    a.note_events_lost(0);
    a.note_events_lost(2);
    wait("a resync after lost events", || sb.stats.resyncs.load(Ordering::Relaxed) == 2);
    wait("the reconnection", || sa.stats.connected.load(Ordering::Relaxed));

    // The roles swap: the new standby (A) follows the new active box (B)
    // and gets its resync.
    let resyncs = sa.stats.resyncs.load(Ordering::Relaxed);
    sb.set_role(true);
    sa.set_role(false);
    wait("A to follow B", || sa.stats.resyncs.load(Ordering::Relaxed) > resyncs);
    // The hold after the promotion (0 here) over: the pins are lifted, once.
    let before = applied.load(Ordering::Relaxed);
    b.flush();
    b.flush();
    assert_eq!(applied.load(Ordering::Relaxed) - before, 1_000_000, "one unpin after the promotion");
    stop_a.store(true, Ordering::Relaxed);
    stop_b.store(true, Ordering::Relaxed);
    a.join();
    b.join();
}

#[test]
fn a_full_backlog_loses_records_counted_and_resets_the_link() {
    let stop = Arc::new(AtomicBool::new(true));
    let sh = Shared {
        plan: HaPlan { backlog: 1024, ..plan(true, free_port(), free_port(), KEY) },
        stats: HaStats::default(),
        outbox: Mutex::new(Outbox::default()),
        commands: Vec::new(),
        promoted: Mutex::new(None),
        stop,
    };
    sh.queue(vec![block(1); 10]);
    assert_eq!(sh.outbox.lock().unwrap().records, 0, "nothing is queued without a standby");
    sh.outbox.lock().unwrap().open = true;
    sh.queue(vec![block(1); 1000]);
    sh.queue(vec![block(1); 24]);
    assert_eq!((sh.stats.backlog.load(Ordering::Relaxed), sh.stats.lost.load(Ordering::Relaxed)), (1024, 0));
    sh.queue(vec![block(1); 5]);
    let o = sh.outbox.lock().unwrap();
    assert!(o.reset, "the link is reset for a resync");
    assert_eq!((o.records, sh.stats.lost.load(Ordering::Relaxed)), (1024, 5), "bounded; the loss counted");
}
