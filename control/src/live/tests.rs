//! Live configuration applied without root, against a real worker over MemIo.

//! A push against one real worker (in-memory I/O, no NIC, no root):
//! what it answers, and that a refusal leaves everything as it was.
use super::*;
use dataplane::io::MemIo;
use dataplane::l2::L2Table;
use dataplane::worker::{Mesh, Sliced, Worker};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

const BASE: &str = "\
interfaces:
  inside: in0
  outside: out0
workers:
  cores: [0]
pools:
  - name: p
    addresses: [203.0.113.10]
rules:
  - action: snat
    pool: p
tables:
  max_sessions: 4096
  max_subscribers: 1024
";

/// A second pool, for 10.0.0.0/8, spliced in before `rules:`.
const NEW_POOL: &str = "  - name: q
    addresses: [198.51.100.1]
rules:
  - action: snat
    pool: q
    match:
      src: [10.0.0.0/8]";

fn ip(s: &str) -> u32 {
    u32::from(s.parse::<std::net::Ipv4Addr>().expect("an address"))
}

/// One worker running rounds on its own thread until dropped.
struct Harness {
    live: LiveConfig,
    original: config::ValidConfig,
    worker: crossbeam_channel::Sender<Command>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Harness {
    fn new() -> Self {
        Self::on(BASE)
    }

    /// A worker started with `text` in force.
    fn on(text: &str) -> Self {
        let v = config::load(text, usize::MAX).expect("a valid configuration");
        let p = engine_params(&v, None, Some(ip("100.64.0.1")), Vec::new()).expect("parameters");
        let engine = dataplane::nat::Engine::new(&p).expect("engine");
        let (tx, rx) = crossbeam_channel::bounded(16);
        let stop = Arc::new(AtomicBool::new(false));
        let halt = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut w = Worker::new(
                0,
                MemIo::new(64, 2048),
                Some(engine),
                Arc::new(L2Table::default()),
                Arc::new(Mesh::new(1, 16)),
            )
            .with_commands(rx);
            while !halt.load(Ordering::Relaxed) {
                w.round(1);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let live = Live { config: v.clone(), params: Some(p), outside_addr: None, local_addrs: Vec::new() };
        Self {
            live: LiveConfig::new(vec![CommandTx::unwoken(tx.clone())], usize::MAX, None, live, text.to_string()),
            original: v,
            worker: tx,
            stop,
            thread: Some(thread),
        }
    }

    /// The pool addresses the worker's engine has, from its census.
    fn engine_addresses(&self) -> Vec<(u32, String)> {
        let (reply, rx) = crossbeam_channel::bounded(1);
        self.worker.send(Command::Census { from_slot: 0, reply }).expect("worker runs");
        let Sliced { part, .. } = rx.recv_timeout(Duration::from_secs(5)).expect("census");
        part.blocks.into_keys().collect()
    }

    /// A refused push left the configuration, its text, its generation
    /// and the engine as they were, and was counted.
    fn assert_unchanged(&self) {
        assert_eq!(self.live.yaml(), BASE);
        assert_eq!(self.live.counts(), ConfigCounts { generation: 1, accepted: 0, refused: 1 });
        assert_eq!(self.live.in_force().expect("not poisoned").config, self.original);
        assert_eq!(self.engine_addresses(), vec![(ip("203.0.113.10"), "p".to_string())]);
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn paths(e: &ApplyError) -> Vec<String> {
    match e {
        ApplyError::Invalid(errors) => errors.iter().map(|x| x.path.clone()).collect(),
        other => panic!("expected ApplyError::Invalid, got {other:?}"),
    }
}

#[test]
fn a_valid_push_reaches_the_engine_and_is_the_next_generation() {
    let h = Harness::new();
    let text = BASE.replace("rules:", NEW_POOL);
    let done = apply(&h.live, &text, "test").expect("applied");
    assert_eq!(done, Applied { generation: 2, flushed: 0 });
    assert_eq!(done.to_string(), "config: generation 2 in force; 0 sessions on removed addresses flushed\n");
    assert_eq!(h.live.yaml(), text);
    assert_eq!(h.live.counts(), ConfigCounts { generation: 2, accepted: 1, refused: 0 });
    let in_force = h.live.in_force().expect("not poisoned");
    let params = in_force.params.expect("NAT");
    assert_eq!(params.pools[1].addresses, vec![ip("198.51.100.1")]);
    assert_eq!(params.icmp_source, Some(ip("100.64.0.1")), "the inside address stays the ICMP source");
    assert_eq!(
        h.engine_addresses(),
        vec![(ip("198.51.100.1"), "q".to_string()), (ip("203.0.113.10"), "p".to_string())]
    );
}

#[test]
fn a_yaml_error_is_refused_and_changes_nothing() {
    let h = Harness::new();
    let e = apply(&h.live, "interfaces: [in0\n", "test").expect_err("not YAML");
    assert!(matches!(e, ApplyError::Invalid(ref v) if !v.is_empty()), "{e:?}");
    assert!(e.to_string().starts_with("config:"), "{e}");
    h.assert_unchanged();
}

#[test]
fn an_unknown_key_is_refused_with_its_path_and_changes_nothing() {
    let h = Harness::new();
    let e = apply(&h.live, &format!("{BASE}workerz:\n  cores: [0]\n"), "test").expect_err("typo");
    assert_eq!(paths(&e), vec!["workerz"]);
    assert!(e.to_string().contains("config:15:1: workerz: unknown field `workerz`"), "{e}");
    h.assert_unchanged();
}

#[test]
fn an_overlapping_pool_is_refused_and_changes_nothing() {
    let h = Harness::new();
    let text = BASE.replace(
            "rules:",
            "  - name: q\n    addresses: [203.0.113.8/29]\nrules:\n  - action: snat\n    pool: q\n    match:\n      src: [10.0.0.0/8]",
        );
    let e = apply(&h.live, &text, "test").expect_err("overlap");
    assert_eq!(paths(&e), vec!["pools[1].addresses[0]"]);
    h.assert_unchanged();
}

#[test]
fn a_key_that_needs_a_restart_is_refused_with_its_line_and_changes_nothing() {
    let h = Harness::new();
    let e = apply(&h.live, &BASE.replace("outside: out0", "outside: out1"), "test").expect_err("restart");
    let ApplyError::NeedsRestart(keys) = &e else { panic!("expected NeedsRestart, got {e:?}") };
    assert_eq!(keys, &vec![RestartKey { key: "interfaces", line: 2, col: 3 }]);
    assert_eq!(e.to_string(), "config:2:3: interfaces: changes only with a restart\n");
    h.assert_unchanged();
}

#[test]
fn a_table_size_the_engine_cannot_change_live_is_refused_and_changes_nothing() {
    let h = Harness::new();
    let e = apply(&h.live, &BASE.replace("max_sessions: 4096", "max_sessions: 8192"), "test").expect_err("not live");
    assert!(matches!(e, ApplyError::NotLive(_)), "{e:?}");
    assert!(e.to_string().contains("table sizes change only with a restart"), "{e}");
    h.assert_unchanged();
}

#[test]
fn without_nat_there_is_nothing_to_apply() {
    let v = config::load(BASE, usize::MAX).expect("BASE is valid");
    let live = Live { config: v, params: None, outside_addr: None, local_addrs: Vec::new() };
    let l = LiveConfig::new(Vec::new(), usize::MAX, None, live, BASE.to_string());
    let e = apply(&l, BASE, "test").expect_err("no NAT");
    assert!(matches!(e, ApplyError::NoNat), "{e:?}");
    assert_eq!(l.counts(), ConfigCounts { generation: 1, accepted: 0, refused: 1 });
}

#[test]
fn a_pool_pushed_away_and_back_is_taken_back() {
    let h = Harness::new();
    // p replaced by q, then p again: the engine kept p's number and address.
    let only_q = BASE
        .replace("name: p\n    addresses: [203.0.113.10]", "name: q\n    addresses: [198.51.100.1]")
        .replace("pool: p", "pool: q");
    apply(&h.live, &only_q, "test").expect("p replaced by q");
    let done = apply(&h.live, BASE, "test").expect("p again");
    assert_eq!(done.generation, 3);
    // An address p never had still needs a restart.
    let e = apply(&h.live, &BASE.replace("[203.0.113.10]", "[203.0.113.10, 203.0.113.11]"), "test")
        .expect_err("a new address");
    assert!(matches!(e, ApplyError::NotLive(_)), "{e:?}");
}

#[test]
fn an_address_pushed_away_and_back_is_taken_back() {
    let two = BASE.replace("[203.0.113.10]", "[203.0.113.10, 203.0.113.11]");
    let h = Harness::on(&two);
    apply(&h.live, BASE, "test").expect("203.0.113.11 leaves p");
    apply(&h.live, &two, "test").expect("203.0.113.11 comes back to p");
    assert_eq!(h.live.counts(), ConfigCounts { generation: 3, accepted: 2, refused: 0 });
}

#[test]
fn a_static_nat_entry_is_pushed_live_and_one_in_a_pool_refused_at_its_line() {
    let h = Harness::new();
    let e = apply(&h.live, &format!("{BASE}static_nat:\n  - {{public: 203.0.113.10, inside: 100.64.0.9}}\n"), "test")
        .expect_err("in the pool");
    assert_eq!(paths(&e), vec!["static_nat[0].public"]);
    assert!(e.to_string().contains("config:16:"), "{e}");
    h.assert_unchanged();
    let text = format!("{BASE}static_nat:\n  - {{public: 198.51.100.7, inside: 100.64.0.9}}\n");
    let done = apply(&h.live, &text, "test").expect("applied live");
    assert_eq!(done, Applied { generation: 2, flushed: 0 });
    let params = h.live.in_force().expect("not poisoned").params.expect("NAT");
    assert_eq!(params.statics, vec![dataplane::nat::StaticNat::new(ip("198.51.100.7"), ip("100.64.0.9"))]);
    // And taken away again.
    assert_eq!(apply(&h.live, BASE, "test").expect("applied live").generation, 3);
}
