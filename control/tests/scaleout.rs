//! End-to-end: scale-out behind ECMP with BGP (deploy/lab/scaleout.sh).
//! Three masq boxes, each with its own pool, announce it (and a default
//! route to the inside router) through FRR while masq is ready, by the
//! health hook deploy/frr/masq-bgp-health.sh. 300 subscribers spread over
//! the boxes by the inside router's ECMP (source address hash, resilient
//! buckets). One box's masq is killed: its subscribers' new flows go
//! through the other boxes within the BGP hold time, and every other
//! subscriber keeps its public address. The box comes back: it joins the
//! inside router's set, and no live subscriber moves to it (a resilient
//! group gives a joining box idle buckets only). Then another box hangs whole
//! (masq, bgpd and hook stopped): its peers drop its routes at the hold
//! time (3 s) and its subscribers move too. Last, a masq that hangs alone
//! (its /readyz no longer answers) is withdrawn by its hook. Needs root.

mod lab;

use lab::Lab;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The BGP hold time of deploy/frr/*.conf (`timers bgp 1 3`).
const HOLD: Duration = Duration::from_secs(3);
/// What the lab adds to it: the hook's polls, the mirror's, a probe round.
const MARGIN: Duration = Duration::from_secs(2);
/// How long the hook takes to give up on a masq that hangs: 2 polls of
/// 1 s (curl's timeout) and 0.2 s, then BGP, the mirror and a probe round
/// (1 s each at most) on a loaded machine.
const HUNG_LIMIT: Duration = Duration::from_secs(6);

/// A UDP server that answers each datagram with its payload and the
/// source address and port it came from (the subscriber's public ones).
const SERVER: &str = "import socket,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind((sys.argv[1],int(sys.argv[2])))
while True:
    d,a=s.recvfrom(2048); s.sendto(d+(' %s:%d'%a).encode(),a)";

/// From every subscriber address (a new socket each run: a new flow), one
/// datagram to the server, sent again to the unanswered ones each half
/// second for ROUNDS rounds; prints `subscriber public:port` (or `-`).
const PROBE: &str = "import socket,select,sys,time
host,port,rounds=sys.argv[1],int(sys.argv[2]),int(sys.argv[3])
subs=['100.64.%d.%d'%(n,i) for n in (1,2) for i in range(1,151)]
socks=[]
for a in subs:
    s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind((a,0)); s.setblocking(False); socks.append((a,s))
seen={}
for r in range(rounds):
    for a,s in socks:
        if a not in seen: s.sendto(a.encode(),(host,port))
    end=time.time()+0.5
    while len(seen)<len(subs) and time.time()<end:
        rd,_,_=select.select([s for _,s in socks],[],[],max(0,end-time.time()))
        for s in rd:
            d=s.recv(2048).decode().split()
            seen[d[0]]=d[1]
    if len(seen)==len(subs): break
for a in subs: print(a, seen.get(a,'-'))";

/// The subscribers' live traffic: from every subscriber address, one
/// datagram each 0.2 s on a flow of its own (to a discard port), for as
/// long as the test runs. A resilient group moves a bucket to a joining
/// box only when it has been idle since its last move (or for idle_timer),
/// so this is what makes a subscriber "live" to the inside router: a
/// probe's one datagram can fall in the same jiffy as a move and leave its
/// bucket looking unused (twice in clean-clone CI, box 1 took back 14 and
/// 72 of its former subscribers when it rejoined).
const LIVE: &str = "import socket,time
subs=['100.64.%d.%d'%(n,i) for n in (1,2) for i in range(1,151)]
socks=[]
for a in subs:
    s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind((a,0)); s.setblocking(False); socks.append(s)
while True:
    for s in socks:
        try: s.sendto(b'live',('198.51.100.1',5354))
        except OSError: pass
    time.sleep(0.2)";

/// Reads and drops the live traffic (no ICMP port unreachable back).
const DISCARD: &str = "import socket
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('198.51.100.1',5354))
while True: s.recv(2048)";

/// Subscriber -> public address (None: no answer).
type Seen = BTreeMap<String, Option<String>>;

fn probe(lab: &Lab, rounds: u32) -> Seen {
    let out = lab.ok("sub", &["python3", "-c", PROBE, "198.51.100.1", "5353", &rounds.to_string()]);
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(s, p)| (s.to_string(), p.split_once(':').map(|(a, _)| a.to_string())))
        .collect()
}

/// The box whose pool holds `public`: box K has 203.0.113.(16K)/28.
fn box_of(public: &str) -> Option<u8> {
    let last: u8 = public.strip_prefix("203.0.113.")?.parse().ok()?;
    matches!(last / 16, 1..=3).then_some(last / 16)
}

/// Subscribers per box (index 0: unanswered or outside every pool).
fn per_box(seen: &Seen) -> [usize; 4] {
    let mut n = [0; 4];
    for p in seen.values() {
        let b = p.as_deref().and_then(box_of).unwrap_or(0);
        if let Some(c) = n.get_mut(usize::from(b)) {
            *c += 1;
        }
    }
    n
}

/// Probes until every subscriber is answered and none through a box in
/// `gone`, or `limit` passes; returns the last probe and when it ended.
fn until_moved(lab: &Lab, gone: &[u8], since: Instant, limit: Duration) -> (Seen, Duration) {
    loop {
        let seen = probe(lab, 2);
        let all = seen.values().all(|p| p.as_deref().and_then(box_of).is_some_and(|b| !gone.contains(&b)));
        if all || since.elapsed() > limit {
            return (seen, since.elapsed());
        }
    }
}

/// Every subscriber whose box stays kept its public address; every one of
/// a box in `gone` moved to a box that stays. Returns how many moved.
fn check_moves(lab: &Lab, before: &Seen, after: &Seen, gone: &[u8]) -> usize {
    assert_eq!(before.len(), 300, "the probe names 300 subscribers");
    let mut moved = 0;
    let mut wrong = Vec::new();
    for (sub, was) in before {
        let was = was.as_deref().unwrap_or("-");
        let now = after.get(sub).cloned().flatten().unwrap_or_else(|| "-".into());
        match box_of(&now) {
            None => wrong.push(format!("{sub} got no answer, or from {now}")),
            Some(b) if gone.contains(&b) => wrong.push(format!("{sub} still leaves through box {b} ({now})")),
            Some(_) if box_of(was).is_some_and(|b| gone.contains(&b)) => moved += 1,
            Some(_) if was != now => wrong.push(format!("{sub} of a box that stayed went from {was} to {now}")),
            Some(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{} subscribers wrong: {wrong:?}\n{}", wrong.len(), diagnosis(lab));
    moved
}

/// Sends `signal` to every process of a box's namespace listed in `pids`
/// (the lab's own: masq, zebra, bgpd, the hook); one that has ended since
/// (the hook's curl or sleep) is no error.
fn signal_all(signal: &str, pids: &str) {
    let _ = std::process::Command::new("kill").arg(format!("-{signal}")).args(pids.split_whitespace()).status();
}

/// Starts masq in box `k` with deploy/frr/masq-box1.yaml made box K's
/// (its pool and BGP peer; workers on cores 1, 0, 1); returns its pid.
fn start_box(lab: &mut Lab, k: u8) -> u32 {
    let example = std::fs::read_to_string(lab::repo().join("deploy/frr/masq-box1.yaml")).expect("example config");
    let cfg = example
        .replace("203.0.113.16/28", &format!("203.0.113.{}/28", 16 * u32::from(k)))
        .replace("10.2.1.1/32", &format!("10.2.{k}.1/32"))
        .replace("box1", &format!("box{k}"))
        .replace("cores: [1]", &format!("cores: [{}]", k % 2));
    let path = lab.dir.join(format!("masq-b{k}.yaml"));
    std::fs::write(&path, cfg).expect("config");
    let path = path.to_str().expect("path").to_string();
    lab.start_masq_in(&format!("b{k}"), &["run", "--config", &path], &format!("masq-b{k}.log"))
}

/// The inside router's current ECMP set for subscribers (table 100).
fn ecmp_set(lab: &Lab) -> String {
    // (Table 100 exists once the mirror has put a route in it.)
    String::from_utf8_lossy(&lab.run("ir", &["ip", "route", "show", "table", "100"]).stdout).into_owned()
}

/// Port blocks in use on box `k` (`masq_port_blocks{state="in_use"}` of
/// its /metrics): one for each subscriber it serves, here.
fn blocks_in_use(lab: &Lab, k: u8) -> u64 {
    let m = lab.run(&format!("b{k}"), &["curl", "-s", "http://127.0.0.1:9091/metrics"]);
    String::from_utf8_lossy(&m.stdout)
        .lines()
        .filter(|l| l.starts_with("masq_port_blocks{") && l.contains("state=\"in_use\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The hooks' and the inside router's logs, for a failure's message.
fn diagnosis(lab: &Lab) -> String {
    let mut d = String::new();
    for f in ["b1/health.log", "b2/health.log", "b3/health.log", "mirror.log"] {
        d += &format!("== {f}\n{}", lab.read(&format!("state/{f}")));
    }
    for (host, cmd) in
        [("ir", "show bgp ipv4 unicast"), ("ur", "show bgp ipv4 unicast"), ("b1", "show bgp ipv4 unicast")]
    {
        let sock = lab.dir.join("state").join(host);
        let o = lab.run(host, &["vtysh", "--vty_socket", sock.to_str().unwrap_or_default(), "-c", cmd]);
        d += &format!("== {host}: {cmd}\n{}", String::from_utf8_lossy(&o.stdout));
    }
    let buckets = lab.run("ir", &["ip", "nexthop", "bucket", "show", "id", "100100"]);
    d + &format!(
        "== inside router's set\n{}== its buckets\n{}",
        ecmp_set(lab),
        String::from_utf8_lossy(&buckets.stdout)
    )
}

#[test]
fn subscribers_spread_over_three_boxes_and_leave_a_dead_one_within_the_hold_time() {
    let mut lab = Lab::up_scaleout("scaleout");
    let mut pids: Vec<u32> = (1..=3).map(|k| start_box(&mut lab, k)).collect();
    lab.spawn("ur", &["python3", "-c", SERVER, "198.51.100.1", "5353"], "server.log");
    lab.spawn("ur", &["python3", "-c", DISCARD], "discard.log");

    // Every box's hook has seen masq ready and announced: the upstream
    // router routes the three pools, the inside router spreads over three.
    let announced = lab.wait_for(Duration::from_secs(20), || {
        let up = String::from_utf8_lossy(&lab.run("ur", &["ip", "route", "show", "proto", "bgp"]).stdout).into_owned();
        let ir = ecmp_set(&lab);
        (1..=3).all(|k| up.contains(&format!("203.0.113.{}/28", 16 * k))) && ir.matches("nexthop via").count() == 3
    });
    assert!(announced, "the boxes' routes did not all arrive:\n{}", lab.read("masq-b1.log"));
    lab.spawn("sub", &["python3", "-c", LIVE], "live.log");

    let before = probe(&lab, 4);
    let counts = per_box(&before);
    println!("subscribers per box: box 1 {}, box 2 {}, box 3 {}", counts[1], counts[2], counts[3]);
    assert_eq!(counts[0], 0, "every subscriber is answered from a pool: {before:?}");
    assert!(counts[1..].iter().all(|&n| n >= 30), "ECMP spreads the 300 over all three boxes: {counts:?}");
    // Each box's own count agrees with what the server saw.
    let agree = lab.wait_for(Duration::from_secs(5), || {
        (1..=3u8).all(|k| blocks_in_use(&lab, k) == counts[usize::from(k)] as u64)
    });
    let blocks: Vec<u64> = (1..=3).map(|k| blocks_in_use(&lab, k)).collect();
    println!("port blocks in use per box (masq's /metrics): {blocks:?}");
    assert!(agree, "each box's port blocks in use ({blocks:?}) match its subscribers ({counts:?})");

    // Box 1's masq dies; its hook withdraws the pool and the default route.
    // (Box 1, the first next hop: a plain hash-threshold ECMP group would
    // move some of box 2's subscribers to box 3 as well.)
    let t = Instant::now();
    lab.kill_pid("KILL", pids[0]);
    let (after, took) = until_moved(&lab, &[1], t, HOLD + MARGIN);
    let counts = per_box(&after);
    println!(
        "masq of box 1 killed: its subscribers answered through the others after {} ms; now box 2 {}, box 3 {}",
        took.as_millis(),
        counts[2],
        counts[3]
    );
    assert!(
        took <= HOLD + MARGIN,
        "box 1's subscribers were not all moved within {:?}; {:?} of 300 answered\n{}",
        HOLD + MARGIN,
        per_box(&after),
        diagnosis(&lab)
    );
    let moved = check_moves(&lab, &before, &after, &[1]);
    assert_eq!(moved, before.values().filter(|p| p.as_deref().and_then(box_of) == Some(1)).count());
    println!("{moved} subscribers of box 1 moved, the other {} kept their public address", 300 - moved);

    // Box 1 comes back: its hook announces again and the inside router
    // adds it, but a resilient group hands a joining box only buckets idle
    // for idle_timer (120 s in the lab): no live subscriber moves to it.
    let t = Instant::now();
    pids[0] = start_box(&mut lab, 1);
    let back = lab.wait_for(Duration::from_secs(10), || ecmp_set(&lab).contains("via 10.1.1.2"));
    assert!(back, "box 1 is not back in the inside router's set:\n{}", diagnosis(&lab));
    println!("box 1 restarted: back in the inside router's set after {} ms", t.elapsed().as_millis());
    let rejoined = probe(&lab, 4);
    assert_eq!(check_moves(&lab, &after, &rejoined, &[]), 0);
    println!("none of the 300 subscribers moved to the joining box 1");

    // Box 3 hangs whole: nothing withdraws, its peers' hold timers do.
    let pids3 =
        std::process::Command::new("ip").args(["netns", "pids", &lab.ns("b3")]).output().expect("ip netns pids");
    let pids3 = String::from_utf8_lossy(&pids3.stdout).into_owned();
    assert!(pids3.split_whitespace().count() >= 4, "box 3 runs masq, zebra, bgpd and the hook: {pids3}");
    let t = Instant::now();
    signal_all("STOP", &pids3);
    let (last, took) = until_moved(&lab, &[3], t, HOLD + MARGIN);
    let counts = per_box(&last);
    println!(
        "box 3 frozen: its subscribers answered through the others after {} ms; now box 1 {}, box 2 {}",
        took.as_millis(),
        counts[1],
        counts[2]
    );
    assert!(
        took <= HOLD + MARGIN,
        "box 3's subscribers were not all moved within {:?}\n{}",
        HOLD + MARGIN,
        diagnosis(&lab)
    );
    let moved3 = check_moves(&lab, &rejoined, &last, &[3]);
    assert_eq!(moved3, rejoined.values().filter(|p| p.as_deref().and_then(box_of) == Some(3)).count());
    println!("{moved3} subscribers of box 3 moved, the other {} kept their public address", 300 - moved3);

    // Box 2's masq hangs alone (SIGSTOP): /readyz stops answering, the hook
    // gives up on it after 2 polls of 1 s each and withdraws. (Box 3 stays
    // frozen until the end: let go, it would come back.)
    let t = Instant::now();
    lab.kill_pid("STOP", pids[1]);
    let (hung, took) = until_moved(&lab, &[2, 3], t, HUNG_LIMIT);
    lab.kill_pid("CONT", pids[1]);
    signal_all("CONT", &pids3);
    println!("masq of box 2 hung: its subscribers answered through box 1 after {} ms", took.as_millis());
    assert!(took <= HUNG_LIMIT, "box 2's subscribers were not all moved within {:?}\n{}", HUNG_LIMIT, diagnosis(&lab));
    let moved2 = check_moves(&lab, &last, &hung, &[2]);
    assert_eq!(moved2, counts[2]);

    println!("the inside router's set over the test (mirror.log):\n{}", lab.read("state/mirror.log"));
    let hook = lab.read("state/b1/health.log");
    assert!(hook.matches("announced").count() == 2 && hook.contains("withdrawn"), "box 1's hook log:\n{hook}");
}
