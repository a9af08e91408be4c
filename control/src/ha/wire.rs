//! The HA sync link's messages: length-prefixed, versioned, each
//! authenticated with HMAC-SHA256 (RFC 2104, FIPS 180-4) and numbered.
//!
//! ```text
//! frame   = len:u32 | version:u8 (1) | kind:u8 | seq:u64 | body | mac:[u8; 32]
//!           (len counts what follows it; big-endian; at most MAX_FRAME)
//! mac     = HMAC-SHA256(k, version | kind | seq | body)
//! ```
//!
//! A connection opens with one `Hello` each way, MAC'ed with the shared
//! key: the connecting side's body is its 16-byte nonce, the answer's is
//! the answering side's nonce, the connecting side's nonce and the
//! answering side's role (1: active). Every later message is MAC'ed with
//! the connection's key `HMAC(shared key, "masq-ha-v1" | nonce of the
//! connecting side | nonce of the answering side)` and numbered from 1 in
//! each direction, one more each message: a message of another connection,
//! replayed, reordered or altered fails its MAC or its number, and the
//! connection is closed.
//!
//! `Records` carries a batch of [`dataplane::nat::ha::SyncRecord`]s: a block (tag 1 held, 2
//! released: inside, public, first port, last port: 13 bytes) or a session
//! (tag 3 created, 4 deleted: protocol, inside ip:port, public ip:port,
//! remote ip:port: 20 bytes). A bulk resync is `ResyncBegin`, `Records`...,
//! `ResyncEnd`.
//!
//! The records' encoding is `dataplane::nat::ha`'s (fuzz target `ha_records`).
//!
//! Invariants: [`decode_records`] and [`Frame::read`] never panic and
//! never allocate more than the frame's length (bounded by `MAX_FRAME`);
//! the MAC is checked in constant time before a body is read.
#![forbid(unsafe_code)]

pub use dataplane::nat::ha::{decode_records, encode_records, MAX_RECORDS};
#[cfg(test)]
use dataplane::nat::ha::{ImportedBlock, SyncRecord, SyncedSession};
use ring::hmac;
use std::io::{Read, Write};

/// The protocol's version.
pub const VERSION: u8 = 1;
/// The largest frame after its length prefix.
pub const MAX_FRAME: usize = 1 << 20;
/// Bytes of a frame besides its body: length, version, kind, sequence, MAC.
pub const OVERHEAD: usize = 4 + 1 + 1 + 8 + 32;
const NONCE: usize = 16;

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Opens a connection (nonces, role).
    Hello = 1,
    /// A bulk resync starts: the receiver forgets what it holds.
    ResyncBegin = 2,
    /// A batch of records.
    Records = 3,
    /// The bulk resync is complete.
    ResyncEnd = 4,
    /// Nothing new (once a second of silence).
    Heartbeat = 5,
}

impl Kind {
    fn of(b: u8) -> Option<Self> {
        [Self::Hello, Self::ResyncBegin, Self::Records, Self::ResyncEnd, Self::Heartbeat]
            .into_iter()
            .find(|k| *k as u8 == b)
    }
}

/// Why a connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The socket failed or closed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The length is out of bounds, the version or kind unknown.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// The MAC does not match: another key, or an altered message.
    #[error("authentication failed")]
    Auth,
    /// Not the next message of this connection (replayed or lost).
    #[error("sequence {got}, expected {want}")]
    Sequence {
        /// The message's.
        got: u64,
        /// The one expected.
        want: u64,
    },
}

/// One message, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What it is.
    pub kind: Kind,
    /// Its number.
    pub seq: u64,
    /// Its body.
    pub body: Vec<u8>,
}

fn mac_input(kind: Kind, seq: u64, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(10 + body.len());
    m.push(VERSION);
    m.push(kind as u8);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// A frame's bytes, MAC'ed with `key`.
pub fn encode(key: &hmac::Key, kind: Kind, seq: u64, body: &[u8]) -> Vec<u8> {
    let m = mac_input(kind, seq, body);
    let tag = hmac::sign(key, &m);
    let len = u32::try_from(m.len() + tag.as_ref().len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(4 + m.len() + 32);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&m);
    out.extend_from_slice(tag.as_ref());
    out
}

impl Frame {
    /// Reads one frame from `r` and checks its MAC with `key` and its number.
    pub fn read(r: &mut impl Read, key: &hmac::Key, want_seq: u64) -> Result<Self, WireError> {
        let mut len = [0u8; 4];
        r.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if !(10 + 32..=MAX_FRAME).contains(&len) {
            return Err(WireError::Malformed("length"));
        }
        let mut buf = vec![0u8; len];
        r.read_exact(&mut buf)?;
        Self::check(&buf, key, want_seq)
    }

    /// Checks a frame's bytes after its length prefix.
    pub fn check(buf: &[u8], key: &hmac::Key, want_seq: u64) -> Result<Self, WireError> {
        let Some((m, tag)) = buf.split_at_checked(buf.len().saturating_sub(32)) else {
            return Err(WireError::Malformed("length"));
        };
        if m.len() < 10 || tag.len() != 32 {
            return Err(WireError::Malformed("length"));
        }
        hmac::verify(key, m, tag).map_err(|_| WireError::Auth)?;
        let (head, body) = m.split_at(10);
        let [version, kind, s0, s1, s2, s3, s4, s5, s6, s7] =
            <[u8; 10]>::try_from(head).map_err(|_| WireError::Malformed("header"))?;
        if version != VERSION {
            return Err(WireError::Malformed("version"));
        }
        let kind = Kind::of(kind).ok_or(WireError::Malformed("kind"))?;
        let seq = u64::from_be_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);
        if seq != want_seq {
            return Err(WireError::Sequence { got: seq, want: want_seq });
        }
        Ok(Self { kind, seq, body: body.to_vec() })
    }
}

/// The connection key both ends derive from the shared key and the nonces.
pub fn connection_key(shared: &hmac::Key, dialer: &[u8; NONCE], answerer: &[u8; NONCE]) -> hmac::Key {
    let mut m = b"masq-ha-v1".to_vec();
    m.extend_from_slice(dialer);
    m.extend_from_slice(answerer);
    hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(shared, &m).as_ref())
}

/// A fresh nonce.
pub fn nonce() -> [u8; NONCE] {
    let mut n = [0u8; NONCE];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut n);
    n
}

/// The dialing side's handshake: sends its nonce, reads the answer;
/// returns the connection key and whether the other side is active.
pub fn dial(s: &mut (impl Read + Write), shared: &hmac::Key) -> Result<(hmac::Key, bool), WireError> {
    let mine = nonce();
    s.write_all(&encode(shared, Kind::Hello, 0, &mine))?;
    let f = Frame::read(s, shared, 0)?;
    let (Kind::Hello, Some((theirs, rest))) = (f.kind, f.body.split_first_chunk::<NONCE>()) else {
        return Err(WireError::Malformed("hello"));
    };
    let (Some((echo, role)), true) = (rest.split_first_chunk::<NONCE>(), f.body.len() == 2 * NONCE + 1) else {
        return Err(WireError::Malformed("hello"));
    };
    if echo != &mine {
        return Err(WireError::Auth);
    }
    Ok((connection_key(shared, &mine, theirs), role.first() == Some(&1)))
}

/// The answering side's handshake: reads the dialer's nonce, answers with
/// its own and its role; returns the connection key.
pub fn answer(s: &mut (impl Read + Write), shared: &hmac::Key, active: bool) -> Result<hmac::Key, WireError> {
    let f = Frame::read(s, shared, 0)?;
    let (Kind::Hello, Ok(theirs)) = (f.kind, <[u8; NONCE]>::try_from(f.body.as_slice())) else {
        return Err(WireError::Malformed("hello"));
    };
    let mine = nonce();
    let mut body = mine.to_vec();
    body.extend_from_slice(&theirs);
    body.push(u8::from(active));
    s.write_all(&encode(shared, Kind::Hello, 0, &body))?;
    Ok(connection_key(shared, &theirs, &mine))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, k.as_bytes())
    }

    fn sample() -> Vec<SyncRecord> {
        let block = ImportedBlock { inside: 0x6440_0002, public: 0xcb00_710a, first_port: 1536, last_port: 2047 };
        let session = SyncedSession {
            proto: 17,
            inside: (0x6440_0002, 40000),
            public: (0xcb00_710a, 1600),
            remote: (0xc633_6401, 9),
        };
        vec![
            SyncRecord::Block { held: true, block },
            SyncRecord::Session { live: true, session },
            SyncRecord::Session { live: false, session },
            SyncRecord::Block { held: false, block },
        ]
    }

    #[test]
    fn records_round_trip_at_their_sizes() {
        let rs = sample();
        let body = encode_records(&rs);
        assert_eq!(body.len(), 2 + 13 + 20 + 20 + 13);
        assert_eq!(decode_records(&body), Some(rs));
        assert_eq!(decode_records(&body[..body.len() - 1]), None, "short");
        let mut extra = body.clone();
        extra.push(0);
        assert_eq!(decode_records(&extra), None, "bytes left over");
        let mut bad = body;
        bad[2] = 9;
        assert_eq!(decode_records(&bad), None, "unknown tag");
    }

    #[test]
    fn a_frame_checks_its_key_its_number_and_its_bytes() {
        let k = key("0123456789abcdef0123");
        let f = encode(&k, Kind::Records, 7, &encode_records(&sample()));
        let got = Frame::read(&mut f.as_slice(), &k, 7).expect("valid");
        assert_eq!((got.kind, got.seq, decode_records(&got.body)), (Kind::Records, 7, Some(sample())));
        assert!(matches!(Frame::read(&mut f.as_slice(), &key("another key 0123456"), 7), Err(WireError::Auth)));
        assert!(matches!(Frame::read(&mut f.as_slice(), &k, 8), Err(WireError::Sequence { got: 7, want: 8 })));
        for i in 4..f.len() {
            let mut bad = f.clone();
            bad[i] ^= 0x40;
            assert!(Frame::read(&mut bad.as_slice(), &k, 7).is_err(), "byte {i} altered");
        }
        let mut huge = f.clone();
        huge[..4].copy_from_slice(&(u32::try_from(MAX_FRAME).unwrap_or(u32::MAX) + 1).to_be_bytes());
        assert!(matches!(Frame::read(&mut huge.as_slice(), &k, 7), Err(WireError::Malformed("length"))));
    }

    /// A duplex pipe over two buffers, for the handshake.
    struct Pipe<'a> {
        rx: &'a [u8],
        tx: Vec<u8>,
    }
    impl Read for Pipe<'_> {
        fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
            self.rx.read(b)
        }
    }
    impl Write for Pipe<'_> {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.tx.write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn both_ends_derive_one_connection_key_and_only_with_the_shared_key() {
        let k = key("0123456789abcdef0123");
        // The answerer first needs the dialer's hello: run the dialer once to get it.
        let mut d = Pipe { rx: &[], tx: Vec::new() };
        assert!(dial(&mut d, &k).is_err(), "no answer yet");
        let hello = d.tx.clone();
        let mut a = Pipe { rx: &hello, tx: Vec::new() };
        let ka = answer(&mut a, &k, true).expect("answer");
        // The dialer's nonce is in the answer: replay the same dialer hello to a fresh dialer state.
        let dialer_nonce: [u8; NONCE] = hello[14..14 + NONCE].try_into().unwrap_or([0; NONCE]);
        let answerer = Frame::read(&mut a.tx.as_slice(), &k, 0).expect("answer frame");
        let theirs: [u8; NONCE] = answerer.body[..NONCE].try_into().unwrap_or([0; NONCE]);
        let kd = connection_key(&k, &dialer_nonce, &theirs);
        let m = encode(&kd, Kind::Heartbeat, 1, &[]);
        assert!(Frame::read(&mut m.as_slice(), &ka, 1).is_ok(), "same key both ends");
        assert_eq!(answerer.body[2 * NONCE], 1, "the answer says active");
        let mut wrong = Pipe { rx: &hello, tx: Vec::new() };
        assert!(matches!(answer(&mut wrong, &key("not the shared key!!"), true), Err(WireError::Auth)));
        let mut replayed = Pipe { rx: &a.tx, tx: Vec::new() };
        assert!(dial(&mut replayed, &k).is_err(), "an answer to another dialer's nonce is refused");
    }

    #[test]
    fn arbitrary_bodies_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..600 {
            let body: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x.to_be_bytes()[4]
                })
                .collect();
            let _ = decode_records(&body);
            let _ = Frame::check(&body, &key("0123456789abcdef"), 0);
        }
    }

    #[test]
    fn the_cost_of_a_thousand_new_blocks() {
        // What README's HA section quotes: 1,000 block records in one message
        // (the control loop batches what a 50 ms tick collected).
        let block = ImportedBlock { inside: 1, public: 2, first_port: 1024, last_port: 1535 };
        let rs = vec![SyncRecord::Block { held: true, block }; 1000];
        let bytes = encode(&key("0123456789abcdef"), Kind::Records, 1, &encode_records(&rs)).len();
        assert_eq!(bytes, OVERHEAD + 2 + 13 * 1000);
    }
}
