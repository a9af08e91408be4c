//! The sync link's two threads. Both run on every box, whatever its role:
//!
//! - `serve` accepts the peer's connection on `ha.listen`; while this box
//!   is active it answers the handshake, sends a bulk resync (every
//!   worker's blocks and, with `sync_sessions`, sessions, slice by slice
//!   between rounds) and then what [`super::Ha::feed`] queues, with a
//!   heartbeat after a second of silence. One peer at a time.
//! - `follow` dials `ha.peer` while this box is a standby and applies
//!   what an active peer sends: a resync begins by clearing the workers'
//!   state, records go to every worker (each applies its own).
//!
//! Invariants: nothing is applied before the handshake proved the key;
//! a connection that fails a MAC, a number or a read (3 s without a
//! message) is closed; neither thread ever blocks a worker (they talk to
//! workers through the command channels, served between rounds).

use super::wire::{self, Frame, Kind, WireError, MAX_RECORDS};
use super::{HaStats, Shared};
use dataplane::worker::{Command, Sliced};
use ring::hmac;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Without a message for this long, the peer is gone.
const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// A heartbeat after this long without a message.
const HEARTBEAT: Duration = Duration::from_secs(1);

fn shared_key(sh: &Shared) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, &sh.plan.key)
}

/// Starts the listener's thread.
pub(super) fn serve(sh: Arc<Shared>, listener: TcpListener) -> std::io::Result<std::thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    std::thread::Builder::new().name("masq-ha-serve".into()).spawn(move || {
        while !sh.stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((s, peer)) => {
                    let r = serve_one(&sh, s);
                    close_outbox(&sh);
                    match r {
                        Ok(()) => tracing::info!("HA: sync link to {peer} closed"),
                        Err(e) => {
                            count_failure(&sh.stats, &e);
                            tracing::warn!("HA: sync link to {peer} closed: {e}");
                        }
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    })
}

fn count_failure(stats: &HaStats, e: &WireError) {
    if matches!(e, WireError::Auth | WireError::Sequence { .. } | WireError::Malformed(_)) {
        HaStats::add(&stats.auth_failures, 1);
    }
}

fn close_outbox(sh: &Shared) {
    if let Ok(mut o) = sh.outbox.lock() {
        *o = super::Outbox::default();
    }
    sh.stats.backlog.store(0, Ordering::Relaxed);
    sh.stats.connected.store(false, Ordering::Relaxed);
}

/// Sends numbered, MAC'ed messages on one connection.
struct Sender<'a> {
    s: TcpStream,
    key: hmac::Key,
    seq: u64,
    stats: &'a HaStats,
    last: Instant,
}

impl Sender<'_> {
    fn send(&mut self, kind: Kind, body: &[u8]) -> Result<(), WireError> {
        self.seq += 1;
        let f = wire::encode(&self.key, kind, self.seq, body);
        self.s.write_all(&f)?;
        HaStats::add(&self.stats.msgs_sent, 1);
        HaStats::add(&self.stats.bytes_sent, f.len() as u64);
        self.last = Instant::now();
        Ok(())
    }

    fn records(&mut self, rs: &[dataplane::nat::ha::SyncRecord]) -> Result<(), WireError> {
        for chunk in rs.chunks(MAX_RECORDS) {
            self.send(Kind::Records, &wire::encode_records(chunk))?;
            HaStats::add(&self.stats.records_sent, chunk.len() as u64);
        }
        Ok(())
    }
}

/// One standby's connection, while this box is active.
fn serve_one(sh: &Shared, mut s: TcpStream) -> Result<(), WireError> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(READ_TIMEOUT))?;
    s.set_write_timeout(Some(READ_TIMEOUT))?;
    s.set_nodelay(true)?;
    let active = sh.is_active();
    let key = wire::answer(&mut s, &shared_key(sh), active)?;
    if !active {
        return Ok(());
    }
    // Queue from now on: what happens during the resync follows it.
    if let Ok(mut o) = sh.outbox.lock() {
        *o = super::Outbox { open: true, ..super::Outbox::default() };
    }
    sh.stats.connected.store(true, Ordering::Relaxed);
    let mut tx = Sender { s, key, seq: 0, stats: &sh.stats, last: Instant::now() };
    let t0 = Instant::now();
    tx.send(Kind::ResyncBegin, &[])?;
    let mut n = 0;
    for c in &sh.commands {
        let mut from = Some(0);
        while let Some(from_slot) = from {
            let (reply, rx) = crossbeam_channel::bounded(1);
            let cmd = Command::HaExport { sessions: sh.plan.sync_sessions, from_slot, reply };
            if c.send(cmd).is_err() {
                break;
            }
            let Ok(Sliced { part, next_slot }) = rx.recv_timeout(Duration::from_secs(5)) else { break };
            n += part.len();
            tx.records(&part)?;
            from = next_slot;
        }
    }
    tx.send(Kind::ResyncEnd, &[])?;
    HaStats::add(&sh.stats.resyncs, 1);
    tracing::info!("HA: bulk resync sent to the standby: {n} records in {} ms", t0.elapsed().as_millis());
    while !sh.stop.load(Ordering::Relaxed) && sh.is_active() {
        let (batches, reset) = match sh.outbox.lock() {
            Ok(mut o) => {
                let b = std::mem::take(&mut o.batches);
                o.records = 0;
                (b, o.reset)
            }
            Err(_) => break,
        };
        sh.stats.backlog.store(0, Ordering::Relaxed);
        if reset {
            tracing::warn!("HA: the standby fell behind (backlog full): link reset, it will be resynced");
            return Ok(());
        }
        for b in &batches {
            tx.records(b)?;
        }
        if batches.is_empty() {
            if tx.last.elapsed() >= HEARTBEAT {
                tx.send(Kind::Heartbeat, &[])?;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(())
}

/// Starts the dialer's thread.
pub(super) fn follow(sh: Arc<Shared>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("masq-ha-follow".into()).spawn(move || {
        let mut said_unreachable = false;
        while !sh.stop.load(Ordering::Relaxed) {
            if sh.is_active() {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            match TcpStream::connect_timeout(&sh.plan.peer, Duration::from_secs(1)) {
                Ok(s) => {
                    said_unreachable = false;
                    let r = follow_one(&sh, s);
                    sh.stats.connected.store(false, Ordering::Relaxed);
                    if let Err(e) = r {
                        count_failure(&sh.stats, &e);
                        tracing::warn!("HA: sync link from {} closed: {e}", sh.plan.peer);
                    }
                }
                Err(e) if !said_unreachable => {
                    said_unreachable = true;
                    tracing::info!("HA: peer {} not reachable ({e}); trying again", sh.plan.peer);
                }
                Err(_) => {}
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
}

/// One connection to the active peer, while this box is a standby.
fn follow_one(sh: &Shared, mut s: TcpStream) -> Result<(), WireError> {
    s.set_read_timeout(Some(READ_TIMEOUT))?;
    s.set_write_timeout(Some(READ_TIMEOUT))?;
    let (key, peer_active) = wire::dial(&mut s, &shared_key(sh))?;
    if !peer_active {
        return Ok(());
    }
    sh.stats.connected.store(true, Ordering::Relaxed);
    tracing::info!("HA: following the active peer {}", sh.plan.peer);
    let mut want = 1;
    while !sh.stop.load(Ordering::Relaxed) && !sh.is_active() {
        let f = Frame::read(&mut s, &key, want)?;
        want += 1;
        HaStats::add(&sh.stats.msgs_received, 1);
        HaStats::add(&sh.stats.bytes_received, (f.body.len() + wire::OVERHEAD) as u64);
        match f.kind {
            Kind::ResyncBegin => {
                let cleared: usize = sh.ask_all(|reply| Command::HaClear { reply }).into_iter().sum();
                tracing::info!("HA: bulk resync from the active peer ({cleared} sessions cleared first)");
            }
            Kind::Records => {
                let rs = wire::decode_records(&f.body).ok_or(WireError::Malformed("records"))?;
                HaStats::add(&sh.stats.records_received, rs.len() as u64);
                let rs = Arc::new(rs);
                sh.ask_all(|reply| Command::HaApply { records: Arc::clone(&rs), reply });
            }
            Kind::ResyncEnd => {
                HaStats::add(&sh.stats.resyncs, 1);
                tracing::info!("HA: bulk resync complete");
            }
            Kind::Heartbeat | Kind::Hello => {}
        }
    }
    Ok(())
}
