//! The ordered rule list: first match wins, like Shorewall's `snat` file.
//!
//! Rules are consulted only for the first packet of a flow; the decision is
//! pinned in the session, so later packets and replies never re-match (the
//! netfilter behaviour). A rule reads in each direction as follows:
//! - outbound (an inside host starts the flow): `src` is the inside host,
//!   `dst` the remote, `dst_ports` the remote's port; every action applies;
//! - inbound (a remote starts a flow to an inside host's own address): only
//!   a `no_nat` rule admits it, read in reverse: `src` is still the inside
//!   host (the packet's destination), `dst` still the remote (its source),
//!   and `dst_ports` the inside host's port, the one the connection is made
//!   to. So `dst_ports` always names the port of the side that did not
//!   start the connection, and an exemption for port 8022 admits exactly
//!   that port. `route` and `snat`/`masquerade` admit nothing inbound but
//!   their sessions' replies.
//!
//! ICMP echo is matched with port 0 both ways, so a rule that names
//! `dst_ports` matches only TCP and UDP; protocols the NAT does not
//! translate (`dport` `None`) match any `dst_ports`.
#![forbid(unsafe_code)]

use super::params::{proto, Prefix, Rule, RuleAction, RuleMatch};
use crate::wire::ipv4::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};

#[inline]
fn any_contains(list: &[Prefix], a: u32) -> bool {
    list.iter().any(|p| p.contains(a))
}

fn proto_bit(p: u8) -> u8 {
    match p {
        PROTO_TCP => proto::TCP,
        PROTO_UDP => proto::UDP,
        PROTO_ICMP => proto::ICMP,
        _ => proto::OTHER,
    }
}

impl RuleMatch {
    /// True if a flow (src, dst, protocol, destination port) matches.
    /// `dport` is `None` for protocols without ports and for reverse matching.
    #[inline]
    pub fn matches(&self, src: u32, dst: u32, protocol: u8, dport: Option<u16>) -> bool {
        (self.src.is_empty() || any_contains(&self.src, src))
            && !any_contains(&self.src_except, src)
            && (self.dst.is_empty() || any_contains(&self.dst, dst))
            && !any_contains(&self.dst_except, dst)
            && (self.protocols == 0 || self.protocols & proto_bit(protocol) != 0)
            && (self.dst_ports.is_empty()
                || match dport {
                    None => true,
                    Some(d) => self.dst_ports.iter().any(|&(lo, hi)| lo <= d && d <= hi),
                })
    }
}

/// The rule list as the engine keeps it: one entry per source prefix of
/// each rule (a rule without any, one matching every source), in rule
/// order, each with its rule's position and action and whether the rule
/// has other lists to check. A flow's first match walks these flat
/// entries, an AND and a compare each: the usual CGNAT rule, which names
/// only source prefixes, never leaves them.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    by_src: Vec<SrcEntry>,
}

/// One source prefix of a rule (see [`RuleSet`]).
#[derive(Debug, Clone, Copy)]
struct SrcEntry {
    addr: u32,
    mask: u32,
    /// The rule's position in the list.
    rule: u32,
    /// The rule names more than source prefixes: its whole match decides.
    rest: bool,
    action: RuleAction,
}

impl RuleSet {
    /// Compiles `rules`, keeping their order.
    pub fn new(rules: &[Rule]) -> Self {
        let mut by_src = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let m = &r.matches;
            let rest = !(m.src_except.is_empty()
                && m.dst.is_empty()
                && m.dst_except.is_empty()
                && m.protocols == 0
                && m.dst_ports.is_empty());
            let rule = u32::try_from(i).unwrap_or(u32::MAX);
            let any = [Prefix::new(0, 0)];
            let src = if m.src.is_empty() { &any[..] } else { &m.src[..] };
            by_src.extend(src.iter().map(|p| SrcEntry { addr: p.addr, mask: p.mask(), rule, rest, action: r.action }));
        }
        Self { rules: rules.to_vec(), by_src }
    }

    /// The first rule matching the flow, if any.
    #[inline(always)]
    pub fn first_match(&self, src: u32, dst: u32, protocol: u8, dport: Option<u16>) -> Option<RuleAction> {
        self.first_match_at(src, dst, protocol, dport).map(|(_, a)| a)
    }

    /// [`RuleSet::first_match`] with the rule's position in the list.
    /// (A rule with other lists whose source matched but the rest did not
    /// is checked again for each of its further prefixes the source lies
    /// in: the same answer, found the same way.)
    #[inline(always)]
    pub fn first_match_at(&self, src: u32, dst: u32, protocol: u8, dport: Option<u16>) -> Option<(usize, RuleAction)> {
        for e in &self.by_src {
            if src & e.mask == e.addr
                && (!e.rest
                    || self.rules.get(e.rule as usize).is_some_and(|r| r.matches.matches(src, dst, protocol, dport)))
            {
                return Some((e.rule as usize, e.action));
            }
        }
        None
    }
}

/// The first rule matching the flow, if any (the uncompiled form).
pub fn first_match(rules: &[Rule], src: u32, dst: u32, protocol: u8, dport: Option<u16>) -> Option<RuleAction> {
    rules.iter().find(|r| r.matches.matches(src, dst, protocol, dport)).map(|r| r.action)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: [u8; 4], l: u8) -> Prefix {
        Prefix::new(u32::from_be_bytes(a), l)
    }
    fn ip(a: [u8; 4]) -> u32 {
        u32::from_be_bytes(a)
    }

    #[test]
    fn first_match_wins_with_exclusions_and_ports() {
        let rules = vec![
            Rule {
                matches: RuleMatch { dst: vec![p([10, 0, 0, 0], 8)], ..Default::default() },
                action: RuleAction::NoNat,
            },
            Rule {
                matches: RuleMatch {
                    src: vec![p([192, 168, 1, 0], 24)],
                    src_except: vec![p([192, 168, 1, 7], 32)],
                    protocols: proto::TCP,
                    dst_ports: vec![(80, 80), (8000, 8099)],
                    ..Default::default()
                },
                action: RuleAction::Translate { pool: 1 },
            },
            Rule {
                matches: RuleMatch { src: vec![p([192, 168, 0, 0], 16)], ..Default::default() },
                action: RuleAction::Translate { pool: 0 },
            },
        ];
        let h = ip([192, 168, 1, 5]);
        assert_eq!(first_match(&rules, h, ip([10, 1, 1, 1]), 6, Some(80)), Some(RuleAction::NoNat));
        assert_eq!(first_match(&rules, h, ip([8, 8, 8, 8]), 6, Some(8050)), Some(RuleAction::Translate { pool: 1 }));
        assert_eq!(first_match(&rules, h, ip([8, 8, 8, 8]), 6, Some(443)), Some(RuleAction::Translate { pool: 0 }));
        assert_eq!(first_match(&rules, h, ip([8, 8, 8, 8]), 17, Some(80)), Some(RuleAction::Translate { pool: 0 }));
        let excluded = ip([192, 168, 1, 7]);
        assert_eq!(
            first_match(&rules, excluded, ip([8, 8, 8, 8]), 6, Some(80)),
            Some(RuleAction::Translate { pool: 0 })
        );
        assert_eq!(first_match(&rules, ip([172, 16, 0, 1]), ip([8, 8, 8, 8]), 6, Some(80)), None);
        // The compiled set decides the same for every case above and more.
        let set = RuleSet::new(&rules);
        for src in [h, excluded, ip([172, 16, 0, 1]), ip([192, 168, 9, 9])] {
            for dst in [ip([10, 1, 1, 1]), ip([8, 8, 8, 8])] {
                for (proto, port) in [(6, Some(80)), (6, Some(8050)), (6, Some(443)), (17, Some(80)), (1, None)] {
                    assert_eq!(set.first_match(src, dst, proto, port), first_match(&rules, src, dst, proto, port));
                }
            }
        }
    }

    /// The flat entries decide as the rules do: rules with several source
    /// prefixes, none, and other lists that fail after the source matched.
    #[test]
    fn the_compiled_set_takes_the_first_matching_rule() {
        let rules = vec![
            Rule {
                matches: RuleMatch {
                    src: vec![p([10, 0, 0, 0], 8), p([192, 168, 1, 0], 24)],
                    protocols: proto::TCP,
                    ..Default::default()
                },
                action: RuleAction::NoNat,
            },
            Rule {
                matches: RuleMatch { dst: vec![p([8, 8, 8, 0], 24)], ..Default::default() },
                action: RuleAction::Route,
            },
            Rule {
                matches: RuleMatch { src: vec![p([172, 16, 0, 0], 12), p([192, 168, 0, 0], 16)], ..Default::default() },
                action: RuleAction::Translate { pool: 2 },
            },
            Rule { matches: RuleMatch::default(), action: RuleAction::Translate { pool: 0 } },
        ];
        let set = RuleSet::new(&rules);
        let mut seen = std::collections::HashSet::new();
        for src in
            [ip([10, 1, 2, 3]), ip([192, 168, 1, 9]), ip([192, 168, 2, 9]), ip([172, 20, 0, 1]), ip([1, 2, 3, 4])]
        {
            for dst in [ip([8, 8, 8, 8]), ip([9, 9, 9, 9])] {
                for (proto, port) in [(6, Some(80)), (17, Some(53)), (1, None)] {
                    let want = rules.iter().position(|r| r.matches.matches(src, dst, proto, port));
                    let got = set.first_match_at(src, dst, proto, port);
                    assert_eq!(got.map(|(i, _)| i), want, "{src:#x} -> {dst:#x} proto {proto}");
                    assert_eq!(got.map(|(_, a)| a), want.map(|i| rules[i].action));
                    seen.insert(want);
                }
            }
        }
        // Every rule was the first match somewhere.
        assert_eq!(seen.len(), 4, "{seen:?}");
    }
}
