//! `compare probe`: the latency rows' generator and timestamping sink in
//! one thread (see [`probe()`]).

use super::*;

/// Seconds the probe keeps receiving after its last frame (frames in flight).
const PROBE_LINGER: f64 = 0.5;

/// A gap in the probe's loop this long means its thread was off CPU 0.
const PROBE_STALL: Duration = Duration::from_millis(1);

/// `compare probe`: the latency rows' generator and timestamping sink in
/// one thread on CPU 0. It opens its transmit socket on `iface` (in the
/// namespace it was started in), moves to `sink_ns`, attaches masq's XDP
/// program to `sink_iface` (no local addresses: every IPv4 frame comes to
/// the socket) and opens its receive socket there, says `ready`, then sends
/// 100k flows' frames one at a time at `rate` a second for `seconds`, each
/// with its send time, and between frames reads what arrived (no system
/// call) and records send-to-receive times. Before, a separate sink process
/// slept in poll(2) on the same CPU as the generator and took turns with it
/// by the scheduler: frames that had arrived waited up to a tick (4 ms at
/// 250 Hz) for the sink to run, which made the tail of every path. Here a
/// frame waits only while the whole thread is off its CPU (it yields
/// between frames, so what else runs on CPU 0 still gets it), and then at
/// most the frames in flight do; `stalls` counts those gaps over 1 ms.
pub(super) fn probe(
    iface: &str,
    sink_ns: &str,
    sink_iface: &str,
    seconds: f64,
    rate: u64,
    skip: f64,
    tail_log: Option<&std::path::Path>,
) -> Res<()> {
    core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
    let src_mac = mac_of(iface)?;
    // The box's inside MAC: the lab's fixed address of nat-in.
    let dst_mac = [2, 0, 0, 0, 1, 1];
    let mut tx = dataplane::xdp::XdpTx::open(iface, 0, 4096).map_err(|e| e.to_string())?;
    dataplane::xdp::enter_netns(&format!("/var/run/netns/{sink_ns}")).map_err(|e| format!("netns {sink_ns}: {e}"))?;
    let mut prog = dataplane::xdp::XdpProgram::attach(sink_iface, &[], 0).map_err(|e| e.to_string())?;
    let mut rx = dataplane::xdp::XdpRx::open(sink_iface, 0, 4096).map_err(|e| e.to_string())?;
    prog.register(0, rx.fd()).map_err(|e| e.to_string())?;
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let skip_ns = now_ns() + u64::try_from(Duration::from_secs_f64(skip).as_nanos()).unwrap_or(0);
    let end = start + Duration::from_secs_f64(seconds);
    let stop = end + Duration::from_secs_f64(PROBE_LINGER);
    let timed_from = start + Duration::from_secs_f64(skip);
    let (mut k, mut n, mut stalls) = (0u64, 0u64, 0u64);
    // (receive time, latency) of the frames over 1 ms, for --tail-log.
    let mut tail: Vec<(u64, u64)> = Vec::with_capacity(if tail_log.is_some() { 1 << 20 } else { 0 });
    let mut last = Instant::now();
    loop {
        rx.recv(|f| {
            let Some(st) = f.get(STAMP) else { return };
            let sent = u64::from_be_bytes(st.try_into().unwrap_or([0; 8]));
            let now = now_ns();
            if sent >= skip_ns && now >= sent {
                let us = ((now - sent) / 1000).max(1);
                let _ = h.record(us);
                n += 1;
                if us > 1000 && tail.len() < tail.capacity() {
                    tail.push((now, us));
                }
            }
        });
        let now = Instant::now();
        if now - last > PROBE_STALL && now > timed_from {
            stalls += 1;
        }
        last = now;
        if now >= stop {
            break;
        }
        let due = start + Duration::from_secs_f64(k as f64 / rate.max(1) as f64);
        if now < end && now >= due {
            let base = k;
            k += tx.send(1, |_, f| {
                let n = write_frame(f, src_mac, dst_mac, "100k", base, SUBSCRIBERS);
                if let Some(st) = f.get_mut(STAMP) {
                    st.copy_from_slice(&now_ns().to_be_bytes());
                }
                n
            }) as u64;
            last = Instant::now();
        } else {
            // Yield, not spin: whatever else must run on CPU 0 gets it.
            std::thread::yield_now();
        }
    }
    if let Some(file) = tail_log {
        let text: String = tail.iter().map(|(t, us)| format!("{t} {us}\n")).collect();
        std::fs::write(file, text).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    println!("sent {k} seconds {seconds}");
    let cdf: Vec<String> = CDF_QUANTILES.iter().map(|&q| format!("{q}:{}", h.value_at_quantile(q))).collect();
    println!(
        "latency_us n={n} p50={} p90={} p99={} p999={} max={} stalls={stalls} cdf={}",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        cdf.join(",")
    );
    Ok(())
}
