//! A compact open-addressing index from a flow hash to a session number.
//!
//! Each slot is one `u32`: the high 8 bits are a tag taken from the hash,
//! the low 24 bits are the session number plus one (0 means empty). Keys are
//! never stored: a tag match is confirmed by the caller against the session
//! itself. Linear probing keeps a probe sequence inside one or two cache
//! lines; deletion shifts later entries back (no tombstones), which needs the
//! home slot of an entry, so the caller supplies a function that rehashes a
//! session.
//!
//! [`LaterIndex`] is an index whose inserts may wait for their slot's cache
//! line (the engine's o2i and omap indexes); what it holds back is still
//! part of it.
//!
//! Invariants: capacity is a power of two and larger than the number of
//! entries the owner will ever insert (so probing always reaches an empty
//! slot): at least 4/3 of it ([`Index::with_load`]; twice it for the
//! flow indexes of tables that fit in the caches, and for the subscriber
//! index); session numbers are below [`MAX_ENTRIES`].
#![forbid(unsafe_code)]

use super::hash::bucket;

/// Largest session number + 1 an index can hold.
pub const MAX_ENTRIES: u32 = (1 << 24) - 1;
/// Slot bits holding the session number plus one.
pub const IDX_MASK: u32 = (1 << 24) - 1;

/// The index. See the module docs.
pub struct Index {
    slots: Vec<u32>,
    mask: usize,
}

/// The tag bits of a hash as they sit in a slot.
#[inline(always)]
pub fn tag_of(hash: u64) -> u32 {
    // The top 8 bits of the hash, in the top 8 bits of the slot.
    ((hash >> 32) as u32) & !IDX_MASK
}

impl Index {
    /// An index for up to `max_entries` entries (load factor at most 1/2).
    pub fn with_entries(max_entries: u32) -> Self {
        Self::with_load(max_entries, 1, 2)
    }

    /// An index for up to `max_entries` entries at a load factor of at
    /// most `num / den` (below 1): the smallest power of two of slots that
    /// keeps it. The engine's four indexes take 3/4 past the caches, which
    /// at 10M sessions halves them (2^24 slots instead of 2^25 at 1/2, a
    /// load of 0.6): the longer probes stay in the home slot's cache line,
    /// and the batch's prefetch looks along that line for the session to
    /// fetch. Smaller tables keep the flow indexes at 1/2 (7 instructions
    /// a packet less at 10k sessions).
    pub fn with_load(max_entries: u32, num: u32, den: u32) -> Self {
        let (num, den) = (u64::from(num.max(1)), u64::from(den.max(2)));
        let need = (u64::from(max_entries.max(4)) * den).div_ceil(num.min(den - 1));
        let cap = (need + 1).next_power_of_two();
        let cap = usize::try_from(cap).unwrap_or(usize::MAX >> 1);
        Self { slots: vec![0; cap], mask: cap - 1 }
    }

    /// The raw slots and the position mask, for a batch-long borrow (the
    /// fast lane probes them itself, see `nat::fast`).
    pub fn raw(&self) -> (&[u32], usize) {
        (&self.slots, self.mask)
    }

    /// Faults the slots' pages in now (see `xdp::hugepages::prefault`).
    pub fn prefault(&mut self) {
        crate::xdp::hugepages::prefault(&mut self.slots);
    }

    /// Bytes of memory the slots use.
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * 4
    }

    /// The first slot to probe for `hash`; reading it early (a whole batch at
    /// a time) lets the CPU overlap the cache misses.
    #[inline(always)]
    pub fn home_slot(&self, hash: u64) -> u32 {
        self.slots.get(bucket(hash, self.mask)).copied().unwrap_or(0)
    }

    /// Asks for the cache line of `hash`'s home slot, so a later
    /// [`Index::insert`] or [`Index::find`] does not wait for it.
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        if let Some(s) = self.slots.get(bucket(hash, self.mask)) {
            crate::xdp::prefetch::read(s);
        }
    }

    /// Finds the entry whose tag matches and for which `is_match` confirms.
    #[inline(always)]
    pub fn find(&self, hash: u64, mut is_match: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = tag_of(hash);
        let mut pos = bucket(hash, self.mask);
        loop {
            let s = self.slots.get(pos).copied().unwrap_or(0);
            if s == 0 {
                return None;
            }
            if s & !IDX_MASK == tag {
                let idx = (s & IDX_MASK) - 1;
                if is_match(idx) {
                    return Some(idx);
                }
            }
            pos = (pos + 1) & self.mask;
        }
    }

    /// Inserts `idx` under `hash` (duplicates are the caller's to avoid).
    #[inline(always)]
    pub fn insert(&mut self, hash: u64, idx: u32) {
        debug_assert!(idx < MAX_ENTRIES);
        let mut pos = bucket(hash, self.mask);
        loop {
            match self.slots.get_mut(pos) {
                Some(s) if *s == 0 => {
                    *s = tag_of(hash) | (idx + 1);
                    return;
                }
                Some(_) => pos = (pos + 1) & self.mask,
                None => return,
            }
        }
    }

    fn position(&self, hash: u64, idx: u32) -> Option<usize> {
        let want = tag_of(hash) | (idx + 1);
        let mut pos = bucket(hash, self.mask);
        loop {
            let s = self.slots.get(pos).copied()?;
            if s == 0 {
                return None;
            }
            if s == want {
                return Some(pos);
            }
            pos = (pos + 1) & self.mask;
        }
    }

    /// Points the entry for (`hash`, `old`) at `new` (same key, new owner).
    pub fn replace(&mut self, hash: u64, old: u32, new: u32) -> bool {
        match self.position(hash, old) {
            Some(p) => {
                if let Some(s) = self.slots.get_mut(p) {
                    *s = tag_of(hash) | (new + 1);
                }
                true
            }
            None => false,
        }
    }

    /// Removes the entry (`hash`, `idx`); `rehash` gives the hash of any
    /// other stored session, to shift the rest of the cluster back.
    pub fn remove(&mut self, hash: u64, idx: u32, mut rehash: impl FnMut(u32) -> u64) -> bool {
        let Some(mut hole) = self.position(hash, idx) else {
            return false;
        };
        let mut pos = hole;
        loop {
            pos = (pos + 1) & self.mask;
            let s = self.slots.get(pos).copied().unwrap_or(0);
            if s == 0 {
                break;
            }
            let home = bucket(rehash((s & IDX_MASK) - 1), self.mask);
            // Move s into the hole unless its home lies cyclically in (hole, pos].
            let dist_home = pos.wrapping_sub(home) & self.mask;
            let dist_hole = pos.wrapping_sub(hole) & self.mask;
            if dist_home >= dist_hole {
                if let Some(h) = self.slots.get_mut(hole) {
                    *h = s;
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
    /// `idx`) would rehash: the entries after its slot up to the next
    /// empty one, at most `max` (the sweep asks for their sessions early).
    #[inline(always)]
    pub fn for_cluster_tail(&self, hash: u64, idx: u32, max: usize, mut f: impl FnMut(u32)) {
        let Some(mut pos) = self.position(hash, idx) else {
            return;
        };
        for _ in 0..max {
            pos = (pos + 1) & self.mask;
            match self.slots.get(pos).copied().unwrap_or(0) {
                0 => return,
                s => f((s & IDX_MASK) - 1),
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

/// Inserts a [`LaterIndex`] holds back (a power of two).
const LATER: usize = 8;

/// An [`Index`] whose inserts can wait for their home slot's cache line
/// ([`LaterIndex::insert_later`]): the engine's o2i and omap indexes. A new
/// session's slots in them are two cache misses in a large table; written
/// at once they stall the core for both (`perf/cachesim.sh`), held back
/// they arrive while the next new sessions are made (1M sessions on the
/// 2026-12-01 VM: 2.59 -> 2.98 M new sessions a second, medians of five).
///
/// Invariant: the held-back entries are part of the index. [`LaterIndex::find`]
/// looks at them; every other access that reads or moves slots
/// ([`LaterIndex::raw`], [`LaterIndex::replace`], [`LaterIndex::remove`])
/// writes them to the slots first.
pub struct LaterIndex {
    index: Index,
    /// A ring of (hash, entry): `held` of them, the newest at `next - 1`.
    later: [(u64, u32); LATER],
    next: usize,
    held: usize,
}

impl LaterIndex {
    /// See [`Index::with_load`].
    pub fn with_load(max_entries: u32, num: u32, den: u32) -> Self {
        Self { index: Index::with_load(max_entries, num, den), later: [(0, 0); LATER], next: 0, held: 0 }
    }

    /// [`Index::raw`], the held-back inserts written first, so the slots
    /// are the whole index.
    pub fn raw(&mut self) -> (&[u32], usize) {
        self.flush();
        self.index.raw()
    }

    /// See [`Index::prefault`].
    pub fn prefault(&mut self) {
        self.index.prefault();
    }

    /// See [`Index::memory_bytes`].
    pub fn memory_bytes(&self) -> usize {
        self.index.memory_bytes()
    }

    /// [`Index::find`], the held-back inserts (newest first) included.
    #[inline(always)]
    pub fn find(&self, hash: u64, mut is_match: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.held != 0 {
            if let Some(i) = self.find_held(hash, &mut is_match) {
                return Some(i);
            }
        }
        self.index.find(hash, is_match)
    }

    #[inline(never)]
    fn find_held(&self, hash: u64, is_match: &mut impl FnMut(u32) -> bool) -> Option<u32> {
        (1..=self.held).filter_map(|k| self.held_back(k)).find(|&(h, i)| h == hash && is_match(i)).map(|(_, i)| i)
    }

    /// The `k`-th newest held-back insert (1: the newest).
    #[inline(always)]
    fn held_back(&self, k: usize) -> Option<(u64, u32)> {
        self.later.get(self.next.wrapping_sub(k) % LATER).copied()
    }

    /// See [`Index::prefetch`] (the sweep's look-ahead).
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        self.index.prefetch(hash);
    }

    /// See [`Index::for_cluster_tail`] (held-back inserts not included:
    /// the sweep's look-ahead, hints only).
    #[inline(always)]
    pub fn for_cluster_tail(&self, hash: u64, idx: u32, max: usize, f: impl FnMut(u32)) {
        self.index.for_cluster_tail(hash, idx, max, f);
    }

    /// [`Index::insert`] at once.
    #[inline(always)]
    pub fn insert(&mut self, hash: u64, idx: u32) {
        self.index.insert(hash, idx);
    }

    /// Inserts `idx` under `hash` once the home slot's cache line has had
    /// time to arrive: asks for the line now and holds the insert back; it
    /// is written when eight newer ones are held (`LATER`; the oldest goes
    /// first) or when anything but [`LaterIndex::find`] touches the index.
    #[inline(always)]
    pub fn insert_later(&mut self, hash: u64, idx: u32) {
        self.index.prefetch(hash);
        // The ring's next position holds its oldest entry when it is full.
        if let Some(e) = self.later.get_mut(self.next % LATER) {
            let (old_hash, old) = *e;
            *e = (hash, idx);
            if self.held == LATER {
                self.index.insert(old_hash, old);
            } else {
                self.held += 1;
            }
        }
        self.next = self.next.wrapping_add(1);
    }

    /// Writes every held-back insert to the slots, the oldest first.
    #[inline]
    pub fn flush(&mut self) {
        for k in (1..=self.held).rev() {
            if let Some((h, i)) = self.held_back(k) {
                self.index.insert(h, i);
            }
        }
        self.held = 0;
    }

    /// [`Index::replace`], the held-back inserts written first.
    pub fn replace(&mut self, hash: u64, old: u32, new: u32) -> bool {
        self.flush();
        self.index.replace(hash, old, new)
    }

    /// [`Index::remove`], the held-back inserts written first.
    pub fn remove(&mut self, hash: u64, idx: u32, rehash: impl FnMut(u32) -> u64) -> bool {
        self.flush();
        self.index.remove(hash, idx, rehash)
    }

    /// Number of entries, the held-back ones included (tests, metrics).
    pub fn len(&self) -> usize {
        self.index.len() + self.held
    }

    /// True if there is no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    // Keys are u64s; "sessions" are their positions in a vector; a weak hash
    // (few distinct home slots) forces long clusters and wrap-around.
    fn weak(k: u64) -> u64 {
        (k % 7) | ((k % 3) << 56)
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

    proptest! {
        /// The same map with held-back inserts: look-ups see them, removes
        /// and the raw slots find them written.
        #[test]
        fn a_later_index_behaves_like_a_map(ops in proptest::collection::vec((0u64..40, 0u8..4), 1..300)) {
            let mut idx = LaterIndex::with_load(40, 3, 4);
            let mut keys: Vec<u64> = Vec::new();
            let mut model: HashMap<u64, u32> = HashMap::new();
            // op 0: remove; 1: insert; 2: insert held back; 3: the key's
            // entry moved to a new session number (replace).
            for (k, op) in ops {
                let found = idx.find(weak(k), |i| keys[i as usize] == k);
                prop_assert_eq!(found, model.get(&k).copied());
                if op == 3 {
                    if let Some(old) = found {
                        let i = u32::try_from(keys.len()).unwrap();
                        keys.push(k);
                        prop_assert!(idx.replace(weak(k), old, i));
                        model.insert(k, i);
                    }
                } else if op != 0 && found.is_none() {
                    let i = u32::try_from(keys.len()).unwrap();
                    keys.push(k);
                    if op == 2 {
                        idx.insert_later(weak(k), i);
                    } else {
                        idx.insert(weak(k), i);
                    }
                    model.insert(k, i);
                } else if op == 0 {
                    if let Some(i) = found {
                        let ks = keys.clone();
                        prop_assert!(idx.remove(weak(k), i, |j| weak(ks[j as usize])));
                        model.remove(&k);
                    }
                }
                prop_assert_eq!(idx.len(), model.len());
            }
            let (slots, _) = idx.raw();
            prop_assert_eq!(slots.iter().filter(|&&s| s != 0).count(), model.len());
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
        let idx = Index::with_entries(1_000_000);
        assert_eq!(idx.memory_bytes(), 4 * (1 << 21));
        assert!(idx.is_empty());
        assert_eq!(Index::with_entries(1 << 20).memory_bytes(), 4 * (1 << 22));
        // Load 3/4 (the engine's): 10M entries in 2^24 slots (2^25 at 1/2).
        assert_eq!(Index::with_load(10_000_000, 3, 4).memory_bytes(), 4 * (1 << 24));
        assert_eq!(Index::with_entries(10_000_000).memory_bytes(), 4 * (1 << 25));
        assert_eq!(Index::with_load(1_000_000, 3, 4).memory_bytes(), 4 * (1 << 21));
        // Strictly below the load: 3/4 of 2^24 entries get 2^25 slots.
        assert_eq!(Index::with_load(12_582_912, 3, 4).memory_bytes(), 4 * (1 << 25));
    }
}
