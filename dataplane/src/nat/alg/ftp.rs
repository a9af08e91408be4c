//! The FTP control lines the ALG reads (RFC 959 section 4.1, RFC 2428):
//! the client's `PORT h1,h2,h3,h4,p1,p2` and `EPRT |1|a.b.c.d|port|`, the
//! server's `227 ... (h1,h2,h3,h4,p1,p2)` (PASV; RFC 1123 section 4.1.2.6:
//! the numbers may stand anywhere in the text) and `229 ... (|||port|)`
//! (EPSV). Pure functions over a segment's payload, no allocation; the
//! replacement text is written into a caller's fixed buffer.
//!
//! As netfilter's `nf_conntrack_ftp` does, a command is looked for at the
//! start of a segment's payload only, and it must be a whole line there
//! (up to its `\n`): a line split across segments is [`Line::Unparsed`],
//! as is a known command whose arguments do not parse. Anything else is
//! [`Line::Other`].
//!
//! Invariant: no input makes these functions panic (a fuzz target,
//! `ftp`, feeds them arbitrary bytes); a [`Found`]'s span lies within the
//! payload.
#![forbid(unsafe_code)]

/// What an address-carrying line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// Client: `PORT` (RFC 959).
    Port,
    /// Client: `EPRT` with address family 1 (RFC 2428 section 2).
    Eprt,
    /// Server: `227` reply to PASV.
    Pasv,
    /// Server: `229` reply to EPSV (a port only, RFC 2428 section 3).
    Epsv,
}

/// A line the ALG understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Which.
    pub cmd: Cmd,
    /// The address it names (`Epsv`: 0, it names none).
    pub addr: u32,
    /// The port it names.
    pub port: u16,
    /// Where the address and port text starts in the payload (`Eprt`: the
    /// first delimiter).
    pub start: usize,
    /// Where it ends (exclusive; `Eprt`: after the last delimiter).
    pub end: usize,
    /// `Eprt`: its delimiter.
    pub delim: u8,
}

/// What a segment's payload is to the ALG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// Not a line the ALG reads.
    Other,
    /// A line the ALG reads, understood.
    Found(Found),
    /// A line the ALG reads (by its first word), not understood or not
    /// whole in this segment.
    Unparsed,
}

/// Longest replacement text: `|1|255.255.255.255|65535|` is 25 bytes,
/// `255,255,255,255,255,255` 23.
pub const MAX_REPLACEMENT: usize = 32;

/// Reads the payload of a segment from the client (`from_client`) or
/// from the server.
pub fn inspect(payload: &[u8], from_client: bool) -> Line {
    let head = |w: &[u8]| payload.get(..w.len()).is_some_and(|h| h.eq_ignore_ascii_case(w));
    let cmd = if from_client {
        if head(b"PORT ") {
            Cmd::Port
        } else if head(b"EPRT ") {
            Cmd::Eprt
        } else {
            return Line::Other;
        }
    } else if head(b"227 ") || head(b"227-") {
        Cmd::Pasv
    } else if head(b"229 ") || head(b"229-") {
        Cmd::Epsv
    } else {
        return Line::Other;
    };
    // A whole line: up to its LF (a CR before it is not part of the arguments).
    let Some(nl) = payload.iter().position(|&b| b == b'\n') else {
        return Line::Unparsed;
    };
    let line = payload.get(..nl).unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let found = match cmd {
        Cmd::Port => port_args(line, 5).map(|(addr, port, s, e)| (addr, port, s, e, 0)),
        Cmd::Eprt => eprt_args(line, 5),
        Cmd::Pasv => {
            // The first digit after the code starts the numbers.
            let from = line.iter().skip(4).position(u8::is_ascii_digit).map(|i| i + 4);
            from.and_then(|f| port_args(line, f)).map(|(addr, port, s, e)| (addr, port, s, e, 0))
        }
        Cmd::Epsv => epsv_args(line),
    };
    match found {
        Some((addr, port, start, end, delim)) => Line::Found(Found { cmd, addr, port, start, end, delim }),
        None => Line::Unparsed,
    }
}

/// A decimal number of at most `max` at `line[i..]`: its value and the
/// index after it (at most 5 digits, no sign).
fn number(line: &[u8], mut i: usize, max: u32) -> Option<(u32, usize)> {
    let start = i;
    let mut v: u32 = 0;
    while let Some(&c) = line.get(i) {
        if !c.is_ascii_digit() || i - start == 5 {
            break;
        }
        v = v * 10 + u32::from(c - b'0');
        i += 1;
    }
    (i > start && v <= max).then_some((v, i))
}

/// `h1,h2,h3,h4,p1,p2` at `line[from..]` (spaces before it allowed;
/// `PORT`: nothing but spaces after it; a 227 reply: anything after it).
fn port_args(line: &[u8], from: usize) -> Option<(u32, u16, usize, usize)> {
    let mut i = from;
    while line.get(i) == Some(&b' ') {
        i += 1;
    }
    let start = i;
    let mut v = [0u32; 6];
    for (k, x) in v.iter_mut().enumerate() {
        if k > 0 {
            if line.get(i) != Some(&b',') {
                return None;
            }
            i += 1;
        }
        let (n, next) = number(line, i, 255)?;
        *x = n;
        i = next;
    }
    let end = i;
    let is_port_cmd = from == 5;
    if is_port_cmd && line.get(end..).is_some_and(|rest| rest.iter().any(|&c| c != b' ')) {
        return None;
    }
    let [a, b, c, d, p1, p2] = v;
    let port = u16::try_from((p1 << 8) | p2).ok()?;
    Some(((a << 24) | (b << 16) | (c << 8) | d, port, start, end))
}

/// A dotted quad at `line[i..]`, up to the delimiter `delim`.
fn dotted_quad(line: &[u8], mut i: usize, delim: u8) -> Option<(u32, usize)> {
    let mut addr = 0u32;
    for k in 0..4 {
        if k > 0 {
            if line.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let (n, next) = number(line, i, 255)?;
        addr = (addr << 8) | n;
        i = next;
    }
    (line.get(i) == Some(&delim)).then_some((addr, i))
}

/// The RFC 2428 delimiter: an ASCII printable other than a digit.
fn delimiter(c: u8) -> bool {
    (33..=126).contains(&c) && !c.is_ascii_digit()
}

/// `EPRT |1|a.b.c.d|port|` arguments from `line[from..]`.
fn eprt_args(line: &[u8], from: usize) -> Option<(u32, u16, usize, usize, u8)> {
    let mut i = from;
    while line.get(i) == Some(&b' ') {
        i += 1;
    }
    let start = i;
    let d = *line.get(i).filter(|&&c| delimiter(c))?;
    if line.get(i + 1..i + 3) != Some(&[b'1', d][..]) {
        return None; // IPv6 (2) or another family: not ours
    }
    let (addr, i) = dotted_quad(line, i + 3, d)?;
    let (port, i) = number(line, i + 1, 65535)?;
    if line.get(i) != Some(&d) {
        return None;
    }
    let end = i + 1;
    if line.get(end..).is_some_and(|rest| rest.iter().any(|&c| c != b' ')) {
        return None;
    }
    Some((addr, u16::try_from(port).ok()?, start, end, d))
}

/// `229 ... (|||port|)`.
fn epsv_args(line: &[u8]) -> Option<(u32, u16, usize, usize, u8)> {
    let open = line.iter().position(|&c| c == b'(')?;
    let d = *line.get(open + 1).filter(|&&c| delimiter(c))?;
    if line.get(open + 2..open + 4) != Some(&[d, d][..]) {
        return None;
    }
    let (port, i) = number(line, open + 4, 65535)?;
    if line.get(i) != Some(&d) {
        return None;
    }
    Some((0, u16::try_from(port).ok()?, open + 1, i + 1, d))
}

/// Writes `v` in decimal at `out[n..]`; returns the new length.
fn put_decimal(out: &mut [u8; MAX_REPLACEMENT], mut n: usize, v: u32) -> usize {
    let mut digits = [0u8; 10];
    let mut k = 0;
    let mut x = v;
    loop {
        if let Some(d) = digits.get_mut(k) {
            *d = b'0' + u8::try_from(x % 10).unwrap_or(0);
        }
        k += 1;
        x /= 10;
        if x == 0 || k == digits.len() {
            break;
        }
    }
    while k > 0 {
        k -= 1;
        if let (Some(o), Some(&d)) = (out.get_mut(n), digits.get(k)) {
            *o = d;
            n += 1;
        }
    }
    n
}

fn put(out: &mut [u8; MAX_REPLACEMENT], n: usize, c: u8) -> usize {
    match out.get_mut(n) {
        Some(o) => {
            *o = c;
            n + 1
        }
        None => n,
    }
}

/// The replacement of a [`Found`] line's span for `addr:port`:
/// `h1,h2,h3,h4,p1,p2` for PORT and a 227, `|1|a.b.c.d|port|` (its own
/// delimiter) for EPRT, `|||port|` for a 229 (`addr` unused). Returns the
/// length written.
pub fn replacement(f: &Found, addr: u32, port: u16, out: &mut [u8; MAX_REPLACEMENT]) -> usize {
    let octets = addr.to_be_bytes();
    let mut n = 0;
    match f.cmd {
        Cmd::Eprt => {
            for c in [f.delim, b'1', f.delim] {
                n = put(out, n, c);
            }
            for (k, o) in octets.iter().enumerate() {
                if k > 0 {
                    n = put(out, n, b'.');
                }
                n = put_decimal(out, n, u32::from(*o));
            }
            n = put(out, n, f.delim);
            n = put_decimal(out, n, u32::from(port));
            n = put(out, n, f.delim);
        }
        Cmd::Epsv => {
            for _ in 0..3 {
                n = put(out, n, f.delim);
            }
            n = put_decimal(out, n, u32::from(port));
            n = put(out, n, f.delim);
        }
        Cmd::Port | Cmd::Pasv => {
            for (k, v) in octets.iter().chain(port.to_be_bytes().iter()).enumerate() {
                if k > 0 {
                    n = put(out, n, b',');
                }
                n = put_decimal(out, n, u32::from(*v));
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(payload: &[u8], from_client: bool) -> Found {
        match inspect(payload, from_client) {
            Line::Found(f) => f,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(payload)),
        }
    }

    #[test]
    fn port_and_eprt_from_the_client() {
        let p = b"PORT 100,64,0,2,156,64\r\n";
        let f = found(p, true);
        assert_eq!((f.cmd, f.addr, f.port), (Cmd::Port, 0x6440_0002, 40000));
        assert_eq!(&p[f.start..f.end], b"100,64,0,2,156,64");
        let p = b"eprt |1|100.64.0.2|40001|\r\n";
        let f = found(p, true);
        assert_eq!((f.cmd, f.addr, f.port, f.delim), (Cmd::Eprt, 0x6440_0002, 40001, b'|'));
        assert_eq!(&p[f.start..f.end], b"|1|100.64.0.2|40001|");
        // RFC 2428's own example, another delimiter.
        let f = found(b"EPRT !1!132.235.1.2!6275!\n", true);
        assert_eq!((f.addr, f.port, f.delim), (0x84eb_0102, 6275, b'!'));
    }

    #[test]
    fn pasv_and_epsv_replies_from_the_server() {
        let f = found(b"227 Entering Passive Mode (198,51,100,1,195,80).\r\n", false);
        assert_eq!((f.cmd, f.addr, f.port), (Cmd::Pasv, 0xc633_6401, 50000));
        let f = found(b"227 =198,51,100,1,4,1\r\n", false);
        assert_eq!(f.port, 1025);
        let f = found(b"229 Entering Extended Passive Mode (|||6446|)\r\n", false);
        assert_eq!((f.cmd, f.port), (Cmd::Epsv, 6446));
    }

    #[test]
    fn other_lines_and_broken_ones() {
        assert_eq!(inspect(b"USER anonymous\r\n", true), Line::Other);
        assert_eq!(inspect(b"220 hello\r\n", false), Line::Other);
        assert_eq!(inspect(b"PORT 1,2,3,4,5,6\r\n", false), Line::Other, "a server does not send PORT");
        assert_eq!(inspect(b"PORT 100,64,0,2,156", true), Line::Unparsed, "not a whole line");
        assert_eq!(inspect(b"PORT 100,64,0,256,156,64\r\n", true), Line::Unparsed);
        assert_eq!(inspect(b"PORT 100,64,0,2,156\r\n", true), Line::Unparsed);
        assert_eq!(inspect(b"PORT 100,64,0,2,156,64 junk\r\n", true), Line::Unparsed);
        assert_eq!(inspect(b"EPRT |2|::1|5282|\r\n", true), Line::Unparsed);
        assert_eq!(inspect(b"EPRT |1|1.2.3|5282|\r\n", true), Line::Unparsed);
        assert_eq!(inspect(b"EPRT |1|1.2.3.4|99999|\r\n", true), Line::Unparsed);
        assert_eq!(inspect(b"229 (|||x|)\r\n", false), Line::Unparsed);
        assert_eq!(inspect(b"PORT 000001,2,3,4,5,6\r\n", true), Line::Unparsed, "at most 5 digits");
    }

    #[test]
    fn replacements_round_trip() {
        let mut buf = [0u8; MAX_REPLACEMENT];
        for line in [&b"PORT 100,64,0,2,156,64\r\n"[..], b"EPRT |1|100.64.0.2|40001|\r\n", b"EPRT !1!1.2.3.4!1!\r\n"] {
            let f = found(line, true);
            for (addr, port) in [(0xcb00_710a_u32, 1025u16), (u32::MAX, 65535), (0, 0)] {
                let n = replacement(&f, addr, port, &mut buf);
                let mut l = line[..f.start].to_vec();
                l.extend_from_slice(&buf[..n]);
                l.extend_from_slice(&line[f.end..]);
                let g = found(&l, true);
                assert_eq!((g.cmd, g.addr, g.port, g.delim), (f.cmd, addr, port, f.delim));
            }
        }
        for line in [&b"227 Entering Passive Mode (192,168,1,40,195,80).\r\n"[..], b"229 EPSV ok (!!!6446!)\r\n"] {
            let f = found(line, false);
            let n = replacement(&f, 0xcb00_710a, 1025, &mut buf);
            let mut l = line[..f.start].to_vec();
            l.extend_from_slice(&buf[..n]);
            l.extend_from_slice(&line[f.end..]);
            let g = found(&l, false);
            let addr = if f.cmd == Cmd::Epsv { 0 } else { 0xcb00_710a };
            assert_eq!(
                (g.cmd, g.addr, g.port, g.delim),
                (f.cmd, addr, 1025, f.delim),
                "{}",
                String::from_utf8_lossy(&l)
            );
        }
    }
}
