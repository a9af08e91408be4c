//! masq's control side as a library: everything `masq` (`bin/masq/`) runs,
//! in modules that import downward only, so each can be read, and the live
//! configuration tested, on its own (no root, no NIC).
//!
//! | module | holds | imports |
//! |---|---|---|
//! | [`system`] | interface addresses, MACs, MTUs; the TAP device; the nftables host guard; `ip neigh` | - |
//! | [`tls`] | the control API's TLS: certificate reload, listener, client with a CA file | - |
//! | [`auth`] | who may call what on the API; failed authentications and their delays | - |
//! | [`telemetry`] | what workers publish ([`telemetry::Shared`]) and the one [`telemetry::MetricsSnapshot`] every view reads | system |
//! | [`params`] | a validated configuration -> the engine's parameters and the host guard's | system |
//! | [`whois`] | `masq whois`: a deterministic pool's formula answers who held a public port (RFC 7422) | - |
//! | [`whois_live`] | `masq whois` from a running masq: `GET /whois`'s answer, merged from the workers' holds | - |
//! | [`client`] | the operator commands' HTTP client | tls |
//! | [`natlog`] | NAT event export: JSON-lines files, syslog (RFC 5424) over UDP/TCP; per-sink loss counters | - |
//! | [`whois_log`] | `masq whois --log`: who held a public ip:port at a time, from JSON-lines files | natlog |
//! | [`metrics`] | `/metrics`: a snapshot in the Prometheus text format | natlog, telemetry |
//! | [`live`] | the configuration in force: [`live::apply`] (and its audit line), SIGHUP reload, masquerade follow | params, telemetry |
//! | [`ha`] | an HA pair: the role, the authenticated sync link to the peer, its counters | telemetry |
//! | [`api`] | the HTTP routes | auth, ha, live, metrics, telemetry, tls, whois_live |
//! | [`run`] | `masq run`: start the workers, the control loop, stop | api, auth, ha, live, natlog, system, telemetry, tls |
//!
//! Invariant: no module imports one that imports it back (the table's last
//! column names every `crate::` import).

pub mod api;
pub mod auth;
pub mod client;
pub mod ha;
pub mod live;
pub mod metrics;
pub mod natlog;
pub mod params;
pub mod run;
pub mod system;
pub mod telemetry;
pub mod tls;
pub mod whois;
pub mod whois_live;
pub mod whois_log;
