//! The control plane's own boundary (issue 19), end to end: masq's API on
//! a lab address with TLS and tokens, called from an outside host with
//! curl and the `masq` commands. Needs root, like every lab test.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod lab;

use lab::Lab;
use std::time::{Duration, Instant};

const TOKEN: &str = "admin-s3cret";
const METRICS_TOKEN: &str = "prom-only";
const API: &str = "203.0.113.1:9443";

fn config(dir: &std::path::Path) -> String {
    let d = dir.display();
    format!(
        "\
interfaces:
  inside: nat-in
  outside: nat-out
workers:
  cores: [1]
pools:
  - name: lab
    addresses: [203.0.113.10]
rules:
  - action: snat
    pool: lab
    match:
      src: [100.64.0.0/10]
control:
  listen: {API}
  token_file: {d}/token
  metrics_token: {METRICS_TOKEN}
  tls: {{cert: {d}/api.pem, key: {d}/api.key}}
management:
  allow:
    - {{src: [203.0.113.0/24], protocol: tcp, ports: [9443]}}
"
    )
}

/// A CA and a certificate for 203.0.113.1 signed by it (openssl).
fn certificates(lab: &Lab) {
    let run = |args: &[&str]| {
        let o = std::process::Command::new("openssl").args(args).current_dir(&lab.dir).output().expect("openssl");
        assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[&["req", "-x509"][..], &ec, &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=lab CA"]]
        .concat());
    run(&[&["req"][..], &ec, &["-keyout", "api.key", "-out", "api.csr", "-subj", "/CN=masq"]].concat());
    std::fs::write(lab.dir.join("san.ext"), "subjectAltName=IP:203.0.113.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "api.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "api.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

/// curl from the outside host: (HTTP status, body).
fn curl(lab: &Lab, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
    let url = format!("https://{API}{path}");
    let mut args = vec!["curl", "-sS", "--max-time", "15", "--cacert", "ca.pem", "-X", method, "-w", "\n%{http_code}"];
    let auth;
    if let Some(t) = token {
        auth = format!("Authorization: Bearer {t}");
        args.extend(["-H", &auth]);
    }
    if let Some(b) = body {
        args.extend(["--data-binary", b]);
    }
    args.push(&url);
    let out = lab.ok("out", &args);
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn masq_cmd(lab: &Lab, args: &[&str]) -> std::process::Output {
    let mut v = vec![env!("CARGO_BIN_EXE_masq")];
    v.extend(args);
    lab.run("out", &v)
}

#[test]
fn the_api_off_loopback_speaks_tls_and_wants_its_tokens() {
    let mut lab = Lab::up("ctls", 1500);
    certificates(&lab);
    std::fs::write(lab.dir.join("token"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(lab.dir.join("masq.yaml"), lab::shaped(&config(&lab.dir))).unwrap();
    let cfg = lab.dir.join("masq.yaml");
    lab.start_masq_with(&["run", "--config", cfg.to_str().unwrap()]);
    assert!(lab.masq_log().contains(&format!("control API on https://{API}")), "{}", lab.masq_log());

    // Plain HTTP gets nothing.
    let plain = lab.run("out", &["curl", "-sS", "--max-time", "5", &format!("http://{API}/healthz")]);
    assert!(!plain.status.success(), "plain HTTP answered: {}", String::from_utf8_lossy(&plain.stdout));
    // Health is open; reading subscriber data and the config needs the token.
    assert_eq!(curl(&lab, "GET", "/healthz", None, None).0, 200);
    for path in ["/sessions", "/config", "/stats"] {
        assert_eq!(curl(&lab, "GET", path, None, None).0, 401, "{path} without the token");
        assert_eq!(curl(&lab, "GET", path, Some(METRICS_TOKEN), None).0, 401, "{path} with the metrics token");
        assert_eq!(curl(&lab, "GET", path, Some(TOKEN), None).0, 200, "{path} with the token");
    }
    // Metrics: the metrics token is enough.
    assert_eq!(curl(&lab, "GET", "/metrics", None, None).0, 401);
    let (code, metrics) = curl(&lab, "GET", "/metrics", Some(METRICS_TOKEN), None);
    assert_eq!(code, 200);
    assert!(metrics.contains("masq_control_auth_failures_total"), "{metrics}");

    // A push without the token changes nothing; with it, it applies.
    let (_, before) = curl(&lab, "GET", "/metrics", Some(METRICS_TOKEN), None);
    let text = std::fs::read_to_string(&cfg).unwrap().replace("src: [100.64.0.0/10]", "src: [100.64.0.0/11]");
    std::fs::write(lab.dir.join("new.yaml"), &text).unwrap();
    let (code, _) = curl(&lab, "PUT", "/config", None, Some("@new.yaml"));
    assert_eq!(code, 401);
    let (_, after) = curl(&lab, "GET", "/metrics", Some(METRICS_TOKEN), None);
    let generation = |m: &str| m.lines().find(|l| l.starts_with("masq_config_generation ")).map(str::to_string);
    assert_eq!(generation(&before), generation(&after), "a refused push changed the generation");
    let (code, body) = curl(&lab, "PUT", "/config", Some(TOKEN), Some("@new.yaml"));
    assert_eq!(code, 200, "{body}");

    // The operator commands over TLS with the CA file.
    let ok = masq_cmd(&lab, &["sessions", "--api", API, "--ca", "ca.pem", "--token", TOKEN]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("sessions"), "{}", String::from_utf8_lossy(&ok.stdout));
    let no_ca = masq_cmd(&lab, &["sessions", "--api", API, "--token", TOKEN]);
    assert!(!no_ca.status.success(), "plain HTTP to a TLS API must fail");
    let wrong_name =
        masq_cmd(&lab, &["sessions", "--api", API, "--ca", "ca.pem", "--server-name", "other", "--token", TOKEN]);
    assert!(!wrong_name.status.success(), "a certificate for another name must be refused");
    assert!(
        String::from_utf8_lossy(&wrong_name.stderr).contains("TLS"),
        "{}",
        String::from_utf8_lossy(&wrong_name.stderr)
    );

    // Guessing costs time: each wrong token from one peer waits twice as long.
    let t = Instant::now();
    for _ in 0..4 {
        assert_eq!(curl(&lab, "DELETE", "/sessions", Some("guess"), None).0, 401);
    }
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(1500), "4 guesses took only {took:?}");
    let (_, m) = curl(&lab, "GET", "/metrics", Some(METRICS_TOKEN), None);
    let failures: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("masq_control_auth_failures_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(failures >= 4 + 6, "every refusal counted: {failures}\n{m}");

    let log = lab.stop_masq();
    assert!(log.contains("audit: config refused") || log.contains("refused PUT /config from 203.0.113.2"), "{log}");
    assert!(log.contains("config accepted: PUT /config from 203.0.113.2"), "{log}");
    assert!(log.contains("sha256 "), "{log}");
    assert!(log.contains("refused DELETE /sessions from 203.0.113.2"), "{log}");
}
