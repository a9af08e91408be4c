//! NAT event export (RFC 6888 REQ-12): the control side's consumer of the
//! events workers hand over ([`dataplane::nat::events::NatEvent`]), and
//! the sinks it writes them to.
//!
//! | file | holds |
//! |---|---|
//! | [`time`] | ms since the epoch <-> RFC 3339 |
//! | [`json`] | JSON-lines file with size rotation; the [`json::Record`] `masq whois` reads |
//! | [`ipfix`] | IPFIX over UDP (RFC 7011) with RFC 8158 NAT IEs, template refresh |
//! | [`syslog`] | RFC 5424 over UDP, or over TCP with octet counting, a bounded queue and reconnects |
//!
//! Every sink runs on its own thread behind its own bounded queue of
//! [`QUEUE`] events: a slow or absent collector holds back only its own
//! sink, never the control loop and never a worker. An event that does
//! not fit a sink's queue, or that the sink could not write, is counted
//! in that sink's `lost` (`masq_nat_log_lost_total{sink=...}`).
//!
//! Invariant: [`Exporter::send`] never blocks.

pub mod ipfix;
pub mod json;
pub mod syslog;
pub mod time;

use config::{LogSink, SyslogTransport};
use dataplane::nat::events::NatEvent;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The running sinks' loss counters, for `/metrics` (the exporter in
/// force registers them at start and takes them back when dropped).
static LOST: std::sync::Mutex<Vec<(String, Arc<AtomicU64>)>> = std::sync::Mutex::new(Vec::new());

/// Each running sink's name and the events it lost.
pub fn lost_by_sink() -> Vec<(String, u64)> {
    LOST.lock().map(|g| g.iter().map(|(n, c)| (n.clone(), c.load(Ordering::Relaxed))).collect()).unwrap_or_default()
}

/// Events a sink's queue holds.
pub const QUEUE: usize = 65_536;

/// Where events are written.
pub trait Sink: Send {
    /// Writes `ev` (of pool `pool`); an error loses it (counted by the caller).
    fn write(&mut self, ev: &NatEvent, pool: &str) -> std::io::Result<()>;
    /// Called when no event came for a while (retries, flushes).
    fn tick(&mut self) {}
    /// Called when the queue is empty after events (sends what a sink batches).
    fn flush(&mut self) {}
}

/// One running sink.
struct Running {
    name: String,
    tx: Option<crossbeam_channel::Sender<NatEvent>>,
    lost: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The sinks in force.
#[derive(Default)]
pub struct Exporter {
    sinks: Vec<Running>,
    /// What it was started with (sinks, `logging: none` pool names).
    started: (Vec<LogSink>, Vec<String>),
    /// Pools (engine numbering) whose events no sink gets (`logging: none`).
    unlogged: Vec<u16>,
}

/// A sink's label: `json:PATH`, `syslog-udp:ADDR`, `syslog-tcp:ADDR`.
pub fn sink_name(s: &LogSink) -> String {
    match s {
        LogSink::Json { path, .. } => format!("json:{path}"),
        LogSink::Syslog { transport: SyslogTransport::Udp, address, .. } => format!("syslog-udp:{address}"),
        LogSink::Syslog { transport: SyslogTransport::Tcp, address, .. } => format!("syslog-tcp:{address}"),
        LogSink::Ipfix { address, .. } => format!("ipfix:{address}"),
    }
}

fn open(s: &LogSink, lost: &Arc<AtomicU64>) -> std::io::Result<Box<dyn Sink>> {
    let addr = |a: &str| a.parse().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e));
    Ok(match s {
        LogSink::Json { path, max_bytes, keep } => {
            Box::new(json::JsonFile::open(std::path::Path::new(path), *max_bytes, *keep)?)
        }
        LogSink::Syslog { transport: SyslogTransport::Udp, address, .. } => {
            Box::new(syslog::SyslogUdp::open(addr(address)?)?)
        }
        LogSink::Syslog { transport: SyslogTransport::Tcp, address, buffer } => Box::new(syslog::SyslogTcp::new(
            addr(address)?,
            usize::try_from(*buffer).unwrap_or(usize::MAX),
            Arc::clone(lost),
        )),
        LogSink::Ipfix { address, domain, template_refresh_secs } => Box::new(ipfix::Ipfix::open(
            addr(address)?,
            *domain,
            Duration::from_secs(u64::from(*template_refresh_secs)),
        )?),
    })
}

impl Exporter {
    /// Starts a thread for each of `sinks`; `pools` names the engine's pools
    /// by number; events of the pools named in `unlogged` go nowhere. A
    /// sink that cannot be opened is an error (nothing starts).
    pub fn start(sinks: &[LogSink], pools: Vec<String>, unlogged_names: &[String]) -> std::io::Result<Self> {
        let unlogged = pools
            .iter()
            .enumerate()
            .filter(|(_, p)| unlogged_names.contains(p))
            .filter_map(|(i, _)| u16::try_from(i).ok())
            .collect();
        let pools = Arc::new(pools);
        let mut opened = Vec::new();
        for s in sinks {
            let lost = Arc::new(AtomicU64::new(0));
            let sink = open(s, &lost).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", sink_name(s))))?;
            opened.push((sink_name(s), sink, lost));
        }
        let started = (sinks.to_vec(), unlogged_names.to_vec());
        let mut out = Exporter { sinks: Vec::new(), started, unlogged };
        for (name, mut sink, lost) in opened {
            let (tx, rx) = crossbeam_channel::bounded::<NatEvent>(QUEUE);
            let (pools, l) = (Arc::clone(&pools), Arc::clone(&lost));
            let thread = std::thread::Builder::new().name("masq-natlog".into()).spawn(move || loop {
                match rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(first) => {
                        for ev in std::iter::once(first).chain(rx.try_iter()) {
                            let pool =
                                pools.get(usize::from(ev.pool)).map_or_else(|| format!("#{}", ev.pool), Clone::clone);
                            if sink.write(&ev, &pool).is_err() {
                                l.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        sink.flush();
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => sink.tick(),
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                        sink.flush();
                        sink.tick();
                        return;
                    }
                }
            })?;
            out.sinks.push(Running { name, tx: Some(tx), lost, thread: Some(thread) });
        }
        if let Ok(mut g) = LOST.lock() {
            *g = out.counters();
        }
        Ok(out)
    }

    /// Hands `ev` to every sink; a full queue loses it for that sink (counted).
    pub fn send(&self, ev: &NatEvent) {
        // HA sync's session records are never logged (they carry the destination).
        if self.unlogged.contains(&ev.pool) || matches!(ev.kind, dataplane::nat::events::NatEventKind::SessionSync(_)) {
            return;
        }
        for s in &self.sinks {
            if s.tx.as_ref().is_some_and(|tx| tx.try_send(*ev).is_err()) {
                s.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Tells every sink that configuration `generation` is in force.
    pub fn config_applied(&self, generation: u64) {
        let g = u32::try_from(generation).unwrap_or(u32::MAX);
        let ev = NatEvent::config_applied(g, dataplane::nat::events::now_ms());
        for s in &self.sinks {
            if s.tx.as_ref().is_some_and(|tx| tx.try_send(ev).is_err()) {
                s.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The sinks and `logging: none` pools it was started with.
    pub fn config(&self) -> (&[LogSink], &[String]) {
        (&self.started.0, &self.started.1)
    }

    /// Each sink's name and the events it lost.
    pub fn lost(&self) -> Vec<(String, u64)> {
        self.sinks.iter().map(|s| (s.name.clone(), s.lost.load(Ordering::Relaxed))).collect()
    }

    /// The shared counters, to publish (name, lost).
    pub fn counters(&self) -> Vec<(String, Arc<AtomicU64>)> {
        self.sinks.iter().map(|s| (s.name.clone(), Arc::clone(&s.lost))).collect()
    }
}

impl Drop for Exporter {
    /// Lets every sink write what it has queued, then joins it.
    fn drop(&mut self) {
        if let Ok(mut g) = LOST.lock() {
            g.retain(|(n, c)| !self.sinks.iter().any(|s| s.name == *n && Arc::ptr_eq(c, &s.lost)));
        }
        for s in &mut self.sinks {
            s.tx.take();
        }
        for s in &mut self.sinks {
            if let Some(t) = s.thread.take() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::nat::events::NatEventKind;

    #[test]
    fn every_sink_gets_every_event_of_a_logged_pool() {
        let dir = std::env::temp_dir().join(format!("masq-exporter-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let path = dir.join("a.jsonl");
        let sinks = vec![
            LogSink::Json { path: path.display().to_string(), max_bytes: 1 << 20, keep: 1 },
            LogSink::Syslog {
                transport: SyslogTransport::Udp,
                address: udp.local_addr().unwrap().to_string(),
                buffer: 10,
            },
        ];
        let ev = NatEvent {
            time_ms: 5,
            kind: NatEventKind::BlockAllocated,
            inside: 1,
            public: 2,
            port_start: 1024,
            port_end: 1087,
            pool: 1,
        };
        let x = Exporter::start(&sinks, vec!["quiet".into(), "cgnat".into()], &["quiet".into()]).unwrap();
        x.send(&NatEvent { pool: 0, port_start: 2048, ..ev });
        x.send(&ev);
        let mut buf = [0u8; 2048];
        let n = udp.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n]).unwrap().contains("pool=\"cgnat\"]"));
        drop(x);
        let line = std::fs::read_to_string(&path).unwrap();
        assert!(line.contains("\"port_start\":1024") && line.contains("\"pool\":\"cgnat\""), "{line}");
        assert_eq!(line.lines().count(), 1, "nothing of a `logging: none` pool: {line}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
