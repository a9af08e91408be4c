//! The JSON-lines sink: one object a line, appended to a local file that
//! is rotated by size (`path` -> `path.1` -> ... -> `path.keep`, the
//! oldest removed), as logrotate's `size` + `rotate N` would.
//!
//! Field names are stable (scripts and `masq whois` read them):
//! `time_ms` (UTC, ms since the epoch), `time` (the same, RFC 3339),
//! `event` ([`NatEventKind::name`]), `nat_event` (the RFC 8158 value),
//! `generation` (`config_applied`), `inside`, `public` (dotted quads; `public` absent for a refusal of a
//! subscriber without an address), `port_start`, `port_end` (block events),
//! `pool`, `reason` (refusals).
//!
//! Invariants: a line is written whole with one `write` call on a file
//! opened for appending; the live file never grows past `max_bytes` unless
//! one line alone is longer; no more than `keep` rotated files remain.

use super::time;
use dataplane::nat::events::{NatEvent, NatEventKind};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// One event as a JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// UTC, milliseconds since the epoch.
    pub time_ms: u64,
    /// The same instant, RFC 3339.
    #[serde(default)]
    pub time: String,
    /// `block_allocated`, `block_released`, `ports_exhausted`, `quota_exceeded`, `addresses_exhausted`,
    /// `session_created`, `session_deleted`.
    pub event: String,
    /// RFC 8158 natEvent.
    #[serde(default)]
    pub nat_event: u8,
    /// The subscriber (absent for `config_applied`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inside: Option<Ipv4Addr>,
    /// The public address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<Ipv4Addr>,
    /// First port of the block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_start: Option<u16>,
    /// Last port of the block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_end: Option<u16>,
    /// The pool's name (absent for `config_applied`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pool: String,
    /// Why a flow was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The configuration generation now in force (`config_applied`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u32>,
    /// Session events: IP protocol number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u8>,
    /// Session events: the inside port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inside_port: Option<u16>,
    /// Session events: the public port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_port: Option<u16>,
    /// Session events: `created`, `expired`, `evicted` or `flushed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// Session events of a pool with `log_destination`: the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Ipv4Addr>,
    /// Session events of a pool with `log_destination`: its port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<u16>,
}

impl Record {
    /// `ev` of pool `pool`.
    pub fn of(ev: &NatEvent, pool: &str) -> Self {
        let block = matches!(ev.kind, NatEventKind::BlockAllocated | NatEventKind::BlockReleased);
        let generation = match ev.kind {
            NatEventKind::ConfigApplied(g) => Some(g),
            _ => None,
        };
        let sess = match ev.kind {
            NatEventKind::Session(i) => Some(i),
            _ => None,
        };
        let dest = sess.filter(|i| i.remote != 0);
        Self {
            time_ms: ev.time_ms,
            time: time::format(ev.time_ms),
            event: ev.kind.name().to_string(),
            nat_event: ev.kind.nat_event(),
            inside: generation.is_none().then(|| Ipv4Addr::from(ev.inside)),
            public: (ev.public != 0).then(|| Ipv4Addr::from(ev.public)),
            port_start: block.then_some(ev.port_start),
            port_end: block.then_some(ev.port_end),
            pool: if generation.is_some() { String::new() } else { pool.to_string() },
            reason: ev.kind.reason().map(|r| r.name().to_string()),
            generation,
            protocol: sess.map(|i| i.proto),
            inside_port: sess.map(|i| i.inside_port),
            public_port: sess.map(|_| ev.port_start),
            cause: sess.map(|i| i.change.name().to_string()),
            destination: dest.map(|i| Ipv4Addr::from(i.remote)),
            destination_port: dest.map(|i| i.remote_port),
        }
    }

    /// The line, newline included.
    pub fn line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// An appended, size-rotated JSON-lines file.
pub struct JsonFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: File,
    size: u64,
}

/// `path` with `.n` appended.
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl JsonFile {
    /// Opens (creates) `path` for appending.
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self { path: path.to_path_buf(), max_bytes, keep, file, size })
    }

    /// Appends `line`, rotating first if it would push the file past `max_bytes`.
    pub fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        let len = line.len() as u64;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line.as_bytes())?;
        self.size += len;
        Ok(())
    }

    /// `path.keep` removed, every `path.n` becomes `path.n+1`, `path` becomes `path.1`.
    fn rotate(&mut self) -> std::io::Result<()> {
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(rotated(&self.path, self.keep));
            for n in (1..self.keep).rev() {
                let from = rotated(&self.path, n);
                if from.exists() {
                    std::fs::rename(&from, rotated(&self.path, n + 1))?;
                }
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

impl super::Sink for JsonFile {
    fn write(&mut self, ev: &NatEvent, pool: &str) -> std::io::Result<()> {
        self.write_line(&Record::of(ev, pool).line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(port: u16) -> NatEvent {
        NatEvent {
            time_ms: 1_700_000_000_123,
            kind: NatEventKind::BlockAllocated,
            inside: 0x6440_0102,
            public: 0xcb00_7101,
            port_start: port,
            port_end: port + 63,
            pool: 0,
        }
    }

    #[test]
    fn a_line_has_the_stable_field_names() {
        let line = Record::of(&ev(1024), "cgnat").line();
        assert_eq!(
            line,
            "{\"time_ms\":1700000000123,\"time\":\"2023-11-14T22:13:20.123Z\",\"event\":\"block_allocated\",\
             \"nat_event\":14,\"inside\":\"100.64.1.2\",\"public\":\"203.0.113.1\",\"port_start\":1024,\
             \"port_end\":1087,\"pool\":\"cgnat\"}\n"
        );
        let back: Record = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(back, Record::of(&ev(1024), "cgnat"));
        let refused = NatEvent {
            kind: NatEventKind::QuotaExceeded(dataplane::nat::DropReason::SubscriberSessionLimit),
            public: 0,
            ..ev(0)
        };
        let r = Record::of(&refused, "p");
        assert_eq!((r.public, r.port_start, r.reason.as_deref()), (None, None, Some("subscriber_session_limit")));
        let c = Record::of(&NatEvent::config_applied(2, 5), "#65535").line();
        assert_eq!(
            c,
            "{\"time_ms\":5,\"time\":\"1970-01-01T00:00:00.005Z\",\"event\":\"config_applied\",\"nat_event\":0,\"generation\":2}\n"
        );
    }

    #[test]
    fn rotation_keeps_the_newest_files_under_the_bound() {
        let dir = std::env::temp_dir().join(format!("masq-json-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nat.jsonl");
        let line_len = Record::of(&ev(1024), "cgnat").line().len() as u64;
        let mut f = JsonFile::open(&path, line_len * 3, 2).unwrap();
        for i in 0..10u16 {
            super::super::Sink::write(&mut f, &ev(1024 + i * 64), "cgnat").unwrap();
        }
        let lines = |p: &Path| std::fs::read_to_string(p).unwrap().lines().count();
        // 10 lines, 3 a file: live holds the last 1, .1 the 3 before, .2 the 3 before those.
        assert_eq!((lines(&path), lines(&rotated(&path, 1)), lines(&rotated(&path, 2))), (1, 3, 3));
        assert!(!rotated(&path, 3).exists(), "no more than `keep` rotated files");
        let newest: Record = serde_json::from_str(std::fs::read_to_string(&path).unwrap().trim_end()).unwrap();
        assert_eq!(newest.port_start, Some(1024 + 9 * 64));
        for p in [path.clone(), rotated(&path, 1), rotated(&path, 2)] {
            assert!(std::fs::metadata(&p).unwrap().len() <= line_len * 3);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
