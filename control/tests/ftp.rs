//! End-to-end: the FTP ALG and MSS clamping with real programs. A real FTP
//! server (pyftpdlib, Debian's python3-pyftpdlib, installed by
//! deploy/setup.sh) outside, curl inside downloading in active mode (PORT
//! and EPRT) and passive mode (EPSV and PASV); the file's SHA-256 must
//! match. With the ALG off, active mode fails (the server refuses the
//! inside address the PORT names). The SYN's MSS is seen on the outside
//! wire (tcpdump) at the rule's `mss_clamp`.
//!
//! And the other way round (netfilter's nf_nat_ftp on DNAT): FTP servers
//! inside, one behind a port forward of the pool address (host 2,
//! 100.64.0.3) and one a 1:1 static host (host 1, 100.64.0.2 as
//! 203.0.113.20), both with `alg: [ftp]`; curl outside downloads from each
//! in passive mode (EPSV and PASV, whose 227 must name the public address)
//! and in active mode.
//! They need root (CI is root); without it they fail and say so.

mod lab;

use lab::{shaped, Lab};
use std::time::Duration;

fn config(rule_extra: &str) -> String {
    shaped(&format!(
        "interfaces: {{inside: nat-in, outside: nat-out}}
workers: {{cores: [1]}}
pools:
  - {{name: lab, addresses: [203.0.113.10], ports: 1024-65535, mode: port_blocks, block_size: 512}}
rules:
  - action: snat
    pool: lab
    match: {{src: [100.64.0.0/10]}}
{rule_extra}control: {{listen: 127.0.0.1:9091}}
"
    ))
}

fn sha(lab: &Lab, file: &str) -> String {
    let o = lab.ok("nat", &["sha256sum", file]);
    o.split_whitespace().next().unwrap_or_default().to_string()
}

/// A file to fetch, an FTP server for it outside on 198.51.100.1:21, masq
/// with `config`.
fn setup(name: &str, config: &str) -> Lab {
    let mut lab = Lab::up(name, 1500);
    let srv = blob(&lab);
    // Debug logging (`-D`): the server's log shows every command it received.
    ftpd(&mut lab, "out", "198.51.100.1", &srv, "ftpd.log");
    std::fs::write(lab.dir.join("masq.yaml"), config).expect("config file");
    let cfg = lab.dir.join("masq.yaml").to_string_lossy().into_owned();
    lab.start_masq_with(&["run", "--config", &cfg]);
    lab
}

/// Downloads the blob with curl's `flags`, inside; true if it came whole.
fn fetch(lab: &Lab, flags: &[&str], out: &str) -> bool {
    let mut args = vec!["curl", "-sS", "--max-time", "10", "-o", out];
    args.extend_from_slice(flags);
    args.push("ftp://198.51.100.1/blob");
    let o = lab.run("in", &args);
    o.status.success() && sha(lab, out) == sha(lab, "srv/blob")
}

#[test]
fn active_and_passive_ftp_download_through_the_alg_with_the_mss_clamped() {
    let mut lab = setup("ftpalg", &config("    alg: [ftp]\n    mss_clamp: 1300\n"));
    lab.spawn(
        "out",
        &["tcpdump", "-l", "-n", "-v", "-i", "out0", "-c", "1", "tcp dst port 21 and tcp[tcpflags] & tcp-syn != 0"],
        "syn.log",
    );
    assert!(
        lab.wait_for(Duration::from_secs(5), || lab.read("syn.log").contains("listening")),
        "tcpdump did not start"
    );
    for (what, flags) in [
        ("active, PORT", &["--ftp-port", "-", "--disable-eprt"][..]),
        ("active, EPRT", &["--ftp-port", "-"][..]),
        ("passive, EPSV", &["--ftp-pasv"][..]),
        ("passive, PASV", &["--ftp-pasv", "--disable-epsv"][..]),
    ] {
        assert!(
            fetch(&lab, flags, "got"),
            "{what}: the download failed or differs\nserver log:\n{}\nmasq log:\n{}",
            lab.read("ftpd.log"),
            lab.masq_log()
        );
    }
    let log = lab.read("ftpd.log");
    assert!(log.contains("PORT 203,0,113,10,"), "the server saw the public address in PORT:\n{log}");
    assert!(log.contains("EPRT |1|203.0.113.10|"), "and in EPRT:\n{log}");
    assert!(!log.contains("100,64,0,2") && !log.contains("100.64.0.2"), "the inside address leaked:\n{log}");
    // The client's SYN left with the clamped MSS (Linux offered 1460).
    assert!(
        lab.wait_for(Duration::from_secs(3), || lab.read("syn.log").contains("mss 1300")),
        "{}",
        lab.read("syn.log")
    );
    // The workers publish their counters every 100 ms: the last download's
    // replies may not be in /metrics yet (CI once read one 227 short).
    lab.wait_for(Duration::from_secs(2), || {
        lab.metric("masq_ftp_alg_passive_total") >= 2 && lab.metric("masq_mss_clamped_total") >= 8
    });
    assert_eq!(lab.metric("masq_ftp_alg_rewritten_total"), 2, "one PORT and one EPRT");
    assert!(lab.metric("masq_ftp_alg_passive_total") >= 2, "a 229 and a 227");
    assert_eq!(lab.metric("masq_ftp_alg_unparsed_total"), 0);
    assert!(
        lab.metric("masq_mss_clamped_total") >= 8,
        "a SYN of each control and passive data connection, and the SYN/ACKs"
    );
    lab.stop_masq();
}

#[test]
fn without_the_alg_active_mode_fails_and_passive_mode_still_works() {
    let mut lab = setup("ftpoff", &config(""));
    assert!(
        !fetch(&lab, &["--ftp-port", "-", "--disable-eprt"], "got"),
        "active mode worked without the ALG:\n{}",
        lab.read("ftpd.log")
    );
    let log = lab.read("ftpd.log");
    assert!(log.contains("PORT 100,64,0,2,"), "the PORT went out unrewritten:\n{log}");
    assert!(fetch(&lab, &["--ftp-pasv"], "got2"), "passive mode needs no ALG:\n{}", lab.read("ftpd.log"));
    assert_eq!(lab.metric("masq_ftp_alg_rewritten_total"), 0);
    lab.stop_masq();
}

/// The file to fetch, in the lab's `srv` directory; its path.
fn blob(lab: &Lab) -> String {
    let srv = lab.dir.join("srv");
    std::fs::create_dir_all(&srv).expect("server directory");
    std::fs::write(
        srv.join("blob"),
        (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0]).collect::<Vec<u8>>(),
    )
    .expect("the file to fetch");
    srv.to_string_lossy().into_owned()
}

/// An FTP server on `host` at `addr`:21 serving `srv`, up.
fn ftpd(lab: &mut Lab, host: &str, addr: &str, srv: &str, log: &str) {
    lab.spawn(host, &["/usr/bin/python3", "-m", "pyftpdlib", "-i", addr, "-p", "21", "-d", srv, "-D"], log);
    let url = format!("ftp://{addr}/");
    assert!(
        lab.wait_for(Duration::from_secs(5), || lab
            .run(host, &["curl", "-s", "-o", "/dev/null", &url])
            .status
            .success()),
        "the FTP server on {host} did not come up: {}",
        lab.read(log)
    );
}

#[test]
fn servers_inside_behind_a_forward_and_a_static_address_serve_passive_and_active_mode() {
    let mut lab = Lab::up("ftpsrv", 1500);
    // The upstream router sends the static address to the box, as the pool.
    lab.ok("out", &["ip", "route", "add", "203.0.113.20/32", "via", "203.0.113.1", "dev", "out0"]);
    let srv = blob(&lab);
    ftpd(&mut lab, "in2", "100.64.0.3", &srv, "fwd-ftpd.log");
    ftpd(&mut lab, "in", "100.64.0.2", &srv, "static-ftpd.log");
    let config = shaped(
        "interfaces: {inside: nat-in, outside: nat-out}
workers: {cores: [1]}
pools:
  - {name: lab, addresses: [203.0.113.10], ports: 1024-65535, mode: port_blocks, block_size: 512}
rules:
  - {action: snat, pool: lab, match: {src: [100.64.0.0/10]}}
forwards:
  - {protocol: tcp, public: '203.0.113.10:21', inside: '100.64.0.3:21', alg: [ftp]}
static_nat:
  - {public: 203.0.113.20, inside: 100.64.0.2, alg: [ftp]}
control: {listen: 127.0.0.1:9091}
",
    );
    std::fs::write(lab.dir.join("masq.yaml"), config).expect("config file");
    let cfg = lab.dir.join("masq.yaml").to_string_lossy().into_owned();
    lab.start_masq_with(&["run", "--config", &cfg]);
    // The servers' active-mode data connections, as the client sees them.
    lab.spawn(
        "out",
        &["tcpdump", "-l", "-n", "-i", "out0", "tcp[tcpflags] == tcp-syn and dst host 203.0.113.2"],
        "active.log",
    );
    assert!(
        lab.wait_for(Duration::from_secs(5), || lab.read("active.log").contains("listening")),
        "tcpdump did not start"
    );
    let want = sha(&lab, "srv/blob");
    for public in ["203.0.113.10", "203.0.113.20"] {
        for (what, flags) in [
            ("passive, EPSV", &["--ftp-pasv"][..]),
            // --ftp-skip-pasv-ip off: curl connects where the 227 says.
            ("passive, PASV", &["--ftp-pasv", "--disable-epsv", "--no-ftp-skip-pasv-ip"][..]),
            ("active, PORT", &["--ftp-port", "-", "--disable-eprt"][..]),
            ("active, EPRT", &["--ftp-port", "-"][..]),
        ] {
            let url = format!("ftp://{public}/blob");
            let mut args = vec!["curl", "-v", "-sS", "--max-time", "10", "-o", "got"];
            args.extend_from_slice(flags);
            args.push(&url);
            let o = lab.run("out", &args);
            let verbose = String::from_utf8_lossy(&o.stderr).into_owned();
            assert!(
                o.status.success() && sha(&lab, "got") == want,
                "{public}, {what}: the download failed or differs\ncurl:\n{verbose}\nmasq log:\n{}",
                lab.masq_log()
            );
            if what == "passive, PASV" {
                let named = format!("227 Entering passive mode ({},", public.replace('.', ","));
                assert!(verbose.contains(&named), "{public}: the 227 names the public address:\n{verbose}");
            }
            assert!(
                !verbose.contains("100,64,0,") && !verbose.contains("100.64.0."),
                "an inside address leaked:\n{verbose}"
            );
            let _ = std::fs::remove_file(lab.dir.join("got"));
        }
    }
    // Each server's active-mode data connection came from its public
    // address (the forward's server through the rule, whose pool is the
    // forward's one address), nothing from inside.
    let seen = || lab.read("active.log");
    assert!(
        lab.wait_for(Duration::from_secs(3), || ["203.0.113.10", "203.0.113.20"].iter().all(|a| seen()
            .lines()
            .filter(|l| l.contains(&format!("IP {a}.")))
            .count()
            >= 2)),
        "{}",
        seen()
    );
    assert!(!seen().contains("IP 100.64."), "{}", seen());
    // A 227 of each server rewritten (their 229s only when the port
    // changed: the public port is kept when free).
    // (The workers publish every 100 ms: wait for the last download's replies.)
    lab.wait_for(Duration::from_secs(2), || lab.metric("masq_ftp_alg_passive_total") >= 4);
    assert!(lab.metric("masq_ftp_alg_rewritten_total") >= 2);
    assert!(lab.metric("masq_ftp_alg_passive_total") >= 4, "a 229 and a 227 from each server");
    assert_eq!(lab.metric("masq_ftp_alg_unparsed_total"), 0);
    assert_eq!(lab.metric("masq_ftp_alg_failed_total"), 0);
    lab.stop_masq();
}
