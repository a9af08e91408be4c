#!/usr/bin/env bash
# deploy/setup.sh: the set-up both of the README's commands share.
# Installs the Debian packages masq's build, lab and tests need (as root,
# only those missing), checks the Rust toolchain, and builds when asked:
#   deploy/setup.sh            packages + toolchain check
#   deploy/setup.sh --build    ... and `cargo build --release -p control`
set -euo pipefail
cd "$(dirname "$0")/.."

# What each is for: clang/llvm/libbpf-dev build the XDP program; iproute2,
# ethtool, nftables make the lab and the kernel-NAT peer; iperf3, curl,
# iputils-ping, traceroute, python3-scapy, tcpdump are the real clients and
# servers of the demo and the end-to-end tests; openssl makes the control
# API's test certificates; hping3 is the storm tests' generator
# (control/tests/storm.rs: a SYN flood, a new flow per datagram, at a raw
# socket's full rate; the kernel here has no pktgen); python3-pyftpdlib is
# the FTP server of the FTP ALG's test (control/tests/ftp.rs: one python
# process, no system service, any address and port in a namespace);
# rsyslog is the syslog collector of the NAT log's test
# (control/tests/nat_log.rs: rsyslogd -n with the test's own configuration),
# nfdump its IPFIX collector (nfcapd) and decoder, tshark the decoder of
# the IPFIX fields nfdump does not show (port ranges, quota events);
# prometheus gives promtool (the alert rules' unit tests, `promtool check
# metrics` on masq's /metrics) and the server the Prometheus lab test starts
# in a namespace (control/tests/prometheus.rs; the package's own service is
# not used); python3-venv makes the TRex client's and the Grafana SDK's
# venvs (below); frr gives the BGP speakers and routers of the scale-out
# lab (deploy/lab/scaleout.sh runs zebra and bgpd from /usr/lib/frr in its
# namespaces with its own files; the package's own service is not used).
pkgs=(clang llvm libbpf-dev libelf-dev pkg-config iproute2 ethtool nftables
      iperf3 curl iputils-ping traceroute python3 python3-scapy tcpdump conntrack
      openssl hping3 python3-pyftpdlib prometheus rsyslog nfdump tshark python3-venv frr)
# HA pair (issue 16): keepalived (VRRP) moves the addresses between the two
# boxes of control/tests/ha.rs (one keepalived per box namespace, started
# by the test; the package's own service is not used).
pkgs+=(keepalived)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]}; run as root (sudo) to install them." >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # wireshark-common (tshark's) asks whether non-root users may capture: no.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${missing[@]}" >/dev/null
  # FRR's package enables and starts its service on the host: the labs run
  # their own daemons, and a box's routing is not set-up's business.
  if printf '%s\n' "${missing[@]}" | grep -qx frr && command -v systemctl >/dev/null &&
    [ -d /run/systemd/system ]; then
    systemctl disable --now frr >/dev/null 2>&1 || true
  fi
fi

# TRex's Python client (PyPI lbr-trex-client, pinned) in a throwaway venv:
# control/tests/trex.rs compiles deploy/trex/*.py with it (no TRex server).
# Not fatal here when PyPI is unreachable: that test then fails and says so.
trex_venv=${MASQ_TREX_VENV:-target/trex-venv}
if ! "$trex_venv/bin/python" -c 'import lbr_trex_client' 2>/dev/null; then
  echo "setup: creating $trex_venv (lbr-trex-client for the TRex profile check)"
  { /usr/bin/python3 -m venv "$trex_venv" && "$trex_venv/bin/pip" install -q 'lbr-trex-client==3.4.0'; } >/dev/null 2>&1 ||
    echo "setup: could not install lbr-trex-client into $trex_venv (PyPI unreachable?)" >&2
fi

# grafana-foundation-sdk (PyPI, Apache-2.0, pinned: its epoch-prefixed
# version is the SDK build for Grafana 11.6) in its own venv:
# deploy/grafana/generate.py builds the dashboard with it, and
# control/tests/grafana.rs regenerates deploy/grafana/masq.json and compares.
grafana_venv=${MASQ_GRAFANA_VENV:-target/grafana-venv}
if ! "$grafana_venv/bin/python" -c 'import grafana_foundation_sdk' 2>/dev/null; then
  echo "setup: creating $grafana_venv (grafana-foundation-sdk for the dashboard generator)"
  { /usr/bin/python3 -m venv "$grafana_venv" &&
    "$grafana_venv/bin/pip" install -q 'grafana-foundation-sdk==1769699379!11.6.0'; } >/dev/null 2>&1 ||
    echo "setup: could not install grafana-foundation-sdk into $grafana_venv (PyPI unreachable?)" >&2
fi

need_rust="1.95"  # std::hint::cold_path (nat: the new-session path's rare branches)
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found. Install Rust >= $need_rust with rustup (https://rustup.rs); Debian 12's rustc 1.63 is too old." >&2
  exit 1
fi
have=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$need_rust" "$have" | sort -V | head -n1)" != "$need_rust" ]; then
  echo "setup: rustc $have is older than $need_rust; update with 'rustup update stable'." >&2
  exit 1
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy 2>/dev/null || true

if [ "${1:-}" = "--build" ]; then
  echo "setup: building masq (release)"
  cargo build --release --locked -p control 2>&1 | grep -E '^(error|warning: unused)|Finished' || true
  test -x target/release/masq || { echo "setup: build failed" >&2; exit 1; }
fi
