//! masq's data plane: packet views, the NAT engine, the I/O backends
//! (AF_XDP, in memory) and the worker loop.
//!
//! The packet views ([`wire`]) and the engine ([`nat`]) are pure: no I/O, no
//! allocation after construction, no `unsafe`.
#![deny(unsafe_code)]
// No `[]` indexing or slicing that could panic on input (STYLE.md): `get`,
// fixed-size arrays and patterns instead. Test helpers opt out.
#![deny(clippy::indexing_slicing)]

pub mod io;
pub mod l2;
pub mod nat;
pub mod rss;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod wire;
pub mod worker;
pub mod xdp;
