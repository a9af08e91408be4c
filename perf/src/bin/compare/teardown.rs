//! What a `compare` run changes outside its own process, and how it is
//! undone on every way out (issue 17).
//!
//! A run brings up the lab's `mqcmp-*` namespaces (with masq, einat, the
//! generator and the drains inside them), raises the global conntrack
//! limits, and writes `mqcmp-*` files into the temporary directory.
//! Invariant: once [`Lab::up`] or [`ConntrackLimits::raise`] has started,
//! each change is undone exactly once, whichever way the run ends:
//!
//! - returning (`Ok` or `Err`): the guards' `Drop`;
//! - SIGINT or SIGTERM: [`install`]'s handlers only set a flag, which
//!   [`interrupted`] (called between steps and in [`pause`]) turns into an
//!   `Err`, so `compare` returns and the guards drop. The signals' default
//!   action (exit without any clean-up) is replaced for the whole run;
//! - a panic: release builds abort on panic (`panic = "abort"` in the
//!   workspace), so no `Drop` runs. [`install`]'s panic hook prints the
//!   panic, runs [`undo_all`] and aborts, the same in every profile.
//!
//! The state to undo lives in one global ([`CHANGED`]) so the panic hook
//! reaches it; the guards take their part out of it, so nothing is undone
//! twice.

use super::{repo, Res, PREFIX};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The host state a run has changed and not yet put back.
struct Changed {
    /// The lab may have namespaces up (set before `lab.sh up` starts).
    lab: bool,
    /// nf_conntrack_max and the hash size before the run (`None`: not raised).
    conntrack: Option<(Option<String>, Option<String>)>,
}

static CHANGED: Mutex<Changed> = Mutex::new(Changed { lab: false, conntrack: None });

/// Set by SIGINT or SIGTERM.
static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Installs the SIGINT/SIGTERM flag and the panic hook (module doc). Called
/// once by `compare`, before it changes anything; not by `gen` or `sink`,
/// which the lab's tear-down kills.
pub fn install() -> Res<()> {
    let flag = STOP.get_or_init(|| Arc::new(AtomicBool::new(false)));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(flag)).map_err(|e| format!("signal handler: {e}"))?;
    }
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        undo_all();
        eprintln!("compare: lab torn down after the panic");
        std::process::abort();
    }));
    Ok(())
}

/// `Err` once SIGINT or SIGTERM has arrived: the run stops at its next step.
pub fn interrupted() -> Res<()> {
    match STOP.get() {
        Some(f) if f.load(Ordering::Relaxed) => Err("interrupted (SIGINT or SIGTERM): lab torn down".into()),
        _ => Ok(()),
    }
}

/// Sleeps `d`, waking every 50 ms to see whether the run was interrupted.
pub fn pause(d: Duration) -> Res<()> {
    let end = Instant::now() + d;
    loop {
        interrupted()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// The state, also after a panic while it was held (the hook must still
/// undo what it can). Holders keep it for a moment only; `None` after a
/// second of waiting (a panic on the thread holding it): nothing is touched.
fn changed() -> Option<std::sync::MutexGuard<'static, Changed>> {
    for _ in 0..100 {
        match CHANGED.try_lock() {
            Ok(g) => return Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    None
}

/// Undoes everything still changed: the lab, the conntrack limits, the files.
pub fn undo_all() {
    lab_down();
    restore_conntrack();
}

fn lab_down() {
    let was_up = changed().is_some_and(|mut c| std::mem::replace(&mut c.lab, false));
    if was_up {
        let _ = Command::new(repo().join("deploy/lab/lab.sh")).arg("down").env("LAB_PREFIX", PREFIX).output();
        remove_files();
    }
}

/// The run's files in the temporary directory (`mqcmp-*`).
fn remove_files() {
    let dir = std::env::temp_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(PREFIX) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

const CT_MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
/// nf_conntrack_max for the run.
pub const RAISED_CT_MAX: &str = "4194304";
const CT_HASH: &str = "/sys/module/nf_conntrack/parameters/hashsize";

fn restore_conntrack() {
    let Some((old_max, old_hash)) = changed().and_then(|mut c| c.conntrack.take()) else { return };
    if let Some(v) = old_hash {
        let _ = std::fs::write(CT_HASH, v.trim());
    }
    if let Some(v) = old_max {
        let _ = std::fs::write(CT_MAX, v.trim());
    }
}

/// Global conntrack limits (writable only from the initial namespace),
/// raised for the run and put back after (module doc).
pub struct ConntrackLimits;

impl ConntrackLimits {
    pub fn raise() -> Self {
        let old = (std::fs::read_to_string(CT_MAX).ok(), std::fs::read_to_string(CT_HASH).ok());
        if let Some(mut c) = changed() {
            // A second raise keeps the first one's values: those are the host's.
            c.conntrack.get_or_insert(old);
        }
        let _ = std::fs::write(CT_MAX, RAISED_CT_MAX);
        let _ = std::fs::write(CT_HASH, "1048576");
        Self
    }

    /// The global limit, for the capacity rows (put back with the rest).
    pub fn set_max(max: &str) -> Res<()> {
        std::fs::write(CT_MAX, max).map_err(|e| format!("{CT_MAX}: {e}"))
    }
}

impl Drop for ConntrackLimits {
    fn drop(&mut self) {
        restore_conntrack();
    }
}

/// The lab, torn down when dropped, or by the panic hook (module doc).
pub struct Lab;

impl Lab {
    pub fn up() -> Res<Self> {
        if let Some(mut c) = changed() {
            c.lab = true;
        }
        // From here a failure still tears down what `up` made.
        let lab = Lab;
        let o = Command::new(repo().join("deploy/lab/lab.sh"))
            .arg("up")
            .env("LAB_PREFIX", PREFIX)
            .output()
            .map_err(|e| format!("lab.sh: {e}"))?;
        if !o.status.success() {
            return Err(format!("lab up: {}", String::from_utf8_lossy(&o.stderr)));
        }
        Ok(lab)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        lab_down();
    }
}
