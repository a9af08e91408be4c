//! [`HugePageAlloc`]: the global allocator of masq's binaries, which puts
//! every large allocation (the engine's session slabs, indexes and port
//! bitmaps: each at least [`HUGE_MIN`] bytes) on its own anonymous mapping
//! aligned to 2 MiB and asks the kernel for transparent huge pages there
//! (`madvise(MADV_HUGEPAGE)`), so a lookup in a table of millions of
//! sessions costs a TLB entry per 2 MiB rather than per 4 KiB. Everything
//! smaller goes to the system allocator unchanged.
//!
//! Fallback: where the kernel has transparent huge pages off (`never` in
//! `/sys/kernel/mm/transparent_hugepage/enabled`) or refuses the advice,
//! the mapping stays on 4 KiB pages and works the same; [`status`] says
//! which, for the start-up log. Explicit hugetlbfs pages are not used:
//! they must be reserved by the operator up front, and an allocation
//! that finds none would fail rather than fall back.
//!
//! [`prefault`]: masq's workers fault their engine's tables in before
//! traffic (`madvise(MADV_POPULATE_WRITE)`, Linux 5.14), from the worker's
//! own thread so the pages land on its NUMA node, and so the first packets
//! to touch a page do not wait while the kernel zeroes it (2 MiB at a time
//! with huge pages: the first new sessions after start took page faults in
//! the worker's rounds, and its rings overflowed). Where the kernel lacks
//! it, pages fault in on first touch as before.
//!
//! Invariants: a large block is a whole mapping of `round_up(size, 4096)`
//! bytes starting at a 2 MiB boundary, unmapped whole by `dealloc`; the
//! kernel zeroes anonymous mappings, so `alloc_zeroed` costs no writes and
//! untouched pages are never faulted in; [`set_enabled`]`(false)` before
//! the first large allocation makes every block the system allocator's.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Allocations of at least this many bytes get their own huge-page mapping.
pub const HUGE_MIN: usize = 2 << 20;
const HUGE_ALIGN: usize = 2 << 20;
const PAGE: usize = 4096;

static ENABLED: AtomicBool = AtomicBool::new(true);
static ADVISED_BYTES: AtomicU64 = AtomicU64::new(0);
static REFUSED: AtomicU64 = AtomicU64::new(0);
static PREFAULTED_BYTES: AtomicU64 = AtomicU64::new(0);
static PREFAULT_REFUSED: AtomicU64 = AtomicU64::new(0);

/// The allocator: `#[global_allocator] static A: HugePageAlloc = HugePageAlloc;`.
#[derive(Debug, Clone, Copy, Default)]
pub struct HugePageAlloc;

/// Turns huge-page mappings on or off for allocations made from now on
/// (a benchmark's `--no-huge-pages`); blocks already made keep theirs.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Relaxed);
}

/// What became of the advice so far: bytes advised to use huge pages,
/// and mappings whose advice the kernel refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HugePageStatus {
    /// Bytes in mappings the kernel accepted the advice for.
    pub advised_bytes: u64,
    /// Mappings whose `madvise` failed (transparent huge pages off).
    pub refused: u64,
    /// Bytes [`prefault`] faulted in.
    pub prefaulted_bytes: u64,
    /// [`prefault`] calls the kernel refused (no `MADV_POPULATE_WRITE`
    /// before Linux 5.14, or no memory for it now).
    pub prefault_refused: u64,
    /// The kernel's mode, from `/sys/kernel/mm/transparent_hugepage/enabled`
    /// (`always`, `madvise` or `never`; `unknown` if unreadable).
    pub mode: &'static str,
}

/// The advice's outcome so far, for the start-up log.
pub fn status() -> HugePageStatus {
    let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .ok()
        .and_then(|s| ["always", "madvise", "never"].into_iter().find(|m| s.contains(&format!("[{m}]"))))
        .unwrap_or("unknown");
    HugePageStatus {
        advised_bytes: ADVISED_BYTES.load(Relaxed),
        refused: REFUSED.load(Relaxed),
        prefaulted_bytes: PREFAULTED_BYTES.load(Relaxed),
        prefault_refused: PREFAULT_REFUSED.load(Relaxed),
        mode,
    }
}

/// Faults in the whole pages `s` covers (the partial pages at its ends are
/// left as they are), writable and zero-filled where untouched, on the
/// calling thread's NUMA node; their contents do not change. Returns false
/// if the kernel refused (see [`HugePageStatus::prefault_refused`]).
pub fn prefault<T>(s: &mut [T]) -> bool {
    let start = (s.as_mut_ptr() as usize).next_multiple_of(PAGE);
    let end = (s.as_mut_ptr() as usize + std::mem::size_of_val(s)) / PAGE * PAGE;
    if end <= start {
        return true;
    }
    // SAFETY: [start, end) lies inside `s`, which this call borrows
    // mutably: memory the process owns, mapped and writable. Populating
    // faults pages in without changing what they hold (a page never
    // touched reads as zero before and after).
    let rc = unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_POPULATE_WRITE) };
    if rc == 0 {
        PREFAULTED_BYTES.fetch_add((end - start) as u64, Relaxed);
    } else {
        PREFAULT_REFUSED.fetch_add(1, Relaxed);
    }
    rc == 0
}

fn huge(layout: Layout) -> bool {
    layout.size() >= HUGE_MIN && layout.align() <= HUGE_ALIGN && ENABLED.load(Relaxed)
}

fn mapped_len(size: usize) -> usize {
    size.div_ceil(PAGE) * PAGE
}

/// A fresh anonymous mapping of `round_up(size, 4 KiB)` bytes starting at
/// a 2 MiB boundary, advised to use huge pages; null if the kernel has no
/// memory for it.
fn map_huge(size: usize) -> *mut u8 {
    let len = mapped_len(size);
    let Some(over) = len.checked_add(HUGE_ALIGN) else { return std::ptr::null_mut() };
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing touches no existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            over,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    let start = p as usize;
    let aligned = start.next_multiple_of(HUGE_ALIGN);
    let (head, tail) = (aligned - start, over - (aligned - start) - len);
    // SAFETY: the head and tail lie inside the mapping just made, which
    // nothing else knows of yet; what is left is [aligned, aligned + len).
    unsafe {
        if head > 0 {
            libc::munmap(p, head);
        }
        if tail > 0 {
            libc::munmap((aligned + len) as *mut libc::c_void, tail);
        }
    }
    // SAFETY: advice on a mapping this function owns; it changes how the
    // kernel backs the pages, never their contents.
    let rc = unsafe { libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE) };
    if rc == 0 {
        ADVISED_BYTES.fetch_add(len as u64, Relaxed);
    } else {
        REFUSED.fetch_add(1, Relaxed);
    }
    aligned as *mut u8
}

// SAFETY: large blocks are whole mappings of their own, aligned to 2 MiB
// (at least any alignment `huge` lets through) and at least `size` bytes
// long, freed only by `dealloc` with the same layout (GlobalAlloc's
// contract), which unmaps exactly what `map_huge` left; the rest is
// `System`'s, with `System`'s guarantees. Whether a block is large is
// decided by its layout alone, so `dealloc` finds the allocator that made
// it, except that `ENABLED` may change in between: `dealloc` therefore
// tells the two apart by the address (a large block starts on a 2 MiB
// boundary and is at least HUGE_MIN long; `System` never returns such a
// block for a layout `huge` accepts, as the check below keeps it so).
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if huge(layout) {
            return map_huge(layout.size());
        }
        // SAFETY: forwarded with the caller's layout, under its contract.
        unsafe { system_small(layout, false) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if huge(layout) {
            // Anonymous mappings are zero-filled by the kernel.
            return map_huge(layout.size());
        }
        // SAFETY: as in `alloc`.
        unsafe { system_small(layout, true) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_mapped(ptr, layout) {
            // SAFETY: `ptr` is a block `map_huge` made for this layout
            // (see the impl's note); the caller no longer uses it.
            unsafe { libc::munmap(ptr.cast(), mapped_len(layout.size())) };
            return;
        }
        // SAFETY: a block `System` made for this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Whether a block of `layout` at `ptr` is one of `map_huge`'s.
fn is_mapped(ptr: *mut u8, layout: Layout) -> bool {
    layout.size() >= HUGE_MIN && layout.align() <= HUGE_ALIGN && (ptr as usize).is_multiple_of(HUGE_ALIGN)
}

/// `System`'s block for `layout`, never one `is_mapped` would take for a
/// mapping (a large block from `System` on a 2 MiB boundary is kept and a
/// second one taken: possible only while huge pages are off).
///
/// # Safety
/// As `GlobalAlloc::alloc`.
unsafe fn system_small(layout: Layout, zeroed: bool) -> *mut u8 {
    // SAFETY: the caller's layout, under its contract.
    let get = || unsafe {
        if zeroed {
            System.alloc_zeroed(layout)
        } else {
            System.alloc(layout)
        }
    };
    let p = get();
    if p.is_null() || !is_mapped(p, layout) {
        return p;
    }
    // Keep the 2 MiB-aligned block allocated (a leak of one block, made
    // only if huge pages were turned off and System happened to align):
    // a dealloc would unmap it as a mapping otherwise.
    let q = get();
    if is_mapped(q, layout) {
        return std::ptr::null_mut();
    }
    q
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code
mod tests {
    use super::*;

    #[test]
    fn a_large_block_is_its_own_aligned_zeroed_mapping_and_goes_away_whole() {
        let a = HugePageAlloc;
        let layout = Layout::from_size_align(HUGE_MIN * 3 + 12345, 64).unwrap();
        // SAFETY: test code: a layout of non-zero size, freed with the same layout.
        unsafe {
            let p = a.alloc_zeroed(layout);
            assert!(!p.is_null());
            assert_eq!(p as usize % HUGE_ALIGN, 0, "2 MiB aligned");
            let s = std::slice::from_raw_parts_mut(p, layout.size());
            assert!(s.iter().all(|&b| b == 0));
            s.fill(7);
            assert_eq!(s.last(), Some(&7));
            a.dealloc(p, layout);
        }
        assert!(status().advised_bytes > 0 || status().refused > 0);
    }

    /// Resident KiB of the mapping starting at `addr` (/proc/self/smaps).
    fn resident_kib(addr: usize) -> Option<u64> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let head = format!("{addr:x}-");
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&head));
        lines.next()?;
        let rss = lines.find(|l| l.starts_with("Rss:"))?;
        rss.trim_start_matches("Rss:").trim().trim_end_matches("kB").trim().parse().ok()
    }

    #[test]
    fn a_prefaulted_block_is_resident_before_it_is_touched_and_unchanged() {
        let a = HugePageAlloc;
        let layout = Layout::from_size_align(HUGE_MIN * 2, 64).unwrap();
        // SAFETY: test code: a large block (its own mapping), viewed as
        // bytes while it lives, freed with its layout.
        unsafe {
            let p = a.alloc_zeroed(layout);
            assert!(!p.is_null());
            assert_eq!(resident_kib(p as usize), Some(0), "nothing resident before");
            let s = std::slice::from_raw_parts_mut(p, layout.size());
            s[4096] = 9;
            if prefault(s) {
                let kib = resident_kib(p as usize).unwrap();
                assert!(kib * 1024 >= layout.size() as u64, "{kib} KiB resident of {}", layout.size());
            } else {
                assert!(status().prefault_refused > 0);
            }
            assert_eq!(s[4096], 9, "contents kept");
            assert!(s.iter().enumerate().all(|(i, &b)| b == if i == 4096 { 9 } else { 0 }));
            a.dealloc(p, layout);
        }
    }

    #[test]
    fn a_small_block_is_the_system_allocators() {
        let a = HugePageAlloc;
        let layout = Layout::from_size_align(4096, 8).unwrap();
        // SAFETY: test code, as above.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            p.write(1);
            a.dealloc(p, layout);
        }
    }
}
