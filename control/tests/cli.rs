//! The operator commands that need no network: `masq check-config` on the
//! examples and on broken files, `masq default-config`.

use std::process::Command;

fn masq(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_masq")).args(args).output().expect("running masq")
}

fn examples() -> Vec<String> {
    ["home", "cgnat", "policy", "forwards"]
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
