//! A compiled TRex STL profile (the JSON `deploy/trex/compile.py` prints,
//! TRex's own stream format) replayed by `compare gen --profile`: each
//! stream's packet and the part of TRex's field engine masq's profiles use
//! (`tuple_flow_var`, `flow_var` with `op: inc`, step 1 and `next_var`
//! nesting, `write_flow_var`, `write_mask_flow_var`, `fix_checksum_ipv4`),
//! streams interleaved by their rates. Anything else is refused at load.
//!
//! Invariant: [`Profile::write`] is a pure function of the packet number
//! (field values are counters of it), allocates nothing and never panics;
//! the Ethernet addresses are the caller's.

// Byte extraction by shifts, a schedule of ~100 slots and 16-bit sums:
// the truncating casts are the point (each value is masked or bounded first).
#![allow(clippy::cast_possible_truncation)]

use serde_json::Value;

/// One field-engine step, resolved at load.
#[derive(Debug, Clone)]
enum Op {
    /// Write `value(var) + add` big-endian, `size` bytes at `offset`.
    Write { var: usize, offset: usize, size: usize, add: u64 },
    /// Read-modify-write of a `size`-byte field.
    Mask { var: usize, offset: usize, size: usize, mask: u32, shift: i32, add: u64 },
    /// Recompute the IPv4 header checksum of the header at `offset`.
    FixIpv4 { offset: usize },
}

/// A counter over `min..=max`, stepping once every `div` packets.
#[derive(Debug, Clone)]
struct Var {
    min: u64,
    span: u64,
    div: u64,
    size: usize,
}

#[derive(Debug, Clone)]
struct Stream {
    packet: Vec<u8>,
    pps: f64,
    vars: Vec<Var>,
    ops: Vec<Op>,
}

/// A loaded profile.
#[derive(Debug, Clone)]
pub struct Profile {
    streams: Vec<Stream>,
    /// Which stream each slot of a round of about 100 sends (by rate
    /// share) and that stream's packet number within the round.
    schedule: Vec<(usize, u64)>,
    /// Packets of each stream in a round.
    per_round: Vec<u64>,
}

type Res<T> = Result<T, String>;

fn b64(s: &str) -> Res<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(format!("bad base64 byte {c}")),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

fn u(v: &Value, k: &str) -> Res<u64> {
    v.get(k).and_then(Value::as_u64).ok_or_else(|| format!("missing number {k}"))
}

fn stream(s: &Value) -> Res<Stream> {
    let packet = b64(s.pointer("/packet/binary").and_then(Value::as_str).ok_or("no packet")?)?;
    let pps = s.pointer("/mode/rate/value").and_then(Value::as_f64).unwrap_or(1.0);
    if s.pointer("/mode/rate/type").and_then(Value::as_str) != Some("pps") {
        return Err("only pps rates".into());
    }
    let ins = s.pointer("/vm/instructions").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut names: Vec<(String, usize)> = Vec::new();
    let mut vars: Vec<Var> = Vec::new();
    let mut next: Vec<(usize, String)> = Vec::new();
    for i in &ins {
        let name = i.get("name").and_then(Value::as_str).unwrap_or("").to_string();
        match i.get("type").and_then(Value::as_str) {
            Some("tuple_flow_var") => {
                let (ip0, ip1) = (u(i, "ip_min")?, u(i, "ip_max")?);
                let (p0, p1) = (u(i, "port_min")?, u(i, "port_max")?);
                let nip = ip1.checked_sub(ip0).ok_or("ip_max < ip_min")? + 1;
                names.push((format!("{name}.ip"), vars.len()));
                vars.push(Var { min: ip0, span: nip, div: 1, size: 4 });
                names.push((format!("{name}.port"), vars.len()));
                vars.push(Var {
                    min: p0,
                    span: p1.checked_sub(p0).ok_or("port_max < port_min")? + 1,
                    div: nip,
                    size: 2,
                });
            }
            Some("flow_var") => {
                if i.get("op").and_then(Value::as_str) != Some("inc") || u(i, "step")? != 1 {
                    return Err(format!("flow_var {name}: only op inc, step 1"));
                }
                let (lo, hi) = (u(i, "min_value")?, u(i, "max_value")?);
                if let Some(n) = i.get("next_var").and_then(Value::as_str) {
                    next.push((vars.len(), n.to_string()));
                }
                names.push((name, vars.len()));
                let size = usize::try_from(u(i, "size")?).map_err(|e| e.to_string())?;
                vars.push(Var { min: lo, span: hi.checked_sub(lo).ok_or("max < min")? + 1, div: 1, size });
            }
            _ => {}
        }
    }
    let find = |n: &str| names.iter().find(|(m, _)| m == n).map(|&(_, i)| i).ok_or_else(|| format!("no var {n}"));
    // next_var chains: the outer var steps when the inner one wraps.
    for _ in 0..vars.len() {
        for (inner, outer) in &next {
            let o = find(outer)?;
            let d = vars.get(*inner).map(|v| v.div.saturating_mul(v.span)).ok_or("var")?;
            if let Some(v) = vars.get_mut(o) {
                v.div = d;
            }
        }
    }
    let mut ops = Vec::new();
    for i in &ins {
        let name = i.get("name").and_then(Value::as_str).unwrap_or("");
        match i.get("type").and_then(Value::as_str) {
            Some("tuple_flow_var" | "flow_var") => {}
            Some("write_flow_var") => {
                let var = find(name)?;
                let size = vars.get(var).map_or(0, |v| v.size);
                ops.push(Op::Write {
                    var,
                    offset: usize::try_from(u(i, "pkt_offset")?).map_err(|e| e.to_string())?,
                    size,
                    add: u(i, "add_value")?,
                });
            }
            Some("write_mask_flow_var") => ops.push(Op::Mask {
                var: find(name)?,
                offset: usize::try_from(u(i, "pkt_offset")?).map_err(|e| e.to_string())?,
                size: usize::try_from(u(i, "pkt_cast_size")?).map_err(|e| e.to_string())?,
                mask: u32::try_from(u(i, "mask")?).map_err(|e| e.to_string())?,
                shift: i.get("shift").and_then(Value::as_i64).and_then(|s| i32::try_from(s).ok()).unwrap_or(0),
                add: u(i, "add_value")?,
            }),
            Some("fix_checksum_ipv4") => {
                ops.push(Op::FixIpv4 { offset: usize::try_from(u(i, "pkt_offset")?).map_err(|e| e.to_string())? })
            }
            other => return Err(format!("field-engine instruction {other:?} not supported")),
        }
    }
    Ok(Stream { packet, pps, vars, ops })
}

fn put(f: &mut [u8], off: usize, size: usize, v: u64) {
    if let Some(b) = f.get_mut(off..off + size) {
        for (j, x) in b.iter_mut().enumerate() {
            *x = (v >> (8 * (size - 1 - j))) as u8;
        }
    }
}

fn get(f: &[u8], off: usize, size: usize) -> u64 {
    f.get(off..off + size).map_or(0, |b| b.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x)))
}

impl Profile {
    /// Parses TRex's JSON stream list.
    pub fn parse(json: &str) -> Res<Self> {
        let v: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let list = v.as_array().ok_or("not a stream list")?;
        let streams = list.iter().map(stream).collect::<Res<Vec<_>>>()?;
        if streams.is_empty() {
            return Err("no streams".into());
        }
        let total: f64 = streams.iter().map(|s| s.pps).sum();
        let mut schedule = Vec::new();
        for (i, s) in streams.iter().enumerate() {
            let n = ((s.pps / total) * 100.0).round().max(1.0) as usize;
            schedule.extend(std::iter::repeat_n(i, n));
        }
        // Spread each stream's slots over the round (IMIX interleaved).
        schedule.sort_by_key(|&i| i);
        let len = schedule.len();
        let mut per_round = vec![0u64; streams.len()];
        let mut spread = Vec::with_capacity(len);
        for slot in 0..len {
            let i = schedule.get((slot * 37) % len).copied().unwrap_or(0);
            let c = per_round.get_mut(i).ok_or("stream")?;
            spread.push((i, *c));
            *c += 1;
        }
        Ok(Self { streams, schedule: spread, per_round })
    }

    /// Frames per second of all streams together (the profile's own rate).
    pub fn pps(&self) -> f64 {
        self.streams.iter().map(|s| s.pps).sum()
    }

    /// Writes packet `k` into `f` (source and destination MACs the
    /// caller's); returns its length, 0 when `f` is too short.
    pub fn write(&self, f: &mut [u8], src_mac: [u8; 6], dst_mac: [u8; 6], k: u64) -> u32 {
        let round = self.schedule.len().max(1) as u64;
        let Some(&(i, before)) = self.schedule.get((k % round) as usize) else { return 0 };
        let (Some(s), Some(&per)) = (self.streams.get(i), self.per_round.get(i)) else { return 0 };
        // This stream's own packet number: its slots in earlier rounds and this one.
        let n = (k / round) * per + before;
        let len = s.packet.len();
        let Some(f) = f.get_mut(..len) else { return 0 };
        f.copy_from_slice(&s.packet);
        if let Some(d) = f.get_mut(..6) {
            d.copy_from_slice(&dst_mac);
        }
        if let Some(x) = f.get_mut(6..12) {
            x.copy_from_slice(&src_mac);
        }
        let val = |var: usize| s.vars.get(var).map_or(0, |v| v.min + (n / v.div.max(1)) % v.span.max(1));
        for op in &s.ops {
            match *op {
                Op::Write { var, offset, size, add } => put(f, offset, size, val(var).wrapping_add(add)),
                Op::Mask { var, offset, size, mask, shift, add } => {
                    let mut v = val(var).wrapping_add(add);
                    v = if shift >= 0 { v << shift } else { v >> -shift };
                    let old = get(f, offset, size);
                    put(f, offset, size, (old & !u64::from(mask)) | (v & u64::from(mask)));
                }
                Op::FixIpv4 { offset } => {
                    put(f, offset + 10, 2, 0);
                    let ihl = usize::from(f.get(offset).map_or(5, |b| b & 0x0f)) * 4;
                    let mut sum: u32 = f.get(offset..offset + ihl).map_or(0, |h| {
                        h.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]))).sum()
                    });
                    while sum > 0xffff {
                        sum = (sum & 0xffff) + (sum >> 16);
                    }
                    put(f, offset + 10, 2, u64::from(!(sum as u16)));
                }
            }
        }
        len as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// `compile.py deploy/trex/masq_grid.py --direction 1 -t hosts=64,pool_size=4`,
    /// trimmed to what the loader reads (deploy/trex/check_profiles.py checks
    /// the profile itself).
    const GRID_REV: &str = r#"[{"mode": {"rate": {"type": "pps", "value": 1000000.0}, "type": "continuous"},
      "packet": {"binary": "AAAAAQAAAAAAAgAACABFAAAuAAEAAEARFInGM2QBywBxABOJBAAAGgAAeHh4eHh4eHh4eHh4eHh4eHh4"},
      "vm": {"instructions": [
        {"type": "flow_var", "name": "a", "size": 4, "op": "inc", "next_var": "j", "min_value": 3405803776, "max_value": 3405803779, "step": 1},
        {"type": "flow_var", "name": "j", "size": 2, "op": "inc", "next_var": "b", "min_value": 0, "max_value": 62, "step": 1},
        {"type": "flow_var", "name": "b", "size": 2, "op": "inc", "next_var": null, "min_value": 16, "max_value": 31, "step": 1},
        {"type": "write_flow_var", "name": "a", "pkt_offset": 30, "add_value": 0, "is_big_endian": true},
        {"type": "write_mask_flow_var", "name": "j", "pkt_offset": 36, "pkt_cast_size": 2, "mask": 63, "shift": 0, "add_value": 0},
        {"type": "write_mask_flow_var", "name": "b", "pkt_offset": 36, "pkt_cast_size": 2, "mask": 65472, "shift": 6, "add_value": 0},
        {"type": "fix_checksum_ipv4", "pkt_offset": 14}]}}]"#;

    #[test]
    fn the_grid_profile_reverse_sends_exactly_the_deterministic_ports() {
        let p = Profile::parse(GRID_REV).expect("parse");
        let mut f = [0u8; 2048];
        let mut seen = HashSet::new();
        for k in 0..64 * 63 {
            assert_eq!(p.write(&mut f, [2; 6], [4; 6], k), 60);
            assert!(dataplane::testing::frames::checksums_ok(&f[..60]), "IPv4 checksum");
            let (_, _, dst, dport) = dataplane::testing::frames::tuple(&f[..60]);
            seen.insert((dst, dport));
        }
        let base = 0xcb00_7100u32; // 203.0.113.0
        let want: HashSet<(u32, u16)> =
            (0..64u32).flat_map(|i| (0..63u16).map(move |k| (base + i % 4, 1024 + (i / 4) as u16 * 64 + k))).collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn unknown_instructions_are_refused() {
        let bad = GRID_REV.replace("fix_checksum_ipv4", "fix_checksum_hw");
        assert!(Profile::parse(&bad).is_err());
    }
}
