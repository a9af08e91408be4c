//! [`LaterIndex`]: an [`Index`] whose inserts may wait for their home
//! slot's cache line, the engine's o2i and omap indexes. It builds on
//! `nat::index` and nothing there depends on it.
//!
//! Invariant: what it holds back is part of the index; every access that
//! reads or moves slots, but [`LaterIndex::find`] (which looks at them)
//! and the hints ([`LaterIndex::prefetch`], [`LaterIndex::for_cluster_tail`]),
//! writes the held-back inserts first.
#![forbid(unsafe_code)]

use super::index::{entry_of, tag_of, Index, IDX_MASK, TAG_MASK};

/// Inserts a [`LaterIndex`] holds back: a batch's worth ([`super::BATCH`]),
/// so a batch's general path never writes one itself.
const LATER: usize = super::BATCH;

/// An insert held back: its home slot (as [`Index::home_of`] gave it) and
/// the slot it fills there ([`entry_of`]); a key's tag and home stand for
/// its hash (a look-up confirms a candidate against the session anyway).
/// A home fits 32 bits: below the number of homes, which
/// `Index::with_load` keeps far below 2^32 (entries below 2^24, a load
/// above 1/16).
#[derive(Debug, Clone, Copy, Default)]
struct Held {
    home: u32,
    entry: u32,
}

/// An [`Index`] whose inserts can wait for their home slot's cache line
/// ([`LaterIndex::insert_later`]): the engine's o2i and omap indexes. A new
/// session's slots in them are two cache misses in a large table; written
/// at once they stall the core for both (`perf/cachesim.sh`), held back
/// they arrive while the next new sessions are made (1M sessions on the
/// 2026-12-01 VM: 2.59 -> 2.98 M new sessions a second, medians of five).
/// The batch writes them at its end ([`LaterIndex::flush`]), in a loop of
/// its own: a held insert costs the batch's inlined new-session path an
/// append of 8 bytes (the ring of eight this replaced wrote its oldest
/// entry as it took the next, there: -5.4 instructions a new session).
///
/// Invariant: the held-back entries are part of the index. [`LaterIndex::find`]
/// looks at them; every other access that reads or moves slots
/// ([`LaterIndex::raw`], [`LaterIndex::replace`], [`LaterIndex::remove`])
/// writes them to the slots first.
pub struct LaterIndex {
    index: Index,
    /// The held-back inserts, the first `held`, the oldest first.
    later: [Held; LATER],
    held: usize,
}

impl LaterIndex {
    /// See [`Index::with_load`].
    pub fn with_load(max_entries: u32, num: u32, den: u32) -> Self {
        Self { index: Index::with_load(max_entries, num, den), later: [Held::default(); LATER], held: 0 }
    }

    /// See [`Index::asking_two_lines`].
    pub fn asking_two_lines(mut self, yes: bool) -> Self {
        self.index = self.index.asking_two_lines(yes);
        self
    }

    /// See [`Index::asks_two_lines`].
    pub fn asks_two_lines(&self) -> bool {
        self.index.asks_two_lines()
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
    #[allow(clippy::cast_possible_truncation)] // a home fits 32 bits (`Held`)
    fn find_held(&self, hash: u64, is_match: &mut impl FnMut(u32) -> bool) -> Option<u32> {
        let (home, tag) = (self.index.home_of(hash) as u32, tag_of(hash));
        let held = self.later.get(..self.held).unwrap_or_default();
        let candidates = held.iter().rev().filter(|e| e.home == home && e.entry & TAG_MASK == tag);
        candidates.map(|e| (e.entry & IDX_MASK) - 1).find(|&i| is_match(i))
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
    /// time to arrive: asks for the line now and holds the insert back
    /// until [`LaterIndex::flush`] (the batch's end) or anything but
    /// [`LaterIndex::find`] touches the index; with a batch's worth held it is
    /// written at once.
    #[inline(always)]
    #[allow(clippy::cast_possible_truncation)] // a home fits 32 bits (`Held`)
    pub fn insert_later(&mut self, hash: u64, idx: u32) {
        // The home computed once, for the prefetch now and the insert later.
        let home = self.index.home_of(hash);
        debug_assert!(u32::try_from(home).is_ok());
        self.index.prefetch_home(home);
        let entry = entry_of(hash, idx);
        match self.later.get_mut(self.held) {
            Some(e) => {
                *e = Held { home: home as u32, entry };
                self.held += 1;
            }
            None => {
                std::hint::cold_path();
                self.index.insert_entry(home, entry);
            }
        }
    }

    /// Writes every held-back insert to the slots, the oldest first.
    #[inline(always)]
    pub fn flush(&mut self) {
        if self.held != 0 {
            self.write_held();
        }
    }

    #[inline(never)]
    fn write_held(&mut self) {
        let n = std::mem::take(&mut self.held);
        for e in self.later.get(..n).unwrap_or_default() {
            self.index.insert_entry_home_first(e.home as usize, e.entry);
        }
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

    /// Inserts held back now (tests).
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held
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
    use crate::nat::index::tests::weak;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// More inserts than the hold takes: the rest are written at once,
    /// every one is found, and a flush writes the held ones.
    #[test]
    fn inserts_past_the_hold_are_written_at_once() {
        let mut idx = LaterIndex::with_load(200, 1, 2);
        let key = |k: u32| u64::from(k).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for k in 0..100 {
            idx.insert_later(key(k), k);
        }
        assert_eq!((idx.held(), idx.index.len()), (LATER, 100 - LATER));
        for k in 0..100 {
            assert_eq!(idx.find(key(k), |i| i == k), Some(k), "key {k} held or written");
        }
        idx.flush();
        assert_eq!((idx.held(), idx.index.len()), (0, 100));
        for k in 0..100 {
            assert_eq!(idx.index.find(key(k), |i| i == k), Some(k), "key {k} in the slots");
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
}
