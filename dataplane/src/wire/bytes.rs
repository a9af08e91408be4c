//! Panic-free big-endian field access, and values kept in network byte
//! order ([`Net32`], [`Net16`]).
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

/// Reads 8 bytes at `off` as they lie, as a little-endian word (0 if out
/// of range): a key packed in network byte order, compared and hashed as
/// it is (the fast lane's address word, see [`Net32::le`]); on a
/// little-endian host one load.
#[inline(always)]
pub fn le64_at(b: &[u8], off: usize) -> u64 {
    match b.get(off..off.wrapping_add(8)) {
        Some(&[a, c, d, e, f, g, h, i]) => u64::from_le_bytes([a, c, d, e, f, g, h, i]),
        _ => 0,
    }
}

/// [`le64_at`] for 4 bytes (the fast lane's port pair).
#[inline(always)]
pub fn le32_at(b: &[u8], off: usize) -> u32 {
    match b.get(off..off.wrapping_add(4)) {
        Some(&[a, c, d, e]) => u32::from_le_bytes([a, c, d, e]),
        _ => 0,
    }
}

/// A 32-bit value (an IPv4 address) kept in network byte order, as a
/// packet carries it, so it is compared with a frame's bytes as they lie
/// ([`Net32::le`]) and written into a frame with `get` then `set_u32`,
/// whose swaps cancel out. [`Net32::get`] is its value.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Net32(pub [u8; 4]);

impl Net32 {
    /// `v` in network byte order.
    #[inline(always)]
    pub const fn new(v: u32) -> Self {
        Net32(v.to_be_bytes())
    }
    /// The value.
    #[inline(always)]
    pub const fn get(self) -> u32 {
        u32::from_be_bytes(self.0)
    }
    /// The bytes read as a little-endian word: how [`le64_at`] packs them
    /// (the first byte lowest).
    #[inline(always)]
    pub const fn le(self) -> u32 {
        u32::from_le_bytes(self.0)
    }
}

impl From<u32> for Net32 {
    #[inline(always)]
    fn from(v: u32) -> Self {
        Net32::new(v)
    }
}

impl core::fmt::Debug for Net32 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "{a}.{b}.{c}.{d}")
    }
}

/// A 16-bit value (a port) kept in network byte order, like [`Net32`].
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Net16(pub [u8; 2]);

impl Net16 {
    /// 0.
    pub const ZERO: Net16 = Net16([0; 2]);
    /// `v` in network byte order.
    #[inline(always)]
    pub const fn new(v: u16) -> Self {
        Net16(v.to_be_bytes())
    }
    /// The value.
    #[inline(always)]
    pub const fn get(self) -> u16 {
        u16::from_be_bytes(self.0)
    }
    /// The bytes read as a little-endian word (see [`Net32::le`]).
    #[inline(always)]
    pub const fn le(self) -> u16 {
        u16::from_le_bytes(self.0)
    }
}

impl From<u16> for Net16 {
    #[inline(always)]
    fn from(v: u16) -> Self {
        Net16::new(v)
    }
}

impl core::fmt::Debug for Net16 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.get())
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
    fn network_order_values_keep_the_wire_bytes() {
        let a = Net32::new(0xc633_6401);
        assert_eq!(a.0, [198, 51, 100, 1]);
        assert_eq!(a.get(), 0xc633_6401);
        assert_eq!(a.le(), u32::from_le_bytes([198, 51, 100, 1]));
        assert_eq!(format!("{a:?}"), "198.51.100.1");
        let p = Net16::from(1234);
        assert_eq!((p.0, p.get(), p.le()), ([0x04, 0xd2], 1234, 0xd204));
        assert_eq!(Net16::ZERO.get(), 0);
        let b = [9, 1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(le64_at(&b, 1), u64::from_le_bytes([1, 2, 3, 4, 5, 6, 7, 8]));
        assert_eq!(le32_at(&b, 5), u32::from_le_bytes([5, 6, 7, 8]));
        assert_eq!((le64_at(&b, 2), le32_at(&b, 6)), (0, 0), "out of range");
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
