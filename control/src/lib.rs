//! masq's control side as a library: everything `masq` (`bin/masq/`) runs,
//! in modules that import downward only, so each can be read, and the live
//! configuration tested, on its own (no root, no NIC).
//!
//! | module | holds | imports |
//! |---|---|---|
//! | [`system`] | interface addresses, MACs, MTUs; the TAP device; the nftables forward guard; `ip neigh` | - |
//! | [`telemetry`] | what workers publish ([`telemetry::Shared`]) and the one [`telemetry::MetricsSnapshot`] every view reads | - |
//! | [`params`] | a validated configuration -> the engine's parameters | - |
//! | [`client`] | the operator commands' HTTP client | - |
//! | [`metrics`] | `/metrics`: a snapshot in the Prometheus text format | telemetry |
//! | [`live`] | the configuration in force: [`live::apply`], SIGHUP reload, masquerade follow | params, telemetry |
//! | [`api`] | the HTTP routes | live, metrics, telemetry |
//! | [`run`] | `masq run`: start the workers, the control loop, stop | api, live, system, telemetry |
//!
//! Invariant: no module imports one that imports it back (the table's last
//! column names every `crate::` import).

pub mod api;
pub mod client;
pub mod live;
pub mod metrics;
pub mod params;
pub mod run;
pub mod system;
pub mod telemetry;
