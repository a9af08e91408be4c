//! Panic-free big-endian field access.
//!
//! Views check lengths once in their constructors; these helpers are the
//! second line: an out-of-range read yields 0 and an out-of-range write is
//! ignored, so a logic slip can corrupt a field but never abort a worker.
#![forbid(unsafe_code)]

/// Reads the byte at `off`, or 0 if out of range.
#[inline(always)]
pub fn u8_at(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

/// Reads a big-endian `u16` at `off`, or 0 if out of range.
#[inline(always)]
pub fn u16_at(b: &[u8], off: usize) -> u16 {
    match b.get(off..off.wrapping_add(2)) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

/// Reads a big-endian `u32` at `off`, or 0 if out of range.
#[inline(always)]
pub fn u32_at(b: &[u8], off: usize) -> u32 {
    match b.get(off..off.wrapping_add(4)) {
        Some(&[a, c, d, e]) => u32::from_be_bytes([a, c, d, e]),
        _ => 0,
    }
}

/// Reads a big-endian `u64` at `off`, or 0 if out of range.
#[inline(always)]
pub fn u64_at(b: &[u8], off: usize) -> u64 {
    match b.get(off..off.wrapping_add(8)) {
        Some(&[a, c, d, e, f, g, h, i]) => u64::from_be_bytes([a, c, d, e, f, g, h, i]),
        _ => 0,
    }
}

/// Writes the byte at `off` if in range.
#[inline(always)]
pub fn set_u8(b: &mut [u8], off: usize, v: u8) {
    if let Some(x) = b.get_mut(off) {
        *x = v;
    }
}

/// Writes a big-endian `u16` at `off` if in range.
#[inline(always)]
pub fn set_u16(b: &mut [u8], off: usize, v: u16) {
    if let Some(s) = b.get_mut(off..off.wrapping_add(2)) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

/// Writes a big-endian `u32` at `off` if in range.
#[inline(always)]
pub fn set_u32(b: &mut [u8], off: usize, v: u32) {
    if let Some(s) = b.get_mut(off..off.wrapping_add(4)) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_big_endian() {
        let mut b = [0u8; 6];
        set_u32(&mut b, 1, 0x0102_0304);
        assert_eq!(b, [0, 1, 2, 3, 4, 0]);
        assert_eq!(u16_at(&b, 2), 0x0203);
        assert_eq!(u32_at(&b, 1), 0x0102_0304);
        assert_eq!(u8_at(&b, 4), 4);
    }

    #[test]
    fn out_of_range_is_harmless() {
        let mut b = [7u8; 3];
        assert_eq!(u16_at(&b, 2), 0);
        assert_eq!(u32_at(&b, usize::MAX), 0);
        set_u32(&mut b, 1, 0xffff_ffff);
        set_u16(&mut b, usize::MAX, 1);
        assert_eq!(b, [7, 7, 7]);
    }
}
