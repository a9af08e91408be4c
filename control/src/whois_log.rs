//! `masq whois --log`: who held a public address and port at a given
//! time, answered from the JSON-lines NAT log ([`crate::natlog::json`]):
//! the subscriber whose port block covered the port then (RFC 6888
//! REQ-12: with block logging the block, not the session, identifies the
//! subscriber; RFC 7422 section 2).
//!
//! The files are read oldest first (`FILE.N` ... `FILE.1`, then `FILE`,
//! the rotation's order), events sorted by time (stable, so equal times
//! keep file order), and replayed up to and including the asked time: a
//! block is held from its `block_allocated` until its `block_released`.
//!
//! Invariant: a block counts as held at `at` only if its allocation was
//! logged at or before `at` and no release of the same block (subscriber,
//! address, port range) follows it at or before `at`. A block whose
//! allocation fell off the rotated files cannot be found: the answer is
//! then "nobody", never a guess. With an RSS port order several blocks'
//! ranges can enclose one port; every such holder is returned.

use crate::natlog::json::{rotated, Record};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// A subscriber holding a block that covers the asked port.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Holder {
    /// The subscriber.
    pub inside: Ipv4Addr,
    /// Its block's first port.
    pub port_start: u16,
    /// Its block's last port.
    pub port_end: u16,
    /// The pool.
    pub pool: String,
    /// When the block was allocated (ms since the epoch).
    pub since_ms: u64,
}

/// Why the log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WhoisLogError {
    /// A file could not be read.
    #[error("{path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A line is not a NAT event.
    #[error("{path}:{line}: not a NAT event: {error}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Its line.
        line: usize,
        /// Why.
        error: serde_json::Error,
    },
}

/// `file`'s rotated siblings that exist (oldest first), then `file`.
pub fn with_rotations(file: &Path) -> Vec<PathBuf> {
    let mut n = 1;
    while rotated(file, n).exists() {
        n += 1;
    }
    let mut v: Vec<PathBuf> = (1..n).rev().map(|i| rotated(file, i)).collect();
    v.push(file.to_path_buf());
    v
}

/// Block events from `files` (in order), parsed.
pub fn read(files: &[PathBuf]) -> Result<Vec<Record>, WhoisLogError> {
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|error| WhoisLogError::Read { path: path.clone(), error })?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let r: Record = serde_json::from_str(line).map_err(|error| WhoisLogError::Parse {
                path: path.clone(),
                line: i + 1,
                error,
            })?;
            out.push(r);
        }
    }
    Ok(out)
}

/// Who held `public`:`port` at `at_ms`, from `records` (in log order).
pub fn lookup(records: &[Record], public: Ipv4Addr, port: u16, at_ms: u64) -> Vec<Holder> {
    let mut evs: Vec<&Record> = records
        .iter()
        .filter(|r| r.public == Some(public) && r.time_ms <= at_ms)
        .filter(|r| matches!((r.port_start, r.port_end), (Some(a), Some(b)) if a <= port && port <= b))
        .collect();
    evs.sort_by_key(|r| r.time_ms);
    let mut held: Vec<Holder> = Vec::new();
    for r in evs {
        let (Some(inside), Some(port_start), Some(port_end)) = (r.inside, r.port_start, r.port_end) else { continue };
        let same = |h: &Holder| h.inside == inside && h.port_start == port_start && h.port_end == port_end;
        match r.event.as_str() {
            "block_allocated" => {
                held.retain(|h| !same(h));
                held.push(Holder { inside, port_start, port_end, pool: r.pool.clone(), since_ms: r.time_ms });
            }
            "block_released" => held.retain(|h| !same(h)),
            _ => {}
        }
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::natlog::json::Record;
    use dataplane::nat::events::{NatEvent, NatEventKind};

    fn rec(t: u64, kind: NatEventKind, inside: u32, start: u16) -> Record {
        let ev = NatEvent {
            time_ms: t,
            kind,
            inside,
            public: 0xcb00_7101,
            port_start: start,
            port_end: start + 63,
            pool: 0,
        };
        Record::of(&ev, "cgnat")
    }

    #[test]
    fn the_holder_is_whoever_had_the_block_at_that_time() {
        use NatEventKind::{BlockAllocated as A, BlockReleased as R};
        let log = vec![
            rec(1000, A, 0x6440_0001, 1024),
            rec(1500, A, 0x6440_0003, 2048),
            rec(2000, R, 0x6440_0001, 1024),
            rec(3000, A, 0x6440_0002, 1024),
        ];
        let ip = Ipv4Addr::new(203, 0, 113, 1);
        let who = |t, p| lookup(&log, ip, p, t).into_iter().map(|h| h.inside).collect::<Vec<_>>();
        assert_eq!(who(999, 1030), Vec::<Ipv4Addr>::new(), "before the allocation");
        assert_eq!(who(1000, 1030), vec![Ipv4Addr::new(100, 64, 0, 1)], "from the allocation's millisecond");
        assert_eq!(who(1999, 1087), vec![Ipv4Addr::new(100, 64, 0, 1)]);
        assert_eq!(who(2000, 1030), Vec::<Ipv4Addr>::new(), "released");
        assert_eq!(who(5000, 1024), vec![Ipv4Addr::new(100, 64, 0, 2)], "the block's next holder");
        assert_eq!(who(5000, 1088), Vec::<Ipv4Addr>::new(), "outside every block");
        assert_eq!(who(5000, 2050), vec![Ipv4Addr::new(100, 64, 0, 3)]);
        assert!(lookup(&log, Ipv4Addr::new(203, 0, 113, 2), 1030, 5000).is_empty(), "another address");
        let h = &lookup(&log, ip, 1030, 5000)[0];
        assert_eq!((h.port_start, h.port_end, h.pool.as_str(), h.since_ms), (1024, 1087, "cgnat", 3000));
    }

    #[test]
    fn rotated_files_are_read_oldest_first() {
        let dir = std::env::temp_dir().join(format!("masq-whois-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("nat.jsonl");
        std::fs::write(rotated(&f, 2), rec(1, NatEventKind::BlockAllocated, 1, 1024).line()).unwrap();
        std::fs::write(rotated(&f, 1), rec(2, NatEventKind::BlockReleased, 1, 1024).line()).unwrap();
        std::fs::write(&f, "").unwrap();
        let files = with_rotations(&f);
        assert_eq!(files, vec![rotated(&f, 2), rotated(&f, 1), f.clone()]);
        let recs = read(&files).unwrap();
        assert_eq!(recs.len(), 2);
        assert!(lookup(&recs, Ipv4Addr::new(203, 0, 113, 1), 1024, 10).is_empty());
        assert_eq!(lookup(&recs, Ipv4Addr::new(203, 0, 113, 1), 1024, 1).len(), 1);
        std::fs::write(&f, "not json\n").unwrap();
        assert!(matches!(read(&files), Err(WhoisLogError::Parse { line: 1, .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
