//! The operator commands that need no network: `masq check-config` on the
//! examples and on broken files, `masq default-config`, `masq whois` on a
//! deterministic pool.

use std::process::Command;

fn masq(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_masq")).args(args).output().expect("running masq")
}

fn examples() -> Vec<String> {
    ["home", "cgnat", "policy", "forwards", "deterministic"]
        .iter()
        .map(|f| format!("{}/../config/examples/{f}.yaml", env!("CARGO_MANIFEST_DIR")))
        .collect()
}

#[test]
fn check_config_prints_ok_for_every_example() {
    for f in examples() {
        let o = masq(&["check-config", &f]);
        assert!(o.status.success(), "{f}: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), format!("{f}: OK"));
    }
}

#[test]
fn check_config_prints_every_error_with_its_line_and_fails() {
    let dir = std::env::temp_dir().join(format!("masq-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "interfaces:\n  inside: eth1\n  outside: eth1\npools:\n  - name: p\n    addresses: [203.0.113.1/8]\n    block_size: 100\nrules:\n  - action: snat\n    pool: q\n",
    )
    .unwrap();
    let typo = dir.join("typo.yaml");
    std::fs::write(
        &typo,
        "interfaces:\n  inside: eth1\n  outside: eth0\nrules:\n  - action: masquerade\nworkerz:\n  cores: [0]\n",
    )
    .unwrap();
    let o = masq(&["check-config", bad.to_str().unwrap(), typo.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    let b = bad.display();
    for want in [
        format!("{b}:3:3: interfaces.outside: inside and outside must be different interfaces"),
        format!("{b}:6:17: pools[0].addresses[0]: `203.0.113.1/8` has host bits set"),
        format!("{b}:7:5: pools[0].block_size: 100 is not a multiple of 64"),
        format!("{b}:10:5: rules[0].pool: no pool named `q`"),
        format!("{}:6:1: workerz: unknown field `workerz`", typo.display()),
    ] {
        assert!(err.contains(&want), "missing `{want}` in:\n{err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_default_config_prints_and_checks_ok() {
    let o = masq(&["default-config"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("nat-in") && text.contains("203.0.113.10"));
    let f = std::env::temp_dir().join(format!("masq-default-{}.yaml", std::process::id()));
    std::fs::write(&f, text.as_bytes()).unwrap();
    let o = masq(&["check-config", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_file(&f).ok();
}

#[test]
fn run_refuses_an_api_off_loopback_without_a_token_and_tls() {
    let o = masq(&["run", "--inside", "a", "--outside", "b", "--pool", "203.0.113.10", "--api", "0.0.0.0:9091"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("control.listen") && err.contains("not loopback"), "{err}");
    assert!(err.contains("control.token_file") && err.contains("control.tls"), "says what to add: {err}");
}

/// `masq whois` on a deterministic /24 over 4 addresses with 256 ports a
/// subscriber: for every subscriber, a port of its range names it, with its
/// range, as the formula (written out here, not taken from masq) gives;
/// `--subscriber` answers the other way; a dynamic pool says the log knows.
#[test]
fn whois_answers_every_subscriber_of_a_deterministic_24_from_the_formula() {
    let dir = std::env::temp_dir().join(format!("masq-whois-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("det.yaml");
    std::fs::write(
        &file,
        "interfaces: {inside: a, outside: b}\npools:\n  - name: det\n    mode: deterministic\n    inside: 100.64.7.0/24\n    addresses: [198.51.100.8/30]\n    ports: 2000-65535\n    ports_per_subscriber: 256\n  - name: dyn\n    addresses: [203.0.113.1]\nrules:\n  - action: snat\n    pool: det\n    match: {src: [100.64.7.0/24]}\n  - action: snat\n    pool: dyn\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    for i in 0u32..256 {
        // RFC 7422 round robin: address i % 4, block i / 4 of 256 ports from 2000.
        let inside = format!("100.64.7.{i}");
        let public = format!("198.51.100.{}", 8 + i % 4);
        let first = 2000 + (i / 4) * 256;
        let last = first + 255;
        let port = first + (i * 37) % 256;
        let want = format!("{inside} holds {public} ports {first}-{last} (pool det, deterministic)");
        let o = masq(&["whois", "--config", f, &format!("{public}:{port}")]);
        assert!(o.status.success(), "{public}:{port}: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), want, "{public}:{port}");
        if i % 32 == 0 {
            let o = masq(&["whois", "--config", f, "--subscriber", &inside, "--json"]);
            assert!(o.status.success());
            let json = String::from_utf8_lossy(&o.stdout);
            for part in
                [format!("\"public\":\"{public}\""), format!("\"first_port\":{first}"), format!("\"last_port\":{last}")]
            {
                assert!(json.contains(&part), "{part} in {json}");
            }
        }
    }
    // Below the ranges, past them, a dynamic pool's address: no subscriber, exit status 1.
    for (target, says) in [
        ("198.51.100.8:1999", "no subscriber"),
        ("198.51.100.8:18384", "no subscriber"),
        ("203.0.113.1:5000", "NAT event log"),
        ("192.0.2.1:5000", "in no pool"),
    ] {
        let o = masq(&["whois", "--config", f, target]);
        assert_eq!(o.status.code(), Some(1), "{target}");
        assert!(String::from_utf8_lossy(&o.stdout).contains(says), "{target}: {}", String::from_utf8_lossy(&o.stdout));
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `masq whois` with neither --config nor --log asks a running masq; with
/// none there it says so and exits 2 (an error, not "nobody"); `--at`
/// without a log is refused (the live tables know now only).
#[test]
fn whois_without_a_running_masq_is_an_error_not_nobody() {
    let o = masq(&["whois", "203.0.113.10:5000", "--api", "127.0.0.1:1"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot reach masq's control API"), "{o:?}");
    let o = masq(&["whois", "203.0.113.10:5000", "--api", "127.0.0.1:1", "--at", "1000"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--at asks the log"), "{o:?}");
}
