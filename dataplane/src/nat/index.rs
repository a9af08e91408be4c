//! A compact open-addressing index from a flow hash to a session number.
//!
//! Each slot is one `u32`: the top 4 bits are a tag taken from the hash,
//! the next 4 the entry's distance from its home slot ([`FAR`]: that far
//! or further), the low 24 bits the session number plus one (0 means
//! empty). Keys are never stored: a slot is a candidate for a key when its
//! tag is the key's and its distance is the probe's (so below [`FAR`] it
//! has the key's home), which the caller confirms against the session
//! itself (the fast lane's single pass, `nat::fast`, takes every slot with
//! the key's tag as a candidate: the confirmation makes that exact too,
//! and in a table that fits in cache the extra compares cost less than
//! stepping the distance along). Linear probing keeps a probe sequence
//! inside one or two cache lines; deletion shifts later entries back (no
//! tombstones), each by what its distance says: only an entry at [`FAR`]
//! or further needs its home recomputed, so the caller supplies a function
//! that rehashes a session for those.
//!
//! Sizes are not powers of two: a hash's home slot is its low 32 bits
//! scaled to the number of homes (`hash::home`), and [`TAIL`] more slots
//! past the last home let the clusters that start near the end run on
//! without wrapping (the fast lane, which does not wrap, hands the rare
//! key past them to the general path; [`Index`] itself wraps to slot 0).
//! So an index takes its load's worth of memory: at 10M sessions the four
//! take 20.3 B a session at loads 3/4 and 5/6, where the power of two
//! above 3/4 (2^24 slots, a load of 0.6) took 26.8.
//!
//! [`LaterIndex`](super::later::LaterIndex) (`nat/later.rs`) is an index
//! whose inserts may wait for their slot's cache line (the engine's o2i
//! and omap indexes); what it holds back is still part of it.
//!
//! Invariants: the number of homes is at least the number of entries the
//! owner will ever insert divided by the load it asked for (below 1), so
//! probing always reaches an empty slot; every home is below it; session
//! numbers are below [`MAX_ENTRIES`].
#![forbid(unsafe_code)]

use super::hash::home;

/// Largest session number + 1 an index can hold.
pub const MAX_ENTRIES: u32 = (1 << 24) - 1;
/// Slot bits holding the session number plus one.
pub const IDX_MASK: u32 = (1 << 24) - 1;
/// Slot bits holding the tag.
pub const TAG_MASK: u32 = 0xf000_0000;
/// Slot bits holding the distance from home.
pub const DIST_MASK: u32 = 0x0f00_0000;
/// One step of distance, as it sits in a slot.
pub const DIST_ONE: u32 = 1 << 24;
/// The distance a slot holds for "this far or further" (its home then
/// comes from rehashing the session).
pub const FAR: u32 = 15;
/// Slots past the last home: one cache line's worth.
pub const TAIL: usize = 16;

/// The index. See the module docs.
pub struct Index {
    slots: Vec<u32>,
    /// Home slots: `slots.len() - TAIL`.
    homes: usize,
    /// [`Index::prefetch`] asks for a probe's second line too ([`prefetch_from`]).
    two_lines: bool,
}

/// Asks for the cache line of slot `home`, and, if `two_lines`, for the
/// next line too when `home` is among its line's last three slots
/// (`NEAR_END`): at the loads of the engine's compact indexes (3/4, 5/6)
/// a probe from there often ends in the next line, and waiting for that
/// miss later would stall the batch (10M sessions: established 14.1 ->
/// 17.0 M per CPU second). At load 1/2 (1M sessions) the second prefetch
/// costs more than it saves (26.0 -> 24.0).
#[inline(always)]
pub fn prefetch_from(slots: &[u32], home: usize, two_lines: bool) {
    if let Some(s) = slots.get(home) {
        crate::xdp::prefetch::read(s);
        let line_offset = (std::ptr::from_ref(s) as usize) % 64;
        if two_lines && line_offset >= 64 - 4 * NEAR_END {
            if let Some(n) = slots.get(home + NEAR_END) {
                crate::xdp::prefetch::read(n);
            }
        }
    }
}

/// See [`prefetch_from`].
const NEAR_END: usize = 3;

/// The tag bits of a hash as they sit in a slot.
#[inline(always)]
pub fn tag_of(hash: u64) -> u32 {
    // The top 4 bits of the hash, in the top 4 bits of the slot.
    ((hash >> 32) as u32) & TAG_MASK
}

/// The high byte a slot `d` places from the home of a hash with tag `tag`
/// holds (a probe compares it with `slot & !IDX_MASK`).
#[inline(always)]
pub fn probe_key(tag: u32, d: u32) -> u32 {
    tag | (d.min(FAR) << 24)
}

/// The high byte a probe compares one slot on from `want` (a
/// [`probe_key`] of some tag): its distance one more, held at [`FAR`].
/// `far` is that tag's `probe_key(tag, FAR)`, which the probe computes
/// once: a step is then an add, a compare and a conditional move.
#[inline(always)]
pub fn next_probe_key(want: u32, far: u32) -> u32 {
    if want == far {
        want
    } else {
        want + DIST_ONE
    }
}

/// The session a slot names, for a look-up that bounds-checks it next:
/// an empty slot's number wraps past any slab, so the check that every
/// candidate pays tells it apart (the fast lane's and the batch's probes).
#[inline(always)]
pub fn slot_session(s: u32) -> usize {
    (s & IDX_MASK).wrapping_sub(1) as usize
}

/// The slot a key of `hash` naming session `idx` fills at its home
/// (distance 0): its tag and the session number plus one.
#[inline(always)]
pub fn entry_of(hash: u64, idx: u32) -> u32 {
    debug_assert!(idx < MAX_ENTRIES);
    tag_of(hash) | (idx + 1)
}

/// The distance from home a slot's entry records ([`FAR`]: that or more).
#[inline(always)]
fn dist_of(s: u32) -> u32 {
    (s & DIST_MASK) >> 24
}

impl Index {
    /// An index for up to `max_entries` entries (load factor at most 1/2).
    pub fn with_entries(max_entries: u32) -> Self {
        Self::with_load(max_entries, 1, 2)
    }

    /// An index for up to `max_entries` entries at a load factor of at
    /// most `num / den` (below 1): that many homes, rounded up, and
    /// [`TAIL`] more slots; an index of huge-page size is rounded up to
    /// whole huge pages (at most 2 MiB more), so none of it sits on small
    /// pages (the allocator's mapping ends where the index does: a partial
    /// last huge page would be 4 KiB pages, a TLB miss a look-up there).
    /// The engine's indexes take load 1/2 (short probes) up to
    /// `nat::COMPACT_ABOVE_SESSIONS` sessions (its flow indexes 1/4 in the
    /// tables the single pass serves, up to `nat::PREFETCH_ABOVE_SESSIONS`
    /// sessions, in cache, where a slot passed costs more than the
    /// memory); past `COMPACT_ABOVE_SESSIONS`, where their size
    /// is what counts, its flow indexes take 3/4 (the longer probes mostly
    /// stay in the home slot's cache line, and the batch asks for the next
    /// line too) and its mapping indexes, probed only when sessions are
    /// made or go, 5/6.
    pub fn with_load(max_entries: u32, num: u32, den: u32) -> Self {
        let (num, den) = (u64::from(num.max(1)), u64::from(den.max(2)));
        let need = (u64::from(max_entries.max(4)) * den).div_ceil(num.min(den - 1)) + 1;
        let homes = usize::try_from(need).unwrap_or(usize::MAX >> 1);
        const HUGE_SLOTS: usize = crate::xdp::hugepages::HUGE_MIN / 4;
        let len = match homes + TAIL {
            n if n >= HUGE_SLOTS => n.next_multiple_of(HUGE_SLOTS),
            n => n,
        };
        Self { slots: vec![0; len], homes: len - TAIL, two_lines: false }
    }

    /// This index, its prefetches asking for a probe's second line too
    /// when `yes` (see [`prefetch_from`]).
    pub fn asking_two_lines(mut self, yes: bool) -> Self {
        self.two_lines = yes;
        self
    }

    /// Whether a prefetch of a slot asks for its probe's second line too
    /// ([`prefetch_from`]): the batch, which prefetches from [`Index::raw`]'s
    /// slots itself, asks as the index would.
    pub fn asks_two_lines(&self) -> bool {
        self.two_lines
    }

    /// The raw slots and the number of homes, for a batch-long borrow (the
    /// fast lane probes them itself, see `nat::fast`).
    pub fn raw(&self) -> (&[u32], usize) {
        (&self.slots, self.homes)
    }

    /// Faults the slots' pages in now (see `xdp::hugepages::prefault`).
    pub fn prefault(&mut self) {
        crate::xdp::hugepages::prefault(&mut self.slots);
    }

    /// Bytes of memory the slots use.
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * 4
    }

    /// The slot after `pos`, wrapping past the last.
    #[inline(always)]
    fn after(&self, pos: usize) -> usize {
        let p = pos + 1;
        if p < self.slots.len() {
            p
        } else {
            0
        }
    }

    /// How many slots on from `from` `to` lies, wrapping.
    #[inline(always)]
    fn distance(&self, from: usize, to: usize) -> usize {
        if to >= from {
            to - from
        } else {
            to + self.slots.len() - from
        }
    }

    /// The first slot to probe for `hash`; reading it early (a whole batch at
    /// a time) lets the CPU overlap the cache misses.
    #[inline(always)]
    pub fn home_slot(&self, hash: u64) -> u32 {
        self.slots.get(self.home_of(hash)).copied().unwrap_or(0)
    }

    /// Asks for the cache line of `hash`'s home slot (and the next one
    /// when the probe may end there, [`prefetch_from`]), so a later
    /// [`Index::insert`] or [`Index::find`] does not wait for it.
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        self.prefetch_home(self.home_of(hash));
    }

    /// Finds the entry whose tag and home match and for which `is_match`
    /// confirms.
    #[inline(always)]
    pub fn find(&self, hash: u64, mut is_match: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = tag_of(hash);
        let (mut want, far) = (probe_key(tag, 0), probe_key(tag, FAR));
        let mut pos = self.home_of(hash);
        loop {
            let s = self.slots.get(pos).copied().unwrap_or(0);
            if s == 0 {
                return None;
            }
            if s & !IDX_MASK == want {
                let idx = (s & IDX_MASK) - 1;
                if is_match(idx) {
                    return Some(idx);
                }
            }
            pos = self.after(pos);
            want = next_probe_key(want, far);
        }
    }

    /// Inserts `idx` under `hash` (duplicates are the caller's to avoid).
    #[inline(always)]
    pub fn insert(&mut self, hash: u64, idx: u32) {
        self.insert_from(self.home_of(hash), hash, idx);
    }

    /// `hash`'s home slot, for [`Index::prefetch_home`] and
    /// [`Index::insert_from`] or [`Index::insert_entry`] (computed once
    /// for both).
    #[inline(always)]
    pub fn home_of(&self, hash: u64) -> usize {
        home(hash, self.homes)
    }

    /// [`Index::prefetch`] of a home slot from [`Index::home_of`].
    #[inline(always)]
    pub fn prefetch_home(&self, home: usize) {
        prefetch_from(&self.slots, home, self.two_lines);
    }

    /// [`Index::insert`] with `hash`'s home slot (`home`, from
    /// [`Index::home_of`] of this index) already computed.
    #[inline(always)]
    pub fn insert_from(&mut self, home: usize, hash: u64, idx: u32) {
        debug_assert_eq!(home, self.home_of(hash));
        self.insert_entry(home, entry_of(hash, idx));
    }

    /// [`Index::insert_from`] of the [`entry_of`] a hash and a session
    /// number, as a slot at its home holds it.
    #[inline(always)]
    pub fn insert_entry(&mut self, home: usize, entry: u32) {
        let far = probe_key(entry & TAG_MASK, FAR);
        let mut e = entry;
        let mut pos = home;
        loop {
            match self.slots.get_mut(pos) {
                Some(s) if *s == 0 => {
                    *s = e;
                    return;
                }
                Some(_) => {
                    pos = self.after(pos);
                    // The distance one more (held at FAR); the session
                    // number in the low bits never carries into it.
                    // (`next_probe_key`'s step on the whole entry: that
                    // function on the high byte, the number kept apart,
                    // counted 11 more instructions a new session.)
                    if e & !IDX_MASK != far {
                        e += DIST_ONE;
                    }
                }
                None => return,
            }
        }
    }

    /// [`Index::insert_entry`] with the home slot tried on its own first:
    /// in a loop of inserts (`LaterIndex`'s held ones) the probe's set-up
    /// is then paid only by an entry whose home is taken.
    #[inline(always)]
    pub fn insert_entry_home_first(&mut self, home: usize, entry: u32) {
        if let Some(s) = self.slots.get_mut(home) {
            if *s == 0 {
                *s = entry;
                return;
            }
        }
        self.insert_entry(home, entry);
    }

    fn position(&self, hash: u64, idx: u32) -> Option<usize> {
        let tag = tag_of(hash);
        let (mut want, far) = (probe_key(tag, 0), probe_key(tag, FAR));
        let mut pos = self.home_of(hash);
        loop {
            let s = self.slots.get(pos).copied()?;
            if s == 0 {
                return None;
            }
            if s == want | (idx + 1) {
                return Some(pos);
            }
            pos = self.after(pos);
            want = next_probe_key(want, far);
        }
    }

    /// Points the entry for (`hash`, `old`) at `new` (same key, new owner).
    pub fn replace(&mut self, hash: u64, old: u32, new: u32) -> bool {
        match self.position(hash, old) {
            Some(p) => {
                if let Some(s) = self.slots.get_mut(p) {
                    *s = (*s & !IDX_MASK) | (new + 1);
                }
                true
            }
            None => false,
        }
    }

    /// Removes the entry (`hash`, `idx`), shifting the rest of its cluster
    /// back; `rehash` gives the hash of another stored session, asked only
    /// for entries at [`FAR`] or further from home.
    pub fn remove(&mut self, hash: u64, idx: u32, mut rehash: impl FnMut(u32) -> u64) -> bool {
        let Some(mut hole) = self.position(hash, idx) else {
            return false;
        };
        let mut pos = hole;
        loop {
            pos = self.after(pos);
            let s = self.slots.get(pos).copied().unwrap_or(0);
            if s == 0 {
                break;
            }
            let d = match dist_of(s) {
                FAR => self.distance(self.home_of(rehash((s & IDX_MASK) - 1)), pos),
                d => d as usize,
            };
            // Move s into the hole unless its home lies cyclically in
            // (hole, pos]: it comes that much nearer home.
            let gap = self.distance(hole, pos);
            if d >= gap {
                let nd = u32::try_from(d - gap).unwrap_or(FAR);
                if let Some(x) = self.slots.get_mut(hole) {
                    *x = probe_key(s & TAG_MASK, nd) | (s & IDX_MASK);
                }
                hole = pos;
            }
        }
        if let Some(h) = self.slots.get_mut(hole) {
            *h = 0;
        }
        true
    }

    /// Calls `f` with the session numbers [`Index::remove`] of (`hash`,
    /// `idx`) would rehash: the entries at [`FAR`] after its slot up to
    /// the next empty one, looking at most `max` slots on (the sweep asks
    /// for their sessions early).
    #[inline(always)]
    pub fn for_cluster_tail(&self, hash: u64, idx: u32, max: usize, mut f: impl FnMut(u32)) {
        let Some(mut pos) = self.position(hash, idx) else {
            return;
        };
        for _ in 0..max {
            pos = self.after(pos);
            match self.slots.get(pos).copied().unwrap_or(0) {
                0 => return,
                s if dist_of(s) == FAR => f((s & IDX_MASK) - 1),
                _ => {}
            }
        }
    }

    /// Number of occupied slots (tests, metrics; O(capacity)).
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|&&s| s != 0).count()
    }

    /// True if no slot is occupied.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    // Keys are u64s; "sessions" are their positions in a vector; a weak hash
    // (few distinct home slots: the last for three keys in seven, one
    // 15/16 of the way for another) forces long clusters; the last homes'
    // run past the tail and wrap to slot 0, with entries from both homes.
    pub(in crate::nat) fn weak(k: u64) -> u64 {
        let low = match k % 7 {
            0..=2 => u64::from(u32::MAX),
            3 => 0xf000_0000,
            r => r << 29,
        };
        low | ((k % 3) << 60)
    }

    proptest! {
        #[test]
        fn behaves_like_a_map(full in any::<bool>(), ops in proptest::collection::vec((0u64..40, any::<bool>()), 1..300)) {
            let mut idx = if full { Index::with_load(40, 3, 4) } else { Index::with_entries(64) };
            let mut keys: Vec<u64> = Vec::new();
            let mut model: HashMap<u64, u32> = HashMap::new();
            for (k, ins) in ops {
                let found = idx.find(weak(k), |i| keys[i as usize] == k);
                prop_assert_eq!(found, model.get(&k).copied());
                if ins && found.is_none() {
                    let i = u32::try_from(keys.len()).unwrap();
                    keys.push(k);
                    idx.insert(weak(k), i);
                    model.insert(k, i);
                } else if !ins {
                    if let Some(i) = found {
                        let ks = keys.clone();
                        // The sweep's hint names exactly what the removal rehashes.
                        let mut tail = Vec::new();
                        idx.for_cluster_tail(weak(k), i, 1000, |j| tail.push(j));
                        let mut rehashed = Vec::new();
                        let removed = idx.remove(weak(k), i, |j| {
                            rehashed.push(j);
                            weak(ks[j as usize])
                        });
                        prop_assert!(removed);
                        prop_assert_eq!(tail, rehashed);
                        model.remove(&k);
                    }
                }
                prop_assert_eq!(idx.len(), model.len());
            }
            for (k, i) in &model {
                prop_assert_eq!(idx.find(weak(*k), |j| keys[j as usize] == *k), Some(*i));
            }
        }
    }

    #[test]
    fn replace_keeps_key() {
        let mut idx = Index::with_entries(8);
        idx.insert(42, 3);
        assert!(idx.replace(42, 3, 5));
        assert_eq!(idx.find(42, |i| i == 5), Some(5));
        assert_eq!(idx.find(42, |i| i == 3), None);
        assert!(!idx.replace(42, 3, 6));
    }

    #[test]
    fn sizing() {
        // Homes for the load, rounded up and one more, then the tail;
        // from 2 MiB on, whole huge pages (2^19 slots).
        let bytes = |homes: usize| 4 * (homes + TAIL);
        let pages = |n: usize| 4 * n * (1 << 19);
        let idx = Index::with_entries(100_000);
        assert_eq!(idx.memory_bytes(), bytes(200_001));
        assert!(idx.is_empty());
        assert_eq!(Index::with_entries(1_000_000).memory_bytes(), pages(4), "2,000,017 slots: 4 pages");
        // The engine's past 2^21 sessions: flow indexes at 3/4, mapping indexes at 5/6.
        assert_eq!(Index::with_load(10_000_000, 3, 4).memory_bytes(), pages(26), "13,333,351 slots");
        assert_eq!(Index::with_load(10_000_000, 5, 6).memory_bytes(), pages(23), "12,000,017 slots");
        // A load of 1 or more is taken as (den - 1) / den.
        assert_eq!(Index::with_load(10, 4, 4).memory_bytes(), bytes(15));
    }

    #[test]
    fn every_home_is_below_the_number_of_homes() {
        let idx = Index::with_load(1000, 3, 4);
        let (slots, homes) = idx.raw();
        assert_eq!(slots.len(), homes + TAIL);
        for h in [0, u64::from(u32::MAX), u64::MAX, 0xffff_ffff_0000_0000] {
            assert!(home(h, homes) < homes, "{h:#x}");
        }
        assert_eq!(home(u64::from(u32::MAX), homes), homes - 1);
    }
}
