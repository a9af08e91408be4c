//! The configuration in force, and changing it while masq runs: a push
//! (`PUT /config`), a SIGHUP reload of the file, and the masquerade pools
//! following the outside interface's address.
//!
//! Invariants: a change is all or nothing from the control side's view:
//! [`apply`] validates the text, refuses keys that change only with a
//! restart, builds and checks the engine parameters, and only then hands
//! them to every worker (each applies them at a batch boundary); on any
//! refusal before that, nothing (configuration, YAML, generation, engines)
//! changes and the refusal is counted. The generation starts at 1 and goes
//! up by one per accepted change. Nothing here knows HTTP: the API maps an
//! [`ApplyError`] to a status code.

use crate::params::{engine_params, ParamsError};
use crate::telemetry::ConfigCounts;
use dataplane::nat::{reconfigure_check, EngineParams, ParamError, PoolParams};
use dataplane::worker::{Command, CommandTx, ReconfigureError};
use dataplane::xdp::{LocalAddress, LocalRole, XdpProgram};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How long a worker may take to answer a change.
const WORKER_ANSWER: Duration = Duration::from_secs(10);

/// The configuration in force and what turning a new one into engine
/// parameters needs.
#[derive(Debug, Clone)]
pub struct Live {
    /// The validated configuration in force.
    pub config: config::ValidConfig,
    /// The engine parameters in force (`None`: masq runs without NAT).
    pub params: Option<EngineParams>,
    /// The outside interface's address (masquerade).
    pub outside_addr: Option<u32>,
    /// The box's addresses.
    pub local_addrs: Vec<u32>,
}

/// The live configuration, shared by the API and the control loop.
pub struct LiveConfig {
    /// Where changes go: one request channel per worker.
    workers: Vec<CommandTx>,
    /// Logical CPUs, for validating new configurations.
    cpus: usize,
    /// The file SIGHUP re-reads (none: SIGHUP says so and changes nothing).
    source: Option<std::path::PathBuf>,
    /// What a new configuration is applied against.
    live: Mutex<Live>,
    /// The configuration in force, as YAML (as pushed, comments included).
    yaml: Mutex<String>,
    /// Every pool the engines numbered since start, with every address it
    /// had: an engine keeps a pool a change removed (and an address taken
    /// from its pool) and may take it back, so a change is checked against
    /// these, as the engines check it.
    pools_ever: Mutex<Vec<PoolParams>>,
    generation: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
}

impl LiveConfig {
    /// Generation 1: `live`, written as `yaml`, in force on `workers`.
    pub fn new(
        workers: Vec<CommandTx>,
        cpus: usize,
        source: Option<std::path::PathBuf>,
        live: Live,
        yaml: String,
    ) -> Self {
        let pools_ever = live.params.as_ref().map(|p| p.pools.clone()).unwrap_or_default();
        Self {
            workers,
            cpus,
            source,
            live: Mutex::new(live),
            yaml: Mutex::new(yaml),
            pools_ever: Mutex::new(pools_ever),
            generation: AtomicU64::new(1),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// The configuration in force, as YAML.
    pub fn yaml(&self) -> String {
        self.yaml.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// A copy of what is in force (`None` if a panic poisoned it).
    pub fn in_force(&self) -> Option<Live> {
        self.live.lock().ok().map(|l| l.clone())
    }

    /// Generation, changes accepted and refused.
    pub fn counts(&self) -> ConfigCounts {
        ConfigCounts {
            generation: self.generation.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

/// A key whose change needs a restart, and where it is in the new text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartKey {
    /// Top-level key (`interfaces`, `workers`, `control`, `management`).
    pub key: &'static str,
    /// Line, 1-based.
    pub line: usize,
    /// Column, 1-based.
    pub col: usize,
}

/// Why a configuration was not applied. Displayed as `check-config` prints
/// errors: one line each, starting `config:` (callers put the file's name
/// there).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Not a valid configuration: YAML syntax, unknown key, bad value,
    /// overlapping pools, ...
    #[error("{}", config_lines(.0))]
    Invalid(Vec<config::ConfigError>),
    /// Valid, but changes keys that change only with a restart.
    #[error("{}", restart_lines(.0))]
    NeedsRestart(Vec<RestartKey>),
    /// masq runs without NAT: there are no engines to change.
    #[error("config: masq runs without NAT (--no-nat): nothing to apply\n")]
    NoNat,
    /// No engine parameters on this box (a masquerade pool, no outside address).
    #[error("config: {0}\n")]
    Params(#[from] ParamsError),
    /// The engines cannot take the change live (table sizes, ...).
    #[error("config: {0}\n")]
    NotLive(ParamError),
    /// A worker's channel is closed.
    #[error("config: worker {0} is gone\n")]
    WorkerGone(usize),
    /// A worker refused; workers before it took the change.
    #[error("config: worker {worker}: {error}\n")]
    WorkerRefused {
        /// The worker.
        worker: usize,
        /// Its reason.
        error: ReconfigureError,
    },
    /// A worker did not answer in time.
    #[error("config: worker {0} did not answer\n")]
    WorkerSilent(usize),
    /// A panic poisoned the configuration in force.
    #[error("poisoned\n")]
    Poisoned,
}

fn config_lines(errors: &[config::ConfigError]) -> String {
    errors.iter().map(|e| format!("config:{e}\n")).collect()
}

fn restart_lines(keys: &[RestartKey]) -> String {
    keys.iter().map(|k| format!("config:{}:{}: {}: changes only with a restart\n", k.line, k.col, k.key)).collect()
}

/// A change that was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The new generation.
    pub generation: u64,
    /// Sessions on removed addresses the workers flushed.
    pub flushed: usize,
}

impl std::fmt::Display for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "config: generation {} in force; {} sessions on removed addresses flushed",
            self.generation, self.flushed
        )
    }
}

/// Validates `text` and applies it to every worker at a batch boundary.
/// A refused configuration changes nothing and is counted as refused.
/// Either way the audit trail gets a line (log target `audit`): `who`
/// asked (`PUT /config from PEER`, `SIGHUP FILE`), the generation and the
/// SHA-256 of the text, or why it was refused.
pub fn apply(s: &LiveConfig, text: &str, who: &str) -> Result<Applied, ApplyError> {
    let result = try_apply(s, text);
    let digest = sha256_hex(text.as_bytes());
    match &result {
        Ok(done) => {
            s.accepted.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                target: "audit",
                "config accepted: {who}; generation {}; sha256 {digest}; {} sessions flushed",
                done.generation,
                done.flushed
            );
        }
        // Not a refusal of the text: nothing was looked at.
        Err(ApplyError::Poisoned) => {}
        Err(e) => {
            s.refused.fetch_add(1, Ordering::Relaxed);
            let why = e.to_string().replace('\n', " | ");
            tracing::warn!(target: "audit", "config refused: {who}; sha256 {digest}; {}", why.trim_end_matches([' ', '|']));
        }
    }
    result
}

/// The SHA-256 of `data` in hex (the audit trail's config digest).
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn try_apply(s: &LiveConfig, text: &str) -> Result<Applied, ApplyError> {
    let v = config::load(text, s.cpus).map_err(ApplyError::Invalid)?;
    let mut live = s.live.lock().map_err(|_| ApplyError::Poisoned)?;
    let restart = restart_keys(&live.config.raw, &v.raw, &config::Positions::of(text));
    if !restart.is_empty() {
        return Err(ApplyError::NeedsRestart(restart));
    }
    let Some(old) = &live.params else { return Err(ApplyError::NoNat) };
    // The inside interface does not change live: nor does the ICMP source.
    let mut p = engine_params(&v, live.outside_addr, old.icmp_source, live.local_addrs.clone())?;
    // The seed and steering stay the running engines' own.
    p.seed = old.seed;
    p.steering = old.steering.clone();
    p.mtu = old.mtu;
    let mut ever = s.pools_ever.lock().map_err(|_| ApplyError::Poisoned)?;
    let base = EngineParams { pools: ever.clone(), ..old.clone() };
    reconfigure_check(&base, &p).map_err(ApplyError::NotLive)?;
    let flushed = reconfigure_workers(&s.workers, &p)?;
    remember_pools(&mut ever, &p.pools);
    live.config = v;
    live.params = Some(p);
    if let Ok(mut y) = s.yaml.lock() {
        *y = text.to_string();
    }
    let generation = s.generation.fetch_add(1, Ordering::Relaxed) + 1;
    Ok(Applied { generation, flushed })
}

/// Adds `pools` to the pools numbered since start: a new name is appended,
/// a known one takes the new settings and keeps every address it had.
fn remember_pools(ever: &mut Vec<PoolParams>, pools: &[PoolParams]) {
    for np in pools {
        match ever.iter_mut().find(|e| e.name == np.name) {
            Some(e) => {
                let mut addresses = std::mem::take(&mut e.addresses);
                addresses.extend(np.addresses.iter().filter(|a| !addresses.contains(a)).collect::<Vec<_>>());
                *e = PoolParams { addresses, ..np.clone() };
            }
            None => ever.push(np.clone()),
        }
    }
}

/// The top-level keys `new` changes that change only with a restart.
fn restart_keys(cur: &config::Config, new: &config::Config, positions: &config::Positions) -> Vec<RestartKey> {
    [
        ("interfaces", cur.interfaces != new.interfaces),
        ("workers", cur.workers != new.workers),
        ("control", cur.control != new.control),
        // The host guard (nftables) is installed at start.
        ("management", cur.management != new.management),
        // The sync link and the role are the HA module's, set at start.
        ("ha", cur.ha != new.ha),
    ]
    .into_iter()
    .filter(|&(_, changed)| changed)
    .map(|(key, _)| {
        let (line, col) = positions.find(key);
        RestartKey { key, line, col }
    })
    .collect()
}

/// Hands `p` to every worker in turn; the sessions they flushed.
fn reconfigure_workers(workers: &[CommandTx], p: &EngineParams) -> Result<usize, ApplyError> {
    let mut flushed = 0;
    for (w, c) in workers.iter().enumerate() {
        let mut params = Box::new(p.clone());
        params.worker = u16::try_from(w).unwrap_or(0);
        let (reply, rx) = crossbeam_channel::bounded(1);
        if c.send(Command::Reconfigure { params, reply }).is_err() {
            return Err(ApplyError::WorkerGone(w));
        }
        match rx.recv_timeout(WORKER_ANSWER) {
            Ok(Ok(n)) => flushed += n,
            Ok(Err(error)) => return Err(ApplyError::WorkerRefused { worker: w, error }),
            Err(_) => return Err(ApplyError::WorkerSilent(w)),
        }
    }
    Ok(flushed)
}

/// SIGHUP: re-reads the configuration file and applies it like a push.
/// `None`: masq runs without the control side (`--no-api`).
pub fn reload(live: Option<&LiveConfig>) {
    let Some(live) = live else {
        tracing::info!("SIGHUP: no control side running (--no-api); nothing reloaded");
        return;
    };
    let Some(path) = &live.source else {
        tracing::info!("SIGHUP: masq was not started from a file (--config); nothing reloaded");
        return;
    };
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Err(e) => tracing::warn!("SIGHUP: {name}: {e}; nothing changed"),
        Ok(text) => match apply(live, &text, &format!("SIGHUP {name}")) {
            Ok(done) => {
                tracing::info!("SIGHUP: {}", done.to_string().replace("config:", &format!("{name}:")).trim_end())
            }
            Err(e) => tracing::warn!(
                "SIGHUP refused, nothing changed:\n{}",
                e.to_string().replace("config:", &format!("{name}:")).trim_end()
            ),
        },
    }
}

/// The outside interface's address went from `old` to `new`: the workers'
/// masquerade pools (which lend `ports` of it), the XDP programs' address
/// maps and the configuration in force all follow.
pub fn follow_outside(
    workers: &[CommandTx],
    progs: &mut [XdpProgram],
    live: Option<&LiveConfig>,
    old: u32,
    new: u32,
    ports: (u16, u16),
) {
    let mut flushed = 0;
    for c in workers {
        let (reply, rx) = crossbeam_channel::bounded(1);
        if c.send(Command::OutsideAddress { old, new, reply }).is_ok() {
            flushed += rx.recv_timeout(Duration::from_secs(5)).unwrap_or(0);
        }
    }
    for p in progs.iter_mut() {
        let _ = p.remove_local(old);
        if let Err(e) = p.set_local(LocalAddress { addr: new, role: LocalRole::Shared { ports } }) {
            tracing::warn!("{e}");
        }
    }
    if let Some(mut l) = live.and_then(|l| l.live.lock().ok()) {
        l.follow_outside(old, new);
    }
    // The engines gave their masquerade address the new IP: the old one is
    // no longer theirs.
    if let Some(mut ever) = live.and_then(|l| l.pools_ever.lock().ok()) {
        for pool in ever.iter_mut().filter(|x| x.masquerade) {
            pool.addresses = vec![new];
        }
    }
    let ip = std::net::Ipv4Addr::from;
    tracing::info!(
        "outside address {} -> {}: masquerade follows; {flushed} sessions on the old address flushed",
        ip(old),
        ip(new)
    );
}

impl Live {
    /// The outside address went from `old` to `new`.
    fn follow_outside(&mut self, old: u32, new: u32) {
        let swap = |addrs: &mut Vec<u32>| {
            for a in addrs.iter_mut().filter(|a| **a == old) {
                *a = new;
            }
        };
        self.outside_addr = Some(new);
        swap(&mut self.local_addrs);
        if let Some(p) = self.params.as_mut() {
            for pool in p.pools.iter_mut().filter(|x| x.masquerade) {
                pool.addresses = vec![new];
            }
            swap(&mut p.local_addrs);
        }
    }
}

#[cfg(test)]
mod tests;
