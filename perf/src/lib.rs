//! masq's measuring tools: the engine benchmark (`engine-bench`) and, with
//! the AF_XDP issue, the lab comparison with the kernel's NAT.
#![forbid(unsafe_code)]

pub mod flows;
pub mod report;
pub mod rfc9693;
pub mod trex;
