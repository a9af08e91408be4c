//! The syslog sink: RFC 5424 messages, over UDP (RFC 5426: one message a
//! datagram) or TCP (RFC 6587 section 3.4.1 octet counting:
//! `MSG-LEN SP SYSLOG-MSG`).
//!
//! A message: `<134>1 TIMESTAMP HOSTNAME masq PROCID MSGID [nat@32473 ...] text`
//! (PRI 134 = facility local0 (16) * 8 + severity informational (6),
//! section 6.2.1; TIMESTAMP in UTC with milliseconds, section 6.2.3;
//! MSGID the event name; the structured data element `nat@32473` carries
//! the fields under the documentation enterprise number (RFC 5612); its
//! values escape `"`, `\` and `]` as section 6.3.3 requires).
//!
//! TCP: messages wait in a queue bounded by `buffer` while the collector is
//! away; a full queue loses its oldest message (counted). A lost
//! connection is retried with exponential back-off (100 ms doubling to 5 s).
//! Before each write the connection is checked for the collector's end of
//! stream (a collector that restarts closes it), so messages written after
//! a restart wait for the new connection instead of vanishing into the
//! old one. A message the kernel accepted just before the collector died
//! can still be lost: TCP gives no application acknowledgement (RFC 6587
//! section 4).
//!
//! Invariant: a message goes out whole or not at all as far as masq can
//! tell: after a failed write the connection is dropped and the message is
//! sent again, from its first byte, on the next one.

use super::time;
use dataplane::nat::events::{NatEvent, NatEventKind};
use std::collections::VecDeque;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// PRI: local0.info.
const PRI: u8 = 16 * 8 + 6;
/// Back-off bounds for TCP reconnects.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// `v` escaped for an SD-PARAM value (RFC 5424 section 6.3.3).
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

/// This host's name for the HOSTNAME field (`-` when unknown).
pub fn hostname() -> String {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let h: String = h.trim().chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
    if h.is_empty() {
        "-".into()
    } else {
        h
    }
}

/// One RFC 5424 message for `ev` (no framing, no trailing newline).
pub fn message(ev: &NatEvent, pool: &str, host: &str, pid: u32) -> String {
    let ip = Ipv4Addr::from;
    let name = ev.kind.name();
    let stamp = time::format(ev.time_ms);
    if let NatEventKind::ConfigApplied(g) = ev.kind {
        let sd = format!("[nat@32473 event=\"{name}\" generation=\"{g}\"]");
        return format!("<{PRI}>1 {stamp} {host} masq {pid} {name} {sd} configuration generation {g} in force");
    }
    let mut sd =
        format!("[nat@32473 event=\"{name}\" natEvent=\"{}\" inside=\"{}\"", ev.kind.nat_event(), ip(ev.inside));
    if ev.public != 0 {
        sd += &format!(" public=\"{}\"", ip(ev.public));
    }
    let text = match ev.kind {
        NatEventKind::BlockAllocated | NatEventKind::BlockReleased => {
            sd += &format!(" portStart=\"{}\" portEnd=\"{}\"", ev.port_start, ev.port_end);
            format!("{name} {} -> {} ports {}-{}", ip(ev.inside), ip(ev.public), ev.port_start, ev.port_end)
        }
        NatEventKind::Session(i) => {
            sd += &format!(
                " proto=\"{}\" insidePort=\"{}\" publicPort=\"{}\" cause=\"{}\"",
                i.proto,
                i.inside_port,
                ev.port_start,
                i.change.name()
            );
            let mut t = format!(
                "{name} proto {} {}:{} -> {}:{} ({})",
                i.proto,
                ip(ev.inside),
                i.inside_port,
                ip(ev.public),
                ev.port_start,
                i.change.name()
            );
            if i.remote != 0 {
                sd += &format!(" destination=\"{}\" destinationPort=\"{}\"", ip(i.remote), i.remote_port);
                t += &format!(" to {}:{}", ip(i.remote), i.remote_port);
            }
            t
        }
        k => {
            let reason = k.reason().map_or("", |r| r.name());
            sd += &format!(" reason=\"{reason}\"");
            format!("{name} {} ({reason}): new flows refused", ip(ev.inside))
        }
    };
    sd += &format!(" pool=\"{}\"]", escape(pool));
    format!("<{PRI}>1 {stamp} {host} masq {pid} {name} {sd} {text}")
}

/// `msg` framed by octet counting (RFC 6587 section 3.4.1).
pub fn octet_counted(msg: &str) -> Vec<u8> {
    let mut v = format!("{} ", msg.len()).into_bytes();
    v.extend_from_slice(msg.as_bytes());
    v
}

/// Syslog over UDP.
pub struct SyslogUdp {
    sock: UdpSocket,
    host: String,
}

impl SyslogUdp {
    /// A socket sending to `to`.
    pub fn open(to: SocketAddr) -> std::io::Result<Self> {
        let sock = UdpSocket::bind(if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
        sock.connect(to)?;
        Ok(Self { sock, host: hostname() })
    }
}

impl super::Sink for SyslogUdp {
    fn write(&mut self, ev: &NatEvent, pool: &str) -> std::io::Result<()> {
        self.sock.send(message(ev, pool, &self.host, std::process::id()).as_bytes()).map(drop)
    }
}

/// False if the peer closed `s` (end of stream) or it failed; true if
/// nothing is to be read (the usual state of a syslog connection).
fn alive(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    let r = s.peek(&mut [0u8; 1]);
    let _ = s.set_nonblocking(false);
    match r {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    }
}

/// Syslog over TCP: a bounded queue, reconnect with back-off.
pub struct SyslogTcp {
    to: SocketAddr,
    host: String,
    stream: Option<TcpStream>,
    queue: VecDeque<Vec<u8>>,
    bound: usize,
    lost: Arc<AtomicU64>,
    backoff: Duration,
    next_try: Instant,
}

impl SyslogTcp {
    /// A sink for `to` keeping up to `bound` messages while it is away;
    /// messages pushed out of the queue count in `lost`. It connects on
    /// the first message.
    pub fn new(to: SocketAddr, bound: usize, lost: Arc<AtomicU64>) -> Self {
        Self {
            to,
            host: hostname(),
            stream: None,
            queue: VecDeque::new(),
            bound: bound.max(1),
            lost,
            backoff: BACKOFF_MIN,
            next_try: Instant::now(),
        }
    }

    /// Messages waiting.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Sends what waits, connecting first if the back-off allows.
    fn drain(&mut self) {
        while !self.queue.is_empty() {
            if self.stream.is_none() {
                if Instant::now() < self.next_try {
                    return;
                }
                match TcpStream::connect_timeout(&self.to, Duration::from_secs(1)) {
                    Ok(s) => {
                        let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
                        let _ = s.set_nodelay(true);
                        self.stream = Some(s);
                        self.backoff = BACKOFF_MIN;
                    }
                    Err(_) => {
                        self.next_try = Instant::now() + self.backoff;
                        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                        return;
                    }
                }
            }
            // A collector that closed the connection (a restart) shows as
            // end of stream: reconnect before writing rather than lose the
            // message the kernel would take and then drop.
            if self.stream.as_ref().is_some_and(|s| !alive(s)) {
                self.stream = None;
                continue;
            }
            let (Some(s), Some(m)) = (self.stream.as_mut(), self.queue.front()) else { return };
            if s.write_all(m).is_err() {
                self.stream = None;
                self.next_try = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                return;
            }
            self.queue.pop_front();
        }
    }
}

impl super::Sink for SyslogTcp {
    fn write(&mut self, ev: &NatEvent, pool: &str) -> std::io::Result<()> {
        if self.queue.len() >= self.bound {
            self.queue.pop_front();
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
        self.queue.push_back(octet_counted(&message(ev, pool, &self.host, std::process::id())));
        self.drain();
        Ok(())
    }

    fn tick(&mut self) {
        self.drain();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn ev() -> NatEvent {
        NatEvent {
            time_ms: 1_700_000_000_123,
            kind: NatEventKind::BlockAllocated,
            inside: 0x6440_0102,
            public: 0xcb00_7101,
            port_start: 1024,
            port_end: 1087,
            pool: 0,
        }
    }

    #[test]
    fn rfc5424_message_layout() {
        let m = message(&ev(), "cg\"n]at", "nat1", 42);
        assert_eq!(
            m,
            "<134>1 2023-11-14T22:13:20.123Z nat1 masq 42 block_allocated [nat@32473 event=\"block_allocated\" \
             natEvent=\"14\" inside=\"100.64.1.2\" public=\"203.0.113.1\" portStart=\"1024\" portEnd=\"1087\" \
             pool=\"cg\\\"n\\]at\"] block_allocated 100.64.1.2 -> 203.0.113.1 ports 1024-1087"
        );
        let q =
            NatEvent { kind: NatEventKind::QuotaExceeded(dataplane::nat::DropReason::SubscriberSessionLimit), ..ev() };
        let m = message(&q, "p", "-", 1);
        assert!(m.starts_with("<134>1 2023-11-14T22:13:20.123Z - masq 1 quota_exceeded [nat@32473 event=\"quota_exceeded\" natEvent=\"11\""), "{m}");
        assert!(m.contains(" reason=\"subscriber_session_limit\" pool=\"p\"]"), "{m}");
        let c = message(&NatEvent::config_applied(3, 1_700_000_000_123), "", "h", 1);
        assert_eq!(
            c,
            "<134>1 2023-11-14T22:13:20.123Z h masq 1 config_applied [nat@32473 event=\"config_applied\" \
             generation=\"3\"] configuration generation 3 in force"
        );
    }

    #[test]
    fn octet_counting_frames_by_byte_length() {
        assert_eq!(octet_counted("<134>1 x"), b"8 <134>1 x".to_vec());
        let m = message(&ev(), "é", "h", 1);
        let f = octet_counted(&m);
        let (len, rest) = std::str::from_utf8(&f).unwrap().split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), rest.len());
        assert_ne!(rest.len(), rest.chars().count(), "counted in octets, not characters");
    }

    #[test]
    fn tcp_buffers_while_the_collector_is_away_and_loses_the_oldest_past_the_bound() {
        // A port nobody listens on yet.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to = probe.local_addr().unwrap();
        drop(probe);
        let lost = Arc::new(AtomicU64::new(0));
        let mut s = SyslogTcp::new(to, 3, Arc::clone(&lost));
        for p in 0..5u16 {
            super::super::Sink::write(&mut s, &NatEvent { port_start: p, ..ev() }, "p").unwrap();
        }
        assert_eq!((s.queued(), lost.load(Ordering::Relaxed)), (3, 2));
        let l = std::net::TcpListener::bind(to).unwrap();
        std::thread::sleep(BACKOFF_MAX.min(Duration::from_millis(1700)));
        for _ in 0..50 {
            super::super::Sink::tick(&mut s);
            if s.queued() == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(s.queued(), 0, "sent once the collector is back");
        drop(s);
        let (mut c, _) = l.accept().unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        let mut starts = Vec::new();
        let mut rest = got.as_str();
        while let Some((len, tail)) = rest.split_once(' ') {
            let n: usize = len.parse().unwrap();
            let msg = &tail[..n];
            assert!(msg.starts_with("<134>1 "), "{msg}");
            let ps = msg.split("portStart=\"").nth(1).unwrap().split('"').next().unwrap();
            starts.push(ps.parse::<u16>().unwrap());
            rest = &tail[n..];
        }
        assert_eq!(starts, vec![2, 3, 4], "the newest three, in order");
    }

    #[test]
    fn session_events_carry_ports_and_protocol_and_the_destination_only_when_logged() {
        use dataplane::nat::ports::{SessionChange, SessionInfo};
        let mut i =
            SessionInfo { change: SessionChange::Created, proto: 17, inside_port: 5000, remote: 0, remote_port: 0 };
        let e = NatEvent { kind: NatEventKind::Session(i), port_start: 1030, port_end: 1030, ..ev() };
        let m = message(&e, "p", "h", 1);
        assert!(m.contains(" session_created [nat@32473 event=\"session_created\" natEvent=\"1\""), "{m}");
        assert!(m.contains("proto=\"17\" insidePort=\"5000\" publicPort=\"1030\" cause=\"created\""), "{m}");
        assert!(!m.contains("destination"), "{m}");
        i.change = SessionChange::Expired;
        i.remote = 0xc633_6407;
        i.remote_port = 53;
        let m = message(&NatEvent { kind: NatEventKind::Session(i), ..e }, "p", "h", 1);
        assert!(
            m.contains("natEvent=\"2\"") && m.contains("destination=\"198.51.100.7\" destinationPort=\"53\""),
            "{m}"
        );
        let r = super::super::json::Record::of(&NatEvent { kind: NatEventKind::Session(i), ..e }, "p");
        assert_eq!(
            (r.event.as_str(), r.cause.as_deref(), r.public_port, r.destination_port),
            ("session_deleted", Some("expired"), Some(1030), Some(53))
        );
        assert_eq!(r.port_start, None);
    }
}
