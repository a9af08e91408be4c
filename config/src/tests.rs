use super::*;

fn errors(text: &str) -> Vec<ConfigError> {
    load(text, 4).expect_err("should be refused")
}

#[test]
fn the_default_and_every_example_are_valid() {
    default_config(2).expect("the embedded default");
    for f in ["home", "cgnat", "policy", "forwards", "deterministic"] {
        let text = std::fs::read_to_string(format!("{}/examples/{f}.yaml", env!("CARGO_MANIFEST_DIR"))).unwrap();
        if let Err(e) = load(&text, 8) {
            panic!("{f}.yaml: {e:?}");
        }
    }
}

#[test]
fn masquerade_without_a_pool_makes_one_on_the_outside_address() {
    let c = load("interfaces: {inside: a, outside: b}\nrules:\n  - action: masquerade\n", 2).unwrap();
    assert_eq!(c.pools.len(), 1);
    assert!(c.pools[0].masquerade && c.pools[0].addresses.is_empty());
    assert_eq!(c.pools[0].ports, (1024, 32767));
    assert_eq!(c.rules[0].action, ValidAction::Translate { pool: 0 });
}

#[test]
fn a_typo_is_an_error_with_its_line_not_a_default() {
    let e = errors("interfaces:\n  inside: a\n  outside: b\nrules:\n  - action: masquerade\n    pol: x\n");
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].line, e[0].path.as_str()), (6, "rules[0].pol"), "{:?}", e[0]);
    assert!(e[0].message.starts_with("unknown field `pol`, expected one of"), "{}", e[0].message);
}

#[test]
fn a_yaml_syntax_error_has_its_line() {
    let e = errors("interfaces:\n  inside: a\n  outside: b\nrules:\n  - action: masquerade\n   oops: [\n");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].line, 6, "{:?}", e[0]);
}

#[test]
fn every_semantic_error_is_reported_with_path_and_line() {
    let text = "\
interfaces:
  inside: eth1
  outside: eth1
workers:
  cores: [1, 9, 1]
pools:
  - name: a
    addresses: [203.0.113.0/28]
    block_size: 100
  - name: b
    addresses: [203.0.113.8, 10.0.0.1/8]
    ports: 70000-80000
rules:
  - action: snat
    pool: nope
  - action: snat
    match:
      src: [100.64.0.1/10]
      dst_ports: [0]
forwards:
  - protocol: tcp
    public: 192.0.2.1:80
    inside: 100.64.0.2:80
timeouts:
  udp_secs: 30
control:
  listen: nowhere
";
    let e = errors(text);
    let got: Vec<(usize, &str)> = e.iter().map(|x| (x.line, x.path.as_str())).collect();
    for want in [
        (3, "interfaces.outside"),
        (5, "workers.cores[1]"),
        (5, "workers.cores[2]"),
        (9, "pools[0].block_size"),
        (11, "pools[1].addresses[0]"),
        (11, "pools[1].addresses[1]"),
        (12, "pools[1].ports"),
        (15, "rules[0].pool"),
        (16, "rules[1].pool"),
        (18, "rules[1].match.src[0]"),
        (19, "rules[1].match.dst_ports[0]"),
        (22, "forwards[0].public"),
        (25, "timeouts.udp_secs"),
        (27, "control.listen"),
    ] {
        assert!(got.contains(&want), "missing {want:?} in {got:#?}");
    }
    let overlap = e.iter().find(|x| x.path == "pools[1].addresses[0]").unwrap();
    assert!(overlap.message.contains("203.0.113.8 is already in pool `a`"), "{}", overlap.message);
    let sorted: Vec<usize> = e.iter().map(|x| x.line).collect();
    assert!(sorted.windows(2).all(|w| w[0] <= w[1]), "in file order");
}

#[test]
fn prefixes_ranges_and_ports_parse_strictly() {
    assert_eq!(parse_net("100.64.0.0/10").unwrap().len, 10);
    assert!(parse_net("100.64.0.1/10").unwrap_err().contains("host bits"));
    assert!(parse_net("1.2.3.4/33").is_err());
    assert_eq!(parse_port_range("80").unwrap(), (80, 80));
    assert_eq!(parse_port_range("1024-65535").unwrap(), (1024, 65535));
    assert!(parse_port_range("0-10").is_err() && parse_port_range("9-8").is_err() && parse_port_range("x").is_err());
    assert_eq!(parse_pool_addresses("203.0.113.0/30").unwrap().len(), 4);
    assert_eq!(parse_pool_addresses("203.0.113.1-203.0.113.3").unwrap().len(), 3);
    assert!(parse_pool_addresses("10.0.0.0/8").is_err());
}

#[test]
fn errors_print_as_line_column_path_message() {
    let e = ConfigError { path: "pools[0].ports".into(), line: 7, col: 5, message: "bad".into() };
    assert_eq!(e.to_string(), "7:5: pools[0].ports: bad");
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary text: an error list or a config, never a panic.
        #[test]
        fn on_any_text(text in ".{0,400}") {
            let _ = load(&text, 4);
        }

        /// The examples cut or mutated at a random place still give a
        /// result, and every error has a line inside the file.
        #[test]
        fn on_mutated_examples(cut in 0usize..2000, insert in "[ \\n:\\-\\[\\]{}a-z0-9.#]{0,6}") {
            let text = std::fs::read_to_string(format!("{}/examples/cgnat.yaml", env!("CARGO_MANIFEST_DIR"))).unwrap();
            let mut at = cut.min(text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let mutated = format!("{}{}{}", &text[..at], insert, &text[at..]);
            if let Err(errors) = load(&mutated, 8) {
                let lines = mutated.lines().count().max(1) + 1;
                for e in errors {
                    prop_assert!(e.line >= 1 && e.line <= lines, "{e} (file has {lines} lines)");
                }
            }
        }
    }
}

#[test]
fn the_boundary_is_closed_by_default_and_its_prefixes_come_from_the_rules() {
    let c = default_config(2).unwrap();
    assert_eq!(c.boundary.unmatched_inside, Unmatched::Drop);
    assert_eq!(c.boundary.spoofed_outside, Spoofed::Drop);
    assert_eq!(c.boundary.inside_prefixes, vec![parse_net("100.64.0.0/10").unwrap()]);
    assert!(c.raw.management.icmp_echo && c.allow.is_empty());
    assert_eq!(c.raw.timeouts.udp_unreplied_secs, 120);
    // Named prefixes replace the rules'.
    let c = load(
        "interfaces: {inside: a, outside: b}\nrules:\n  - action: masquerade\nboundary:\n  inside_prefixes: [192.168.0.0/16]\n  unmatched_inside: route\n",
        2,
    )
    .unwrap();
    assert_eq!(c.boundary.inside_prefixes, vec![parse_net("192.168.0.0/16").unwrap()]);
    assert_eq!(c.boundary.unmatched_inside, Unmatched::Route);
}

#[test]
fn a_route_rule_and_management_entries_are_checked() {
    let c = load(
        "interfaces: {inside: a, outside: b}\nrules:\n  - action: route\n    match: {src: [10.0.0.0/8]}\nmanagement:\n  allow:\n    - {src: [198.51.100.0/24], protocol: tcp, ports: [22, 8000-8010]}\n",
        2,
    )
    .unwrap();
    assert_eq!(c.rules[0].action, ValidAction::Route);
    assert_eq!(c.allow[0].ports, vec![(22, 22), (8000, 8010)]);
    let e = errors(
        "interfaces: {inside: a, outside: b}\nrules:\n  - action: route\n    pool: x\nmanagement:\n  allow:\n    - {protocol: icmp, ports: []}\n    - {src: [1.2.3.4/8], protocol: udp, ports: [99999]}\ntimeouts: {udp_secs: 200, udp_unreplied_secs: 300}\n",
    );
    let paths: Vec<&str> = e.iter().map(|x| x.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "rules[0].pool",
            "management.allow[0].protocol",
            "management.allow[0].ports",
            "management.allow[1].src[0]",
            "management.allow[1].ports[0]",
            "timeouts.udp_unreplied_secs"
        ],
        "{e:?}"
    );
}

#[test]
fn a_control_api_off_loopback_needs_a_token_and_tls() {
    let base = "interfaces: {inside: a, outside: b}\nrules:\n  - action: masquerade\n";
    let e = errors(&format!("{base}control:\n  listen: 0.0.0.0:9091\n"));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e.iter().all(|x| x.path == "control.listen" && x.line == 5), "{e:?}");
    assert!(e[0].message.contains("control.token_file"), "{}", e[0].message);
    assert!(e[1].message.contains("control.tls"), "{}", e[1].message);
    let e = errors(&format!("{base}control:\n  listen: 192.0.2.1:9443\n  token: s3cret\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    load(&format!("{base}control:\n  listen: 192.0.2.1:9443\n  token_file: /etc/masq/token\n  tls: {{cert: /etc/masq/api.pem, key: /etc/masq/api.key}}\n"), 2)
        .expect("token and TLS: accepted");
    load(&format!("{base}control:\n  listen: 127.0.0.1:9091\n"), 2).expect("loopback stays open");
    load(&format!("{base}control:\n  listen: '[::1]:9091'\n"), 2).expect("so does ::1");
}

#[test]
fn at_most_max_pools_pools_the_masquerade_one_included() {
    let pools = |n: usize| -> String {
        (0..n).map(|i| format!("  - name: p{i}\n    addresses: [203.0.{i}.1]\n")).collect::<String>()
    };
    let text = |n: usize, masquerade: bool| {
        let rule = if masquerade { "  - action: masquerade\n" } else { "  - {action: snat, pool: p0}\n" };
        format!("interfaces: {{inside: a, outside: b}}\npools:\n{}rules:\n{rule}", pools(n))
    };
    load(&text(MAX_POOLS, false), 2).expect("MAX_POOLS pools");
    let e = errors(&text(MAX_POOLS, true));
    assert_eq!((e.len(), e[0].path.as_str()), (1, "pools"), "{e:?}");
    assert!(e[0].message.contains("at most 32"), "{}", e[0].message);
    assert_eq!(errors(&text(MAX_POOLS + 1, false))[0].path, "pools");
}

#[test]
fn idle_workers_sleep_by_default_and_the_polling_time_is_bounded() {
    let v = load(DEFAULT_YAML, usize::MAX).expect("the default is valid");
    assert!(v.raw.workers.sleep_when_idle);
    assert_eq!(v.raw.workers.busy_poll_us, 1000);
    let text = "interfaces:\n  inside: a\n  outside: b\nworkers:\n  busy_poll_us: 2000000\n";
    let got: Vec<(usize, String)> = errors(text).into_iter().map(|x| (x.line, x.path)).collect();
    assert!(got.contains(&(5, "workers.busy_poll_us".to_string())), "{got:?}");
}

#[test]
fn the_rings_and_umem_are_sized_by_the_config_within_bounds() {
    let v = load(DEFAULT_YAML, usize::MAX).expect("the default is valid");
    assert_eq!((v.raw.workers.ring_size, v.raw.workers.umem_frames), (2048, 8192));
    let ok = "interfaces:\n  inside: a\n  outside: b\nworkers:\n  ring_size: 4096\n  umem_frames: 16384\nrules:\n  - action: masquerade\n";
    let v = load(ok, usize::MAX).expect("4096 and 16384");
    assert_eq!((v.raw.workers.ring_size, v.raw.workers.umem_frames), (4096, 16384));
    let text = "interfaces:\n  inside: a\n  outside: b\nworkers:\n  ring_size: 3000\n  umem_frames: 4096\n";
    let got: Vec<(usize, String)> = errors(text).into_iter().map(|x| (x.line, x.path)).collect();
    assert!(got.contains(&(5, "workers.ring_size".to_string())), "{got:?}");
    assert!(got.contains(&(6, "workers.umem_frames".to_string())), "too few frames for the rings: {got:?}");
}

#[test]
fn other_protocols_have_their_own_timeout_with_a_floor() {
    let base = "interfaces: {inside: a, outside: b}\nrules:\n  - action: masquerade\n    match: {protocols: [other]}\n";
    assert_eq!(load(base, 2).unwrap().raw.timeouts.other_secs, 600, "netfilter's generic timeout");
    let e = errors(&format!("{base}timeouts: {{other_secs: 30}}\n"));
    assert_eq!(e.iter().map(|x| x.path.as_str()).collect::<Vec<_>>(), ["timeouts.other_secs"], "{e:?}");
}

const STATIC_BASE: &str = "interfaces: {inside: a, outside: b}
pools:
  - name: p
    addresses: [203.0.113.8/30]
    port_parity: true
rules:
  - {action: snat, pool: p}
";

#[test]
fn static_nat_and_port_range_forwards_are_read() {
    let c = load(
        &format!(
            "{STATIC_BASE}static_nat:
  - {{public: 198.51.100.7, inside: 100.64.0.2}}
forwards:
  - {{protocol: tcp, public: '203.0.113.8:8000-8099', inside: '100.64.0.3:9000-9099'}}
  - {{protocol: udp, public: '203.0.113.8:8000-8099', inside: '100.64.0.3:80'}}
  - {{protocol: tcp, public: '203.0.113.8:443', inside: '100.64.0.3:443'}}
"
        ),
        2,
    )
    .unwrap();
    assert_eq!(
        c.statics,
        vec![ValidStatic {
            public: "198.51.100.7".parse().unwrap(),
            inside: "100.64.0.2".parse().unwrap(),
            ftp_alg: false
        }]
    );
    assert!(c.pools[0].port_parity);
    let f = &c.forwards;
    assert_eq!((f[0].public_ports, f[0].inside_ports), ((8000, 8099), (9000, 9099)));
    assert_eq!((f[1].public_ports, f[1].inside_ports), ((8000, 8099), (80, 80)), "udp: its own port space");
    assert_eq!((f[2].public_ports, f[2].inside_ports), ((443, 443), (443, 443)));
    assert_eq!(f[2].inside_addr, "100.64.0.3".parse::<std::net::Ipv4Addr>().unwrap());
    assert!(!default_config(2).unwrap().pools[0].port_parity, "parity is off by default");
}

#[test]
fn a_static_address_in_a_pool_or_shared_is_an_error_with_its_line() {
    let e = errors(&format!(
        "{STATIC_BASE}static_nat:
  - {{public: 203.0.113.9, inside: 100.64.0.2}}
  - {{public: 198.51.100.7, inside: 100.64.0.3}}
  - {{public: 198.51.100.7, inside: 100.64.0.4}}
  - {{public: 198.51.100.8, inside: 100.64.0.3}}
  - {{public: 198.51.100, inside: 100.64.0.5/32}}
"
    ));
    let got: Vec<(usize, &str)> = e.iter().map(|x| (x.line, x.path.as_str())).collect();
    assert_eq!(
        got,
        [
            (9, "static_nat[0].public"),
            (11, "static_nat[2].public"),
            (12, "static_nat[3].inside"),
            (13, "static_nat[4].public"),
            (13, "static_nat[4].inside"),
        ],
        "{e:#?}"
    );
    assert!(e[0].message.contains("203.0.113.9 is in a pool (pools[0].addresses[0])"), "{}", e[0].message);
    assert!(e[1].message.contains("static_nat[1]'s public address"), "{}", e[1].message);
    assert!(e[2].message.contains("100.64.0.3 has a static address already (static_nat[1])"), "{}", e[2].message);
    // A forward's inside host cannot be a static host as well.
    let e = errors(&format!(
        "{STATIC_BASE}forwards:
  - {{protocol: tcp, public: '203.0.113.8:8080', inside: '100.64.0.2:80'}}
static_nat:
  - {{public: 198.51.100.7, inside: 100.64.0.2}}
"
    ));
    assert_eq!((e.len(), e[0].line, e[0].path.as_str()), (1, 11, "static_nat[0].inside"), "{e:#?}");
    assert!(e[0].message.contains("forwards[0]'s inside host"), "{}", e[0].message);
}

#[test]
fn port_range_forwards_are_checked_for_length_and_overlap() {
    let e = errors(&format!(
        "{STATIC_BASE}forwards:
  - {{protocol: tcp, public: '203.0.113.8:8000-8099', inside: '100.64.0.3:8000-8049'}}
  - {{protocol: tcp, public: '203.0.113.8:8050-8100', inside: '100.64.0.3:80'}}
  - {{protocol: tcp, public: '203.0.113.8:8101-8100', inside: '100.64.0.3:80'}}
  - {{protocol: udp, public: '203.0.113.9:9000', inside: '100.64.0.3:9-8'}}
  - {{protocol: icmp, public: '203.0.113.9:7000', inside: '100.64.0.3:7'}}
"
    ));
    let got: Vec<(usize, &str)> = e.iter().map(|x| (x.line, x.path.as_str())).collect();
    assert_eq!(
        got,
        [
            (9, "forwards[0].inside"),
            (10, "forwards[1].public"),
            (11, "forwards[2].public"),
            (12, "forwards[3].inside"),
            (13, "forwards[4].protocol"),
        ],
        "{e:#?}"
    );
    assert!(e[0].message.contains("50 ports inside for 100 public"), "{}", e[0].message);
    assert!(e[1].message.contains("overlaps forwards[0].public"), "{}", e[1].message);
    // The same ports on another protocol or address do not overlap.
    load(
        &format!(
            "{STATIC_BASE}forwards:
  - {{protocol: tcp, public: '203.0.113.8:8000-8099', inside: '100.64.0.3:80'}}
  - {{protocol: udp, public: '203.0.113.8:8000-8099', inside: '100.64.0.3:80'}}
  - {{protocol: tcp, public: '203.0.113.9:8000-8099', inside: '100.64.0.3:80'}}
"
        ),
        2,
    )
    .expect("disjoint");
}

#[test]
fn the_fragment_hold_is_bounded_and_may_be_off() {
    let base = "interfaces: {inside: a, outside: b}\nrules:\n  - action: masquerade\n";
    let c = load(base, 2).unwrap();
    assert_eq!((c.raw.tables.fragment_hold, c.raw.tables.fragment_hold_bytes), (256, 256 * 1536));
    let off = load(&format!("{base}tables: {{fragment_hold: 0, fragment_hold_bytes: 0}}\n"), 2).unwrap();
    assert_eq!(off.raw.tables.fragment_hold, 0);
    let e = errors(&format!("{base}tables:\n  fragment_hold: 70000\n  fragment_hold_bytes: 1000\n"));
    let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["tables.fragment_hold", "tables.fragment_hold_bytes"], "{e:?}");
    assert_eq!(e[0].line, 5, "{:?}", e[0]);
}

#[test]
fn mss_clamp_and_alg_are_rule_keys_off_by_default() {
    let base = "interfaces: {inside: a, outside: b}\nrules:\n  - action: masquerade\n";
    let c = load(base, 2).unwrap();
    assert_eq!((c.rules[0].mss_clamp, c.rules[0].ftp_alg), (ValidMssClamp::Off, false));
    let c = load(&format!("{base}    mss_clamp: 1452\n    alg: [ftp]\n"), 2).unwrap();
    assert_eq!((c.rules[0].mss_clamp, c.rules[0].ftp_alg), (ValidMssClamp::Fixed(1452), true));
    let c = load(&format!("{base}    mss_clamp: auto\n"), 2).unwrap();
    assert_eq!(c.rules[0].mss_clamp, ValidMssClamp::Auto);
    for bad in ["mss_clamp: 40", "mss_clamp: 70000", "mss_clamp: big"] {
        let e = errors(&format!("{base}    {bad}\n"));
        assert_eq!((e[0].line, e[0].path.as_str()), (4, "rules[0].mss_clamp"), "{bad}: {:?}", e[0]);
    }
    let e = errors("interfaces: {inside: a, outside: b}\nrules:\n  - action: no_nat\n    alg: [ftp]\n");
    assert_eq!(e[0].path, "rules[0].alg", "{:?}", e[0]);
}

const DET: &str = "interfaces: {inside: a, outside: b}\npools:\n  - name: det\n    mode: deterministic\n";

#[test]
fn a_deterministic_pool_resolves_its_ports_per_subscriber() {
    let c = load(&format!("{DET}    inside: 100.64.0.0/24\n    addresses: [198.51.100.0/30]\nrules:\n  - action: snat\n    pool: det\n    match: {{src: [100.64.0.0/24]}}\n"), 2)
        .unwrap();
    let p = &c.pools[0];
    assert_eq!(p.inside, Some(parse_net("100.64.0.0/24").unwrap()));
    // 256 over 4 addresses: 64 an address, 64512 / 64 = 1008, down to 960.
    assert_eq!(p.ports_per_subscriber, 960);
    let c = load(
        &format!("{DET}    inside: 100.64.0.0/24\n    addresses: [198.51.100.0/30]\n    ports_per_subscriber: 512\nrules:\n  - action: snat\n    pool: det\n    match: {{src: [100.64.0.0/24]}}\n"),
        2,
    )
    .unwrap();
    assert_eq!(c.pools[0].ports_per_subscriber, 512);
}

#[test]
fn a_deterministic_pool_that_does_not_fit_says_how_many_ports_result() {
    // 65536 subscribers on 2 addresses: 32768 an address, 64512 ports give 1 each.
    let e = errors(&format!("{DET}    inside: 100.64.0.0/16\n    addresses: [198.51.100.1, 198.51.100.2]\nrules:\n  - action: snat\n    pool: det\n    match: {{src: [100.64.0.0/16]}}\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].path.as_str(), e[0].line), ("pools[0].inside", 5), "{:?}", e[0]);
    assert!(
        e[0].message.contains("32768 subscribers an address") && e[0].message.contains("give 0 ports per subscriber"),
        "{}",
        e[0].message
    );
    // Asking for more than fit.
    let e = errors(&format!("{DET}    inside: 100.64.0.0/24\n    addresses: [198.51.100.0/30]\n    ports_per_subscriber: 1024\nrules:\n  - action: snat\n    pool: det\n    match: {{src: [100.64.0.0/24]}}\n"));
    assert_eq!((e[0].path.as_str(), e[0].line), ("pools[0].ports_per_subscriber", 7), "{:?}", e[0]);
    assert!(e[0].message.contains("give 960 ports per subscriber"), "{}", e[0].message);
    // Ports below 1024.
    let e = errors(&format!("{DET}    inside: 100.64.0.0/24\n    addresses: [198.51.100.0/30]\n    ports: 1-65535\nrules:\n  - action: snat\n    pool: det\n    match: {{src: [100.64.0.0/24]}}\n"));
    assert_eq!((e[0].path.as_str(), e[0].line), ("pools[0].ports", 7), "{e:?}");
    // No prefix; a prefix on another mode; a forward on its address.
    let e = errors(&format!("{DET}    addresses: [198.51.100.1]\nrules:\n  - action: snat\n    pool: det\n"));
    assert_eq!(e[0].path, "pools[0].mode", "{e:?}");
    let e = errors("interfaces: {inside: a, outside: b}\npools:\n  - name: p\n    inside: 100.64.0.0/24\n    addresses: [198.51.100.1]\nrules:\n  - action: snat\n    pool: p\n");
    assert_eq!(e[0].path, "pools[0].inside", "{e:?}");
    let e = errors(&format!("{DET}    inside: 100.64.0.0/24\n    addresses: [198.51.100.1]\nrules:\n  - action: snat\n    pool: det\n    match: {{src: [100.64.0.0/24]}}\nforwards:\n  - {{protocol: tcp, public: '198.51.100.1:80', inside: '100.64.0.5:80'}}\n"));
    assert!(e.iter().any(|x| x.path == "forwards[0].public" && x.message.contains("deterministic")), "{e:?}");
}

#[test]
fn a_rule_into_a_deterministic_pool_takes_only_sources_of_its_prefix() {
    let pool = format!("{DET}    inside: 100.64.0.0/24\n    addresses: [198.51.100.0/30]\nrules:\n");
    let e = errors(&format!(
        "{pool}  - action: snat\n    pool: det\n    match:\n      src: [100.64.0.0/25, 100.64.0.0/16]\n"
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].path.as_str(), e[0].line), ("rules[0].match.src[1]", 11), "{:?}", e[0]);
    assert!(e[0].message.contains("not within 100.64.0.0/24"), "{}", e[0].message);
    let e = errors(&format!("{pool}  - action: snat\n    pool: det\n"));
    assert_eq!(e[0].path, "rules[0].match.src", "{e:?}");
    load(&format!("{pool}  - action: snat\n    pool: det\n    match: {{src: [100.64.0.128/25]}}\n"), 2).unwrap();
}

#[test]
fn overlapping_deterministic_prefixes_and_a_static_host_in_one_are_refused_with_their_line() {
    let two = |a: &str, b: &str| {
        format!(
            "{DET}    inside: {a}\n    addresses: [198.51.100.0/30]\n  - name: det2\n    mode: deterministic\n    inside: {b}\n    addresses: [198.51.100.4/30]\nrules:\n  - action: snat\n    pool: det\n    match: {{src: [{a}]}}\n  - action: snat\n    pool: det2\n    match: {{src: [{b}]}}\n"
        )
    };
    // The second holds the first, the first the second, the same prefix.
    for (a, b) in
        [("100.64.0.0/24", "100.64.0.0/23"), ("100.64.0.0/23", "100.64.1.0/24"), ("100.64.0.0/24", "100.64.0.0/24")]
    {
        let e = errors(&two(a, b));
        assert_eq!(e.len(), 1, "{a} {b}: {e:?}");
        assert_eq!((e[0].path.as_str(), e[0].line), ("pools[1].inside", 9), "{:?}", e[0]);
        assert!(
            e[0].message.contains(&format!("{b} overlaps {a}, the prefix deterministic pool `det` maps")),
            "{}",
            e[0].message
        );
    }
    // Adjacent prefixes are two pools' own.
    load(&two("100.64.0.0/24", "100.64.1.0/24"), 2).unwrap();
    // A 1:1 static host inside a deterministic prefix; outside it, fine.
    let st = |inside: &str| {
        format!(
            "{DET}    inside: 100.64.0.0/24\n    addresses: [198.51.100.0/30]\nrules:\n  - action: snat\n    pool: det\n    match: {{src: [100.64.0.0/24]}}\nstatic_nat:\n  - public: 198.51.100.9\n    inside: {inside}\n"
        )
    };
    let e = errors(&st("100.64.0.7"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].path.as_str(), e[0].line), ("static_nat[0].inside", 13), "{:?}", e[0]);
    assert!(
        e[0].message.contains("within 100.64.0.0/24, the prefix deterministic pool `det` maps"),
        "{}",
        e[0].message
    );
    load(&st("100.64.1.7"), 2).unwrap();
}

#[test]
fn nat_log_sinks_parse_and_are_checked_with_their_line() {
    let base = "interfaces: {inside: a, outside: b}\nrules:\n  - action: masquerade\n";
    let c = load(&format!("{base}logging:\n  sinks:\n    - {{kind: json, path: /tmp/n.jsonl, keep: 2}}\n    - kind: syslog\n      transport: tcp\n      address: 192.0.2.1:514\n"), 2).unwrap();
    assert_eq!(
        c.raw.logging.sinks,
        vec![
            LogSink::Json { path: "/tmp/n.jsonl".into(), max_bytes: 100 << 20, keep: 2 },
            LogSink::Syslog { transport: SyslogTransport::Tcp, address: "192.0.2.1:514".into(), buffer: 10_000 },
        ]
    );
    assert!(load(base, 2).unwrap().raw.logging.sinks.is_empty(), "no sink by default");
    let e = errors(&format!("{base}logging:\n  sinks:\n    - kind: syslog\n      address: collector\n"));
    assert_eq!((e[0].line, e[0].path.as_str()), (7, "logging.sinks[0].address"), "{:?}", e[0]);
    let e = errors(&format!("{base}logging:\n  sinks:\n    - kind: json\n      path: x\n      rotate: 3\n"));
    assert!(e[0].message.contains("unknown field `rotate`"), "{:?}", e[0]);
    let pool = "interfaces: {inside: a, outside: b}\npools:\n  - name: p\n    addresses: [192.0.2.1]\n    logging: X\nrules:\n  - {action: snat, pool: p}\n";
    assert_eq!(load(&pool.replace('X', "none"), 2).unwrap().raw.pools[0].logging, PoolLogging::None);
    let v = load(&pool.replace('X', "sessions\n    log_destination: true"), 2).unwrap();
    assert!(v.pools[0].log_sessions && v.pools[0].log_destination);
    let v = load(&pool.replace('X', "sessions"), 2).unwrap();
    assert!(v.pools[0].log_sessions && !v.pools[0].log_destination, "no destination by default (REQ-12)");
    let e = errors(&pool.replace('X', "blocks\n    log_destination: true"));
    assert_eq!((e[0].line, e[0].path.as_str()), (6, "pools[0].log_destination"), "{:?}", e[0]);
}

#[test]
fn ha_needs_a_key_and_addresses_and_says_where() {
    let head = "interfaces: {inside: a, outside: b}\nrules:\n  - action: masquerade\nha:\n";
    let e = errors(&format!("{head}  listen: 198.18.255.1:7946\n  peer: 198.18.255.2:7946\n"));
    assert_eq!((e.len(), e[0].path.as_str(), e[0].line), (1, "ha", 5), "{e:?}"); // where the section begins
    assert!(e[0].message.contains("unauthenticated sync is refused"), "{}", e[0].message);
    let e = errors(&format!("{head}  listen: nowhere\n  peer: 198.18.255.2:7946\n  key: short\n"));
    let got: Vec<(&str, usize)> = e.iter().map(|x| (x.path.as_str(), x.line)).collect();
    assert_eq!(got, vec![("ha.listen", 5), ("ha.key", 7)], "{e:?}");
    let e = errors(&format!("{head}  listen: 198.18.255.1:7946\n  peer: 198.18.255.2:7946\n  key_fil: /k\n"));
    assert!(e[0].message.starts_with("unknown field `key_fil`"), "{e:?}");
    let ok = load(
        &format!("{head}  role: active\n  listen: 198.18.255.1:7946\n  peer: 198.18.255.2:7946\n  key_file: /etc/masq/ha.key\n  sync_sessions: true\n"),
        2,
    )
    .unwrap();
    let ha = ok.raw.ha.unwrap();
    assert_eq!((ha.role, ha.sync_sessions, ha.hold_secs, ha.backlog), (HaRole::Active, true, 300, 65536));
    let lone = load(head.trim_end_matches("ha:\n"), 2).unwrap();
    assert!(lone.raw.ha.is_none(), "no ha section: a lone box");
}

/// A deterministic pool with `overflow` (RFC 7422 section 2), after `DET`'s
/// first lines: its addresses, prefix and rule, and the overflow's keys.
fn det_overflow(overflow: &str, more_pools: &str) -> String {
    format!("{DET}    inside: 100.64.0.0/24\n    addresses: [198.51.100.0/30]\n    ports_per_subscriber: 128\n    overflow: {overflow}\n{more_pools}rules:\n  - action: snat\n    pool: det\n    match: {{src: [100.64.0.0/24]}}\n")
}

#[test]
fn an_overflow_takes_addresses_of_its_own_and_block_defaults() {
    let c = load(&det_overflow("{addresses: [198.51.100.8/30]}", ""), 2).unwrap();
    let o = c.pools[0].overflow.as_ref().expect("an overflow");
    assert_eq!((o.addresses.len(), o.block_size, o.max_blocks_per_subscriber), (4, 64, 4));
    assert_eq!(ValidOverflow::pool_name("det"), "det.overflow");
    let c = load(&det_overflow("{addresses: [198.51.100.9], block_size: 256, max_blocks_per_subscriber: 2}", ""), 2)
        .unwrap();
    let o = c.pools[0].overflow.as_ref().unwrap();
    assert_eq!((o.block_size, o.max_blocks_per_subscriber), (256, 2));
    // logging: none silences the overflow's blocks too.
    let text = det_overflow("{addresses: [198.51.100.9]}", "")
        .replace("mode: deterministic\n", "mode: deterministic\n    logging: none\n");
    assert_eq!(load(&text, 2).unwrap().raw.unlogged_pools(), vec!["det".to_string(), "det.overflow".to_string()]);
}

#[test]
fn a_bad_overflow_is_refused_with_its_key_path_and_line() {
    // Lines: 1 interfaces, 2 pools, 3 name, 4 mode, 5 inside, 6 addresses, 7 ports_per_subscriber, 8 overflow.
    for (overflow, path, says) in [
        ("{addresses: [198.51.100.1]}", "pools[0].overflow.addresses[0]", "already in pool `det`"),
        ("{addresses: []}", "pools[0].overflow.addresses", "needs addresses"),
        ("{addresses: [198.51.100.9], block_size: 100}", "pools[0].overflow.block_size", "not a multiple of 64"),
        (
            "{addresses: [198.51.100.9], max_blocks_per_subscriber: 0}",
            "pools[0].overflow.max_blocks_per_subscriber",
            "1 to 32",
        ),
        ("{addresses: [198.51.100.9], blocks: 2}", "pools[0].overflow", "unknown field"),
    ] {
        let e = errors(&det_overflow(overflow, ""));
        let x = e.iter().find(|x| x.path.starts_with(path)).unwrap_or_else(|| panic!("{overflow}: {e:?}"));
        assert!(x.message.contains(says), "{overflow}: {x:?}");
        assert_eq!(x.line, 8, "{overflow}: {x:?}");
    }
    // Another pool on an overflow address; a pool that takes the overflow's name; a port-block pool with one.
    let e = errors(&det_overflow("{addresses: [198.51.100.9]}", "  - name: dyn\n    addresses: [198.51.100.9]\n"));
    assert!(
        e.iter().any(|x| x.path == "pools[1].addresses[0]" && x.message.contains("already in pool `det`")),
        "{e:?}"
    );
    let e = errors(&det_overflow(
        "{addresses: [198.51.100.9]}",
        "  - name: det.overflow\n    addresses: [198.51.100.20]\n",
    ));
    assert!(e.iter().any(|x| x.path == "pools[0].overflow" && x.message.contains("`det.overflow`")), "{e:?}");
    let e = errors("interfaces: {inside: a, outside: b}\npools:\n  - name: dyn\n    addresses: [198.51.100.1]\n    overflow: {addresses: [198.51.100.9]}\nrules:\n  - action: snat\n    pool: dyn\n");
    assert!(
        e.iter().any(|x| x.path == "pools[0].overflow" && x.line == 5 && x.message.contains("deterministic")),
        "{e:?}"
    );
}

#[test]
fn the_readmes_example_configuration_is_valid() {
    // The first YAML block of the README, the one that shows every key.
    let readme = include_str!("../../README.md");
    let yaml = readme.split("```yaml\n").nth(1).and_then(|r| r.split("\n```").next()).expect("a yaml block");
    assert!(yaml.contains("ha:") && yaml.contains("sinks:"), "the full example");
    if let Err(e) = load(yaml, 8) {
        panic!("README's example configuration: {e:?}");
    }
}

#[test]
fn the_ftp_alg_of_a_forward_or_a_static_host_is_off_by_default_and_tcp_only() {
    let c = load(
        &format!(
            "{STATIC_BASE}static_nat:
  - {{public: 198.51.100.7, inside: 100.64.0.2, alg: [ftp]}}
  - {{public: 198.51.100.8, inside: 100.64.0.4}}
forwards:
  - {{protocol: tcp, public: '203.0.113.8:21', inside: '100.64.0.3:21', alg: [ftp]}}
  - {{protocol: tcp, public: '203.0.113.8:22', inside: '100.64.0.3:22'}}
"
        ),
        2,
    )
    .unwrap();
    assert_eq!(c.statics.iter().map(|s| s.ftp_alg).collect::<Vec<_>>(), [true, false]);
    assert_eq!(c.forwards.iter().map(|f| f.ftp_alg).collect::<Vec<_>>(), [true, false]);
    let e = errors(&format!(
        "{STATIC_BASE}forwards:
  - {{protocol: udp, public: '203.0.113.8:21', inside: '100.64.0.3:21', alg: [ftp]}}
"
    ));
    assert_eq!((e.len(), e[0].line, e[0].path.as_str()), (1, 9, "forwards[0].alg"), "{e:#?}");
    let e = errors(&format!(
        "{STATIC_BASE}static_nat:
  - {{public: 198.51.100.7, inside: 100.64.0.2, alg: [tftp]}}
"
    ));
    assert_eq!((e[0].line, e[0].path.as_str()), (9, "static_nat[0].alg[0]"), "{e:#?}");
}

#[test]
fn group_and_martian_addresses_are_refused_as_pool_forward_and_static_addresses() {
    let e = errors(
        "interfaces: {inside: a, outside: b}
pools:
  - name: p
    addresses: [203.0.113.8/30, 224.0.0.1]
  - name: q
    addresses: [127.0.0.0/30]
rules:
  - {action: snat, pool: p}
static_nat:
  - {public: 255.255.255.255, inside: 0.0.0.7}
forwards:
  - {protocol: tcp, public: '203.0.113.8:80', inside: '127.0.0.1:80'}
",
    );
    let got: Vec<(usize, &str)> = e.iter().map(|x| (x.line, x.path.as_str())).collect();
    for want in [
        (4, "pools[0].addresses[1]"),
        (6, "pools[1].addresses[0]"),
        (10, "static_nat[0].public"),
        (10, "static_nat[0].inside"),
        (12, "forwards[0].inside"),
    ] {
        assert!(got.contains(&want), "missing {want:?} in {got:#?}");
    }
    assert!(e.iter().all(|x| x.message.contains("is not a unicast host address")), "{e:#?}");
}
