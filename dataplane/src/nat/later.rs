//! [`LaterIndex`]: an [`Index`] whose inserts may wait for their home
//! slot's cache line, the engine's o2i and omap indexes. It builds on
//! `nat::index` and nothing there depends on it.
//!
//! Invariant: what it holds back is part of the index; every access but
//! [`LaterIndex::find`] writes the held-back inserts first.
#![forbid(unsafe_code)]

use super::index::Index;

/// Inserts a [`LaterIndex`] holds back (a power of two).
const LATER: usize = 8;

/// An insert held back: its hash, its entry and its home slot (as
/// [`Index::home_of`] gave it).
#[derive(Debug, Clone, Copy, Default)]
struct Held {
    hash: u64,
    idx: u32,
    home: usize,
}

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
    /// A ring of held-back inserts: `held` of them, the newest at `next - 1`.
    later: [Held; LATER],
    next: usize,
    held: usize,
}

impl LaterIndex {
    /// See [`Index::with_load`].
    pub fn with_load(max_entries: u32, num: u32, den: u32) -> Self {
        Self { index: Index::with_load(max_entries, num, den), later: [Held::default(); LATER], next: 0, held: 0 }
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
    fn find_held(&self, hash: u64, is_match: &mut impl FnMut(u32) -> bool) -> Option<u32> {
        (1..=self.held).filter_map(|k| self.held_back(k)).find(|e| e.hash == hash && is_match(e.idx)).map(|e| e.idx)
    }

    /// The `k`-th newest held-back insert (1: the newest).
    #[inline(always)]
    fn held_back(&self, k: usize) -> Option<Held> {
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
        // The home computed once, for the prefetch now and the insert later.
        let home = self.index.home_of(hash);
        self.index.prefetch_home(home);
        // The ring's next position holds its oldest entry when it is full.
        if let Some(e) = self.later.get_mut(self.next % LATER) {
            let old = *e;
            *e = Held { hash, idx, home };
            if self.held == LATER {
                self.index.insert_from(old.home, old.hash, old.idx);
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
            if let Some(e) = self.held_back(k) {
                self.index.insert_from(e.home, e.hash, e.idx);
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
    use crate::nat::index::tests::weak;
    use proptest::prelude::*;
    use std::collections::HashMap;

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
