//! Fragmenting an IPv4 packet for a smaller next-hop MTU (RFC 791 section
//! 3.2, "fragmentation"; RFC 1812 section 5.2.6 for routers).
//!
//! A packet that does not fit is cut into pieces whose payloads are
//! multiples of 8 bytes (but the last); each piece carries the original
//! header with its own total length, fragment offset (the original offset
//! plus its own), More Fragments set on all but the last (and on the last
//! if the original had it) and a fresh header checksum. Options are copied
//! into the first piece only, and into later pieces only those whose copy
//! bit is set (RFC 791 "option type"), padded to a multiple of 4. The L4
//! header and checksum are not touched: they cover the reassembled datagram.
//!
//! Invariant: the pieces' payloads, concatenated in order, are the original
//! payload; no piece's IP total length exceeds the MTU.
#![forbid(unsafe_code)]

use super::bytes::{set_u16, u16_at};
use super::checksum::checksum;
use super::ipv4::{FLAG_DF, FLAG_MF};

/// Why a packet cannot be fragmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragError {
    /// Not a well-formed IPv4 packet after `l2_len` bytes.
    Malformed,
    /// Don't Fragment is set: the sender must hear ICMP "fragmentation needed".
    DontFragment,
    /// The MTU cannot hold the header and 8 bytes of payload.
    MtuTooSmall,
}

/// How a packet is cut: its layout and the piece size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    l2_len: usize,
    hl: usize,
    later_hl: usize,
    payload: usize,
    first_chunk: usize,
    later_chunk: usize,
    /// Number of pieces.
    pub pieces: usize,
}

/// Plans the fragmentation of the IPv4 packet at `frame[l2_len..]` for `mtu`
/// (largest IP total length). `Ok(None)`: it fits as it is.
pub fn plan(frame: &[u8], l2_len: usize, mtu: usize) -> Result<Option<Plan>, FragError> {
    let ip = frame.get(l2_len..).ok_or(FragError::Malformed)?;
    let hl = usize::from(ip.first().ok_or(FragError::Malformed)? & 0x0f) * 4;
    if ip.len() < 20 || hl < 20 || ip.len() < hl {
        return Err(FragError::Malformed);
    }
    let total = usize::from(u16_at(ip, 2));
    if total < hl || total > ip.len() {
        return Err(FragError::Malformed);
    }
    if total <= mtu {
        return Ok(None);
    }
    if u16_at(ip, 6) & FLAG_DF != 0 {
        return Err(FragError::DontFragment);
    }
    let later_hl = 20 + later_options(ip.get(20..hl).ok_or(FragError::Malformed)?, &mut [0u8; 40]);
    let chunk = |h: usize| mtu.checked_sub(h).map(|r| r & !7).filter(|&c| c >= 8);
    let first_chunk = chunk(hl).ok_or(FragError::MtuTooSmall)?;
    let later_chunk = chunk(later_hl).ok_or(FragError::MtuTooSmall)?;
    let payload = total - hl;
    let rest = payload.saturating_sub(first_chunk);
    let pieces = 1 + rest.div_ceil(later_chunk);
    Ok(Some(Plan { l2_len, hl, later_hl, payload, first_chunk, later_chunk, pieces }))
}

/// Copies the options whose copy bit is set into `out`, padded with
/// end-of-list to a multiple of 4; returns the length written.
fn later_options(opts: &[u8], out: &mut [u8; 40]) -> usize {
    let mut i = 0;
    let mut n = 0;
    while let Some(&t) = opts.get(i) {
        let len = match t {
            0 => break,
            1 => 1,
            _ => usize::from(*opts.get(i + 1).unwrap_or(&0)).max(2),
        };
        let Some(opt) = opts.get(i..i + len) else { break };
        if t & 0x80 != 0 {
            if let Some(dst) = out.get_mut(n..n + len) {
                dst.copy_from_slice(opt);
                n += len;
            }
        }
        i += len;
    }
    let padded = n.div_ceil(4) * 4;
    if let Some(pad) = out.get_mut(n..padded) {
        pad.fill(0);
    }
    padded
}

/// Writes piece `i` of `plan` (the link-layer header, then the IPv4
/// fragment) into `out`; returns its frame length, or `None` if `i` is past
/// the last piece or `out` is too short.
// Every index below is inside `o`, which is exactly the piece's length
// (flen = l2 + hl + len, from the same `plan`); each read of the source is
// a checked `get`.
#[allow(clippy::indexing_slicing)]
pub fn write_piece(frame: &[u8], plan: &Plan, i: usize, out: &mut [u8]) -> Option<usize> {
    if i >= plan.pieces {
        return None;
    }
    let l2 = plan.l2_len;
    let ip = frame.get(l2..)?;
    let (start, len, hl) = if i == 0 {
        (0, plan.first_chunk, plan.hl)
    } else {
        let start = plan.first_chunk + (i - 1) * plan.later_chunk;
        (start, plan.later_chunk.min(plan.payload - start), plan.later_hl)
    };
    let flen = l2 + hl + len;
    let o = out.get_mut(..flen)?;
    o[..l2].copy_from_slice(frame.get(..l2)?);
    o[l2..l2 + 20].copy_from_slice(ip.get(..20)?);
    if i == 0 {
        o[l2 + 20..l2 + hl].copy_from_slice(ip.get(20..hl)?);
    } else {
        let mut opts = [0u8; 40];
        let n = later_options(ip.get(20..plan.hl)?, &mut opts);
        o[l2 + 20..l2 + hl].copy_from_slice(opts.get(..n)?);
        o[l2] = 0x40 | u8::try_from(hl / 4).ok()?;
    }
    o[l2 + hl..].copy_from_slice(ip.get(plan.hl + start..plan.hl + start + len)?);
    let orig_ff = u16_at(ip, 6);
    let last = i + 1 == plan.pieces;
    let more = !last || orig_ff & FLAG_MF != 0;
    let offset = (orig_ff & 0x1fff) + u16::try_from(start / 8).ok()?;
    let h = &mut o[l2..l2 + hl];
    set_u16(h, 2, u16::try_from(hl + len).ok()?);
    set_u16(h, 6, (orig_ff & !0x3fff & !FLAG_MF) | if more { FLAG_MF } else { 0 } | offset);
    set_u16(h, 10, 0);
    let c = checksum(h);
    set_u16(h, 10, c);
    Some(flen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::frames::{frame_frag, ip, udp, udp_segment};
    use crate::wire::ipv4::PROTO_UDP;

    fn pieces(f: &[u8], mtu: usize) -> Vec<Vec<u8>> {
        let p = plan(f, 14, mtu).expect("plannable").expect("too big");
        (0..p.pieces)
            .map(|i| {
                let mut out = vec![0u8; 2048];
                let n = write_piece(f, &p, i, &mut out).expect("piece");
                out.truncate(n);
                out
            })
            .collect()
    }

    fn payload_of(piece: &[u8]) -> &[u8] {
        let hl = usize::from(piece[14] & 0x0f) * 4;
        &piece[14 + hl..]
    }

    #[test]
    fn a_fitting_packet_is_left_alone_and_df_is_refused() {
        let f = udp(ip("100.64.0.2"), 1, ip("198.51.100.1"), 2, &[7u8; 1000]);
        assert_eq!(plan(&f, 14, 1500), Ok(None));
        let df = udp(ip("100.64.0.2"), 1, ip("198.51.100.1"), 2, &[7u8; 1472]);
        assert_ne!(df[20] & 0x40, 0, "the builder sets DF");
        assert_eq!(plan(&df, 14, 1400), Err(FragError::DontFragment));
        assert_eq!(plan(&f[..30], 14, 1400), Err(FragError::Malformed));
    }

    #[test]
    fn pieces_fit_the_mtu_and_reassemble_to_the_original() {
        let data: Vec<u8> = (0..2900u32).map(|i| (i % 251) as u8).collect();
        let mut f = udp(ip("100.64.0.2"), 1, ip("198.51.100.1"), 2, &data);
        f[20] &= !0x40; // the builder sets DF
        let ps = pieces(&f, 1400);
        assert_eq!(ps.len(), 3);
        let mut joined = Vec::new();
        for (i, p) in ps.iter().enumerate() {
            assert!(p.len() - 14 <= 1400);
            let ipb = &p[14..];
            let ff = u16::from_be_bytes([ipb[6], ipb[7]]);
            assert_eq!(usize::from(ff & 0x1fff) * 8, joined.len(), "offset of piece {i}");
            assert_eq!(ff & FLAG_MF != 0, i < 2);
            assert_eq!(crate::wire::checksum::checksum(&ipb[..20]), 0, "header checksum of piece {i}");
            joined.extend_from_slice(payload_of(p));
        }
        assert_eq!(joined, f[34..]);
    }

    #[test]
    fn a_fragment_keeps_its_offset_and_more_fragments_flag() {
        // The first half of a bigger datagram (MF set, offset 0), cut again.
        let seg = udp_segment(ip("100.64.0.2"), 1, ip("198.51.100.1"), 2, &[1u8; 1472]);
        let f = frame_frag(ip("100.64.0.2"), ip("198.51.100.1"), PROTO_UDP, &seg[..1480], 64, 9, FLAG_MF | 100);
        let ps = pieces(&f, 1000);
        let last = &ps[ps.len() - 1][14..];
        let ff = u16::from_be_bytes([last[6], last[7]]);
        assert!(ff & FLAG_MF != 0, "the original had more fragments after it");
        let first = &ps[0][14..];
        assert_eq!(u16::from_be_bytes([first[6], first[7]]) & 0x1fff, 100);
        assert_eq!(u16::from_be_bytes([first[4], first[5]]), 9, "the identification is kept");
    }

    #[test]
    fn only_copied_options_go_into_later_pieces() {
        // Options: a copied one (type 0x94, router alert, 4 bytes) and a
        // not-copied one (type 0x07 record route, 7 bytes) + padding.
        let mut later = [0u8; 40];
        let n = later_options(&[0x07, 7, 4, 0, 0, 0, 0, 0x94, 4, 0, 0, 0], &mut later);
        assert_eq!(&later[..n], &[0x94, 4, 0, 0]);
    }
}
