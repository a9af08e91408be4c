//! masq's own view of a latency row's window (issue 15, part 1): its
//! workers' round-time histogram (`masq_worker_round_duration_seconds`) and
//! ring drops from its `/metrics`, read before and after the timed traffic.
//! A tail the sink sees beside short rounds means the worker was not running
//! (the CPU was elsewhere) or frames waited in a ring; long rounds mean the
//! worker itself was slow. The histogram's buckets are masq's (1 µs to
//! 100 ms, coarse above 1 ms), so a quantile here is the upper bound of the
//! bucket it falls in.

// Counts and bucket bounds read from text: whole, non-negative, far below 2^53.
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]

use std::collections::BTreeMap;

/// One scrape's numbers that matter here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// Cumulative round counts by bucket bound (seconds), summed over workers.
    buckets: BTreeMap<u64, u64>,
    rounds: u64,
    fill_ring_empty: u64,
    rx_ring_full: u64,
}

/// The window between two scrapes.
#[derive(serde::Serialize, Debug, Clone, Default, PartialEq)]
pub struct Window {
    /// Worker rounds with traffic in the window.
    pub rounds: u64,
    /// Upper bounds (µs) of the buckets holding the rounds' p50, p99, p99.9.
    pub round_p50_us_le: u64,
    pub round_p99_us_le: u64,
    pub round_p999_us_le: u64,
    /// Rounds longer than 1 ms.
    pub rounds_over_1ms: u64,
    /// Frames the kernel could not give masq (no free frame in the fill ring).
    pub fill_ring_empty: u64,
    /// Frames the kernel dropped with masq's RX ring full.
    pub rx_ring_full: u64,
}

/// Reads the families this module needs from a `/metrics` text.
pub fn parse(text: &str) -> Scrape {
    let mut s = Scrape::default();
    for line in text.lines() {
        let Some((key, value)) = line.rsplit_once(' ') else { continue };
        let Ok(v) = value.trim().parse::<f64>() else { continue };
        let v = v as u64;
        if let Some(rest) = key.strip_prefix("masq_worker_round_duration_seconds_bucket{") {
            let Some(le) = rest.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else { continue };
            if le == "+Inf" {
                continue;
            }
            let Ok(secs) = le.parse::<f64>() else { continue };
            *s.buckets.entry((secs * 1e9).round() as u64).or_default() += v;
        } else if key.starts_with("masq_worker_round_duration_seconds_count") {
            s.rounds += v;
        } else if key == "masq_drops_total{reason=\"fill_ring_empty\"}" {
            s.fill_ring_empty += v;
        } else if key == "masq_drops_total{reason=\"rx_ring_full\"}" {
            s.rx_ring_full += v;
        }
    }
    s
}

/// What happened between `before` and `after`.
pub fn window(before: &Scrape, after: &Scrape) -> Window {
    let rounds = after.rounds.saturating_sub(before.rounds);
    // Rounds at or under each bound in the window (cumulative).
    let within: Vec<(u64, u64)> = after
        .buckets
        .iter()
        .map(|(&ns, &n)| (ns, n.saturating_sub(before.buckets.get(&ns).copied().unwrap_or(0))))
        .collect();
    let quantile = |q: f64| -> u64 {
        let need = (q * rounds as f64).ceil() as u64;
        within.iter().find(|&&(_, n)| n >= need).map_or(u64::MAX, |&(ns, _)| ns / 1000)
    };
    let under_1ms = within.iter().find(|&&(ns, _)| ns == 1_000_000).map_or(0, |&(_, n)| n);
    Window {
        rounds,
        round_p50_us_le: quantile(0.5),
        round_p99_us_le: quantile(0.99),
        round_p999_us_le: quantile(0.999),
        rounds_over_1ms: rounds.saturating_sub(under_1ms),
        fill_ring_empty: after.fill_ring_empty.saturating_sub(before.fill_ring_empty),
        rx_ring_full: after.rx_ring_full.saturating_sub(before.rx_ring_full),
    }
}

/// A bound for the table: `≤ 20 µs`, or `> 100 ms` past the last bucket.
pub fn bound(us: u64) -> String {
    if us == u64::MAX {
        "> 100 ms".into()
    } else if us >= 1000 {
        format!("≤ {} ms", us / 1000)
    } else {
        format!("≤ {us} µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
masq_worker_round_duration_seconds_bucket{worker=\"0\",le=\"0.00001\"} 100
masq_worker_round_duration_seconds_bucket{worker=\"0\",le=\"0.001\"} 100
masq_worker_round_duration_seconds_bucket{worker=\"0\",le=\"0.01\"} 100
masq_worker_round_duration_seconds_bucket{worker=\"0\",le=\"+Inf\"} 100
masq_worker_round_duration_seconds_count{worker=\"0\"} 100
masq_drops_total{reason=\"fill_ring_empty\"} 5
masq_drops_total{reason=\"rx_ring_full\"} 0
";

    const AFTER: &str = "\
masq_worker_round_duration_seconds_bucket{worker=\"0\",le=\"0.00001\"} 1090
masq_worker_round_duration_seconds_bucket{worker=\"0\",le=\"0.001\"} 1098
masq_worker_round_duration_seconds_bucket{worker=\"0\",le=\"0.01\"} 1100
masq_worker_round_duration_seconds_bucket{worker=\"0\",le=\"+Inf\"} 1100
masq_worker_round_duration_seconds_count{worker=\"0\"} 1100
masq_drops_total{reason=\"fill_ring_empty\"} 17
masq_drops_total{reason=\"rx_ring_full\"} 3
";

    #[test]
    fn the_window_holds_only_what_happened_between_the_scrapes() {
        let w = window(&parse(BEFORE), &parse(AFTER));
        // 1000 rounds: 990 within 10 µs, 8 more within 1 ms, 2 within 10 ms.
        assert_eq!(w.rounds, 1000);
        assert_eq!(w.round_p50_us_le, 10);
        assert_eq!(w.round_p99_us_le, 10);
        assert_eq!(w.round_p999_us_le, 10_000);
        assert_eq!(w.rounds_over_1ms, 2);
        assert_eq!((w.fill_ring_empty, w.rx_ring_full), (12, 3));
        assert_eq!(bound(w.round_p999_us_le), "≤ 10 ms");
    }

    #[test]
    fn workers_are_summed_and_no_rounds_give_no_bound() {
        let two = "\
masq_worker_round_duration_seconds_bucket{worker=\"0\",le=\"0.00001\"} 10
masq_worker_round_duration_seconds_bucket{worker=\"1\",le=\"0.00001\"} 30
masq_worker_round_duration_seconds_count{worker=\"0\"} 10
masq_worker_round_duration_seconds_count{worker=\"1\"} 30
";
        let s = parse(two);
        assert_eq!(s.rounds, 40);
        let none = window(&s, &s);
        assert_eq!(none.rounds, 0);
        assert_eq!(none.rounds_over_1ms, 0);
    }
}
