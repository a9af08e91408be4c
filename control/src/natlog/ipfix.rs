//! The IPFIX sink: NAT events as IPFIX over UDP (RFC 7011) with the NAT
//! information elements of RFC 8158.
//!
//! Message (RFC 7011 section 3.1): version 10, length, export time (s),
//! sequence number (data records sent before this message, mod 2^32),
//! observation domain; then sets (section 3.3.2: id, length). Templates go
//! in a template set (id 2, section 3.4.1) at start and every
//! `template_refresh_secs` (UDP has no other way to recover a collector's
//! templates, section 8.4), in the same message as the data that follows.
//!
//! | template | fields (IE id, length) |
//! |---|---|
//! | 256 port block | observationTimeMilliseconds (323, 8), natEvent (230, 1: 14 allocated, 15 released), sourceIPv4Address (8, 4), postNATSourceIPv4Address (225, 4), portRangeStart (361, 2), portRangeEnd (362, 2) |
//! | 257 limit | observationTimeMilliseconds (323, 8), natEvent (230, 1: 3, 10 or 11), sourceIPv4Address (8, 4), postNATSourceIPv4Address (225, 4; 0 if none), natQuotaExceededEvent (466, 4: 1 session table, 3 per subscriber, 4 subscribers; 0 for ports exhausted) |
//! | 258 session | observationTimeMilliseconds (323, 8), natEvent (230, 1: 1 create, 2 delete), sourceIPv4Address (8, 4), postNATSourceIPv4Address (225, 4), protocolIdentifier (4, 1), sourceTransportPort (7, 2), postNAPTSourceTransportPort (227, 2) |
//! | 259 session with destination | template 258, then destinationIPv4Address (12, 4), destinationTransportPort (11, 2) (pools with `log_destination` only, RFC 6888 REQ-12) |
//!
//! `config_applied` has no natEvent value and is not exported.
//!
//! Invariants: a message never exceeds [`MAX_MESSAGE`] bytes (no IP
//! fragmentation on a 1500-byte path, section 10.3.3); every data set's
//! template was sent in this message or an earlier one.

use dataplane::nat::events::{NatEvent, NatEventKind};
use dataplane::nat::DropReason;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Largest message sent (bytes).
pub const MAX_MESSAGE: usize = 1400;
/// Template ids.
pub const TEMPLATE_BLOCK: u16 = 256;
/// The limit events' template.
pub const TEMPLATE_LIMIT: u16 = 257;
/// The session events' template (no destination).
pub const TEMPLATE_SESSION: u16 = 258;
/// The session events' template with the destination.
pub const TEMPLATE_SESSION_DEST: u16 = 259;
/// Bytes of [`template_set`]: set header, four template headers, 27 field specifiers.
pub const TEMPLATE_SET_LEN: usize = 4 + 4 + 6 * 4 + 4 + 5 * 4 + 4 + 7 * 4 + 4 + 9 * 4;
/// (IE id, length) of template 256.
pub const BLOCK_FIELDS: [(u16, u16); 6] = [(323, 8), (230, 1), (8, 4), (225, 4), (361, 2), (362, 2)];
/// (IE id, length) of template 257.
pub const LIMIT_FIELDS: [(u16, u16); 5] = [(323, 8), (230, 1), (8, 4), (225, 4), (466, 4)];
/// (IE id, length) of template 258.
pub const SESSION_FIELDS: [(u16, u16); 7] = [(323, 8), (230, 1), (8, 4), (225, 4), (4, 1), (7, 2), (227, 2)];
/// (IE id, length) of template 259.
pub const SESSION_DEST_FIELDS: [(u16, u16); 9] =
    [(323, 8), (230, 1), (8, 4), (225, 4), (4, 1), (7, 2), (227, 2), (12, 4), (11, 2)];

/// The template set announcing both templates.
pub fn template_set() -> Vec<u8> {
    let mut body = Vec::new();
    for (id, fields) in [
        (TEMPLATE_BLOCK, &BLOCK_FIELDS[..]),
        (TEMPLATE_LIMIT, &LIMIT_FIELDS[..]),
        (TEMPLATE_SESSION, &SESSION_FIELDS[..]),
        (TEMPLATE_SESSION_DEST, &SESSION_DEST_FIELDS[..]),
    ] {
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(&u16::try_from(fields.len()).unwrap_or(0).to_be_bytes());
        for &(ie, len) in fields {
            body.extend_from_slice(&ie.to_be_bytes());
            body.extend_from_slice(&len.to_be_bytes());
        }
    }
    set(2, &body)
}

/// A set: id, length (header included), body.
fn set(id: u16, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + body.len());
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&u16::try_from(4 + body.len()).unwrap_or(u16::MAX).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// natQuotaExceededEvent for a refusal (RFC 8158 section 4.1.1).
fn quota_value(r: Option<DropReason>) -> u32 {
    match r {
        Some(DropReason::TableFull) => 1,
        Some(DropReason::SubscriberSessionLimit) => 3,
        Some(DropReason::SubscriberTableFull) => 4,
        _ => 0,
    }
}

/// `ev`'s template and data record.
pub fn record(ev: &NatEvent) -> (u16, Vec<u8>) {
    let mut r = Vec::with_capacity(21);
    r.extend_from_slice(&ev.time_ms.to_be_bytes());
    r.push(ev.kind.nat_event());
    r.extend_from_slice(&ev.inside.to_be_bytes());
    r.extend_from_slice(&ev.public.to_be_bytes());
    match ev.kind {
        NatEventKind::BlockAllocated | NatEventKind::BlockReleased => {
            r.extend_from_slice(&ev.port_start.to_be_bytes());
            r.extend_from_slice(&ev.port_end.to_be_bytes());
            (TEMPLATE_BLOCK, r)
        }
        NatEventKind::Session(i) => {
            r.push(i.proto);
            r.extend_from_slice(&i.inside_port.to_be_bytes());
            r.extend_from_slice(&ev.port_start.to_be_bytes());
            if i.remote == 0 {
                return (TEMPLATE_SESSION, r);
            }
            r.extend_from_slice(&i.remote.to_be_bytes());
            r.extend_from_slice(&i.remote_port.to_be_bytes());
            (TEMPLATE_SESSION_DEST, r)
        }
        k => {
            r.extend_from_slice(&quota_value(k.reason()).to_be_bytes());
            (TEMPLATE_LIMIT, r)
        }
    }
}

/// A message of `sets` (header filled in).
pub fn message(export_secs: u32, seq: u32, domain: u32, sets: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(16 + sets.len());
    m.extend_from_slice(&10u16.to_be_bytes());
    m.extend_from_slice(&u16::try_from(16 + sets.len()).unwrap_or(u16::MAX).to_be_bytes());
    m.extend_from_slice(&export_secs.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&domain.to_be_bytes());
    m.extend_from_slice(sets);
    m
}

/// IPFIX over UDP.
pub struct Ipfix {
    sock: UdpSocket,
    domain: u32,
    refresh: Duration,
    last_templates: Option<Instant>,
    /// Data records sent so far (the next message's sequence number).
    seq: u32,
    /// Records waiting, by template: (template, records, count).
    pending: Vec<(u16, Vec<u8>, u32)>,
}

impl Ipfix {
    /// A sink sending to `to` from observation domain `domain`.
    pub fn open(to: SocketAddr, domain: u32, refresh: Duration) -> std::io::Result<Self> {
        let sock = UdpSocket::bind(if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
        sock.connect(to)?;
        Ok(Self { sock, domain, refresh, last_templates: None, seq: 0, pending: Vec::new() })
    }

    fn pending_len(&self) -> usize {
        self.pending.iter().map(|(_, b, _)| 4 + b.len()).sum::<usize>() + 16
    }

    /// Sends what waits as one message (templates first when due).
    fn send(&mut self) -> std::io::Result<()> {
        let due = self.last_templates.is_none_or(|t| t.elapsed() >= self.refresh);
        if self.pending.is_empty() && !due {
            return Ok(());
        }
        let mut sets = Vec::new();
        if due {
            sets.extend_from_slice(&template_set());
            self.last_templates = Some(Instant::now());
        }
        let mut n = 0u32;
        for (id, body, count) in self.pending.drain(..) {
            sets.extend_from_slice(&set(id, &body));
            n += count;
        }
        let now = u32::try_from(dataplane::nat::events::now_ms() / 1000).unwrap_or(u32::MAX);
        let m = message(now, self.seq, self.domain, &sets);
        self.seq = self.seq.wrapping_add(n);
        self.sock.send(&m).map(drop)
    }
}

impl super::Sink for Ipfix {
    fn write(&mut self, ev: &NatEvent, _pool: &str) -> std::io::Result<()> {
        if matches!(ev.kind, NatEventKind::ConfigApplied(_)) {
            return Ok(());
        }
        let (id, rec) = record(ev);
        let templates =
            if self.last_templates.is_none_or(|t| t.elapsed() >= self.refresh) { TEMPLATE_SET_LEN } else { 0 };
        if self.pending_len() + templates + 4 + rec.len() > MAX_MESSAGE {
            self.send()?;
        }
        match self.pending.iter_mut().find(|(t, _, _)| *t == id) {
            Some((_, body, count)) => {
                body.extend_from_slice(&rec);
                *count += 1;
            }
            None => self.pending.push((id, rec, 1)),
        }
        Ok(())
    }

    fn flush(&mut self) {
        let _ = self.send();
    }

    fn tick(&mut self) {
        let _ = self.send();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_len(fields: &[(u16, u16)]) -> usize {
        fields.iter().map(|&(_, l)| usize::from(l)).sum()
    }

    #[test]
    fn template_set_layout_follows_rfc7011_and_rfc8158_lengths() {
        let t = template_set();
        // Set header (4) + four template headers (4 each) + 6, 5, 7 and 9 field specifiers (4 each).
        assert_eq!(t.len(), TEMPLATE_SET_LEN);
        assert_eq!(TEMPLATE_SET_LEN, 128);
        assert_eq!(&t[..4], &[0, 2, 0, 128], "template set id 2, length 128");
        assert_eq!(&t[4..8], &[1, 0, 0, 6], "template 256, 6 fields");
        assert_eq!(
            &t[8..32],
            &[
                0x01, 0x43, 0, 8, // observationTimeMilliseconds, dateTimeMilliseconds
                0, 230, 0, 1, // natEvent, unsigned8
                0, 8, 0, 4, // sourceIPv4Address
                0, 225, 0, 4, // postNATSourceIPv4Address
                0x01, 0x69, 0, 2, // portRangeStart (361), unsigned16
                0x01, 0x6a, 0, 2, // portRangeEnd (362)
            ]
        );
        assert_eq!(&t[32..36], &[1, 1, 0, 5], "template 257, 5 fields");
        assert_eq!(&t[48..56], &[0, 225, 0, 4, 0x01, 0xd2, 0, 4], "natQuotaExceededEvent (466), unsigned32");
        assert_eq!(&t[56..60], &[1, 2, 0, 7], "template 258, 7 fields");
        assert_eq!(&t[76..88], &[0, 4, 0, 1, 0, 7, 0, 2, 0, 227, 0, 2], "protocolIdentifier, ports");
        assert_eq!(&t[88..92], &[1, 3, 0, 9], "template 259, 9 fields");
        assert_eq!(&t[120..128], &[0, 12, 0, 4, 0, 11, 0, 2], "destination address and port");
    }

    #[test]
    fn message_and_data_record_layout() {
        let ev = NatEvent {
            time_ms: 0x0102_0304_0506_0708,
            kind: NatEventKind::BlockAllocated,
            inside: 0x6440_0102,
            public: 0xcb00_7101,
            port_start: 1024,
            port_end: 1087,
            pool: 0,
        };
        let (id, r) = record(&ev);
        assert_eq!(id, TEMPLATE_BLOCK);
        assert_eq!(r.len(), record_len(&BLOCK_FIELDS));
        assert_eq!(r, [1, 2, 3, 4, 5, 6, 7, 8, 14, 100, 64, 1, 2, 203, 0, 113, 1, 4, 0, 4, 63]);
        let q = NatEvent { kind: NatEventKind::QuotaExceeded(DropReason::SubscriberSessionLimit), ..ev };
        let (id, r) = record(&q);
        assert_eq!((id, r.len()), (TEMPLATE_LIMIT, record_len(&LIMIT_FIELDS)));
        assert_eq!(&r[8..], &[11, 100, 64, 1, 2, 203, 0, 113, 1, 0, 0, 0, 3]);
        let m = message(0x6000_0000, 7, 1, &set(256, &record(&ev).1));
        assert_eq!(&m[..16], &[0, 10, 0, 41, 0x60, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 1], "version 10, length 16+4+21");
        assert_eq!(&m[16..20], &[1, 0, 0, 25], "data set 256, length 25");
        let mut info = dataplane::nat::ports::SessionInfo {
            change: dataplane::nat::ports::SessionChange::Created,
            proto: 17,
            inside_port: 5000,
            remote: 0,
            remote_port: 0,
        };
        let s = NatEvent { kind: NatEventKind::Session(info), port_start: 1030, port_end: 1030, ..ev };
        let (id, r) = record(&s);
        assert_eq!((id, r.len()), (TEMPLATE_SESSION, record_len(&SESSION_FIELDS)));
        assert_eq!(&r[8..], &[1, 100, 64, 1, 2, 203, 0, 113, 1, 17, 0x13, 0x88, 4, 6]);
        info.change = dataplane::nat::ports::SessionChange::Expired;
        info.remote = 0xc633_6407;
        info.remote_port = 53;
        let (id, r) = record(&NatEvent { kind: NatEventKind::Session(info), ..s });
        assert_eq!((id, r.len()), (TEMPLATE_SESSION_DEST, record_len(&SESSION_DEST_FIELDS)));
        assert_eq!((r[8], &r[22..]), (2, &[198, 51, 100, 7, 0, 53][..]), "natEvent 2, destination");
    }

    #[test]
    fn sequence_counts_data_records_and_templates_are_refreshed() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut x = Ipfix::open(rx.local_addr().unwrap(), 9, Duration::from_millis(300)).unwrap();
        let ev = NatEvent {
            time_ms: 1,
            kind: NatEventKind::BlockAllocated,
            inside: 1,
            public: 2,
            port_start: 1024,
            port_end: 1087,
            pool: 0,
        };
        let mut buf = [0u8; 2048];
        let mut recv = || {
            let n = rx.recv(&mut buf).unwrap();
            buf[..n].to_vec()
        };
        for _ in 0..3 {
            super::super::Sink::write(&mut x, &ev, "").unwrap();
        }
        super::super::Sink::flush(&mut x);
        let m = recv();
        assert_eq!(u16::from_be_bytes([m[2], m[3]]) as usize, m.len());
        assert_eq!((&m[8..12], &m[12..16]), (&[0, 0, 0, 0][..], &[0, 0, 0, 9][..]), "seq 0, domain 9");
        assert_eq!(&m[16..18], &[0, 2], "templates first");
        assert_eq!(&m[144..148], &[1, 0, 0, 4 + 3 * 21], "three records in one data set");
        super::super::Sink::write(&mut x, &ev, "").unwrap();
        super::super::Sink::flush(&mut x);
        let m = recv();
        assert_eq!((&m[8..12], &m[16..18]), (&[0, 0, 0, 3][..], &[1, 0][..]), "seq 3; no template yet");
        std::thread::sleep(Duration::from_millis(350));
        super::super::Sink::tick(&mut x);
        let m = recv();
        assert_eq!((&m[8..12], &m[16..18], m.len()), (&[0, 0, 0, 4][..], &[0, 2][..], 16 + 128), "refresh");
        // Many records: every message stays under the bound.
        for _ in 0..200 {
            super::super::Sink::write(&mut x, &ev, "").unwrap();
        }
        super::super::Sink::flush(&mut x);
        let mut total = 0;
        while total < 200 {
            let m = recv();
            assert!(m.len() <= MAX_MESSAGE);
            total += (m.len() - 16 - 4) / 21;
        }
        assert_eq!(total, 200);
    }
}
