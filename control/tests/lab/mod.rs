//! The namespace lab for end-to-end tests: each test brings up its own lab
//! (deploy/lab/lab.sh) under a prefix no other test or run uses, starts the
//! real `masq` binary in the box's namespace, and drives real programs in the
//! host namespaces. Everything is torn down when the `Lab` drops, also when
//! the test fails. Tests run one at a time (a lock), so the two cores of a
//! CI machine go to one masq and its traffic.
#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Fails the test (never skips it) when not root: the lab needs namespaces.
pub fn require_root() {
    // The effective uid, from /proc (no libc call needed).
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2)).unwrap_or("");
    assert_eq!(
        euid, "0",
        "this end-to-end test needs root (network namespaces, XDP): run `sudo ./test.sh`; CI runs as root"
    );
}

/// Small programs the lab tests run in their hosts (python3 -c).
/// A UDP echo server: prints each sender, answers with the payload.
pub const UDP_ECHO: &str = "import socket,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind((sys.argv[1],int(sys.argv[2])))
while True:
    d,a=s.recvfrom(65535); print('from %s:%d %d bytes'%(a[0],a[1],len(d)),flush=True); s.sendto(d,a)";

/// A UDP client: sends N datagrams of SIZE bytes, prints how many echoes came back intact.
pub const UDP_CLIENT: &str = "import socket,sys,os
host,port,n,size=sys.argv[1],int(sys.argv[2]),int(sys.argv[3]),int(sys.argv[4])
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(2)
ok=0
for i in range(n):
    d=os.urandom(size); s.sendto(d,(host,port))
    try:
        r,_=s.recvfrom(65535); ok+= r==d
    except socket.timeout: pass
print('echoed %d of %d'%(ok,n))";

/// A TCP connect attempt: prints connected, refused or timeout.
pub const TCP_CONNECT: &str = "import socket,sys
s=socket.socket(); s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1],int(sys.argv[2]))); print('connected')
except ConnectionRefusedError: print('refused')
except socket.timeout: print('timeout')
except OSError as e: print('error',e)";

/// Starts python's HTTP server in `host` on `addr:port` (serving the
/// lab's directory) and waits until it answers.
pub fn http_server(lab: &mut Lab, host: &str, addr: &str, port: &str, log: &str) {
    lab.spawn(host, &["python3", "-m", "http.server", port, "--bind", addr], log);
    let url = format!("http://{addr}:{port}/");
    assert!(
        lab.wait_for(Duration::from_secs(5), || lab
            .run(host, &["curl", "-s", "-o", "/dev/null", &url])
            .status
            .success()),
        "HTTP server on {addr}:{port} did not come up"
    );
}

/// A number masq's closing line prints after `key`.
pub fn total(out: &str, key: &str) -> u64 {
    out.split(key)
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Workers the lab tests run masq with: 1, or 2 with `MASQ_LAB_WORKERS=2`.
pub fn workers() -> u32 {
    if std::env::var("MASQ_LAB_WORKERS").as_deref() == Ok("2") {
        2
    } else {
        1
    }
}

/// A configuration text shaped for [`workers`]: with two, its one worker
/// core `cores: [1]` becomes `cores: [0, 1]` (tests that push or reload a
/// file must push the same shape, or the change needs a restart).
pub fn shaped(config: &str) -> String {
    if workers() == 2 {
        config.replace("cores: [1]", "cores: [0, 1]")
    } else {
        config.to_string()
    }
}

/// The lab's SNAT configuration up to its rule's `match:` source: the
/// subscribers (100.64.0.0/10) into the pool address 203.0.113.10, one
/// worker on core 1. [`snat_config`] completes it.
const SNAT_HEAD: &str = "\
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
";

/// The lab's SNAT configuration ([`SNAT_HEAD`]) with `match_extra` lines
/// added to the rule's `match:` and `rest` after the rules, [`shaped`]
/// for one or two workers.
pub fn snat_config(match_extra: &str, rest: &str) -> String {
    shaped(&format!("{SNAT_HEAD}{match_extra}{rest}"))
}

/// One lab and what runs in it.
pub struct Lab {
    pub prefix: String,
    children: Vec<Child>,
    masq: Option<Child>,
    masq_log: PathBuf,
    pub dir: PathBuf,
    queues: u32,
    /// The lab's script (`up` and `down`), relative to the repository.
    script: &'static str,
    /// An HA pair (`LAB_HA=1`: a second box `nat2`, see deploy/lab/lab.sh).
    ha: bool,
    _serial: MutexGuard<'static, ()>,
}

impl Lab {
    /// Brings up a lab named after the test; `out_mtu` is the outside link's
    /// MTU. With `MASQ_LAB_WORKERS=2` (the test command's second pass) the
    /// box's links get two queues and masq two workers ([`Lab::start_masq_with`]).
    pub fn up(test: &str, out_mtu: u32) -> Lab {
        Self::up_with(test, out_mtu, workers())
    }

    /// [`Lab::up`] with `queues` queues on the box's two links.
    pub fn up_with(test: &str, out_mtu: u32, queues: u32) -> Lab {
        Self::up_lab(test, out_mtu, queues, "deploy/lab/lab.sh", false)
    }

    fn up_script(test: &str, out_mtu: u32, queues: u32, script: &'static str) -> Lab {
        Self::up_lab(test, out_mtu, queues, script, false)
    }

    /// An HA pair's lab: a second box `nat2` beside `nat` on the inside
    /// bridge and an outside bridge, a sync link between them, the
    /// gateway addresses left to VRRP (deploy/lab/lab.sh, `LAB_HA=1`).
    pub fn up_ha(test: &str) -> Lab {
        Self::up_lab(test, 1500, workers(), "deploy/lab/lab.sh", true)
    }

    fn up_lab(test: &str, out_mtu: u32, queues: u32, script: &'static str, ha: bool) -> Lab {
        require_root();
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let tag: String = test.chars().filter(char::is_ascii_alphanumeric).take(6).collect();
        let prefix = format!("mqt{}{}-", std::process::id() % 10000, tag);
        let dir = std::env::temp_dir().join(format!("{prefix}files"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let lab = Lab {
            prefix: prefix.clone(),
            children: Vec::new(),
            masq: None,
            masq_log: dir.join("masq.log"),
            dir,
            queues,
            script,
            ha,
            _serial: serial,
        };
        let out = lab.script(&["up"], out_mtu);
        assert!(
            out.status.success(),
            "lab up failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    fn script(&self, args: &[&str], out_mtu: u32) -> Output {
        Command::new(repo().join(self.script))
            .args(args)
            .env("LAB_PREFIX", &self.prefix)
            .env("LAB_OUT_MTU", out_mtu.to_string())
            .env("LAB_QUEUES", self.queues.to_string())
            .env("LAB_STATE", self.dir.join("state"))
            .env("LAB_HA", if self.ha { "1" } else { "0" })
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.script))
    }

    /// The full namespace name of a lab host (`in`, `in2`, `nat`, `out`, `far`).
    pub fn ns(&self, host: &str) -> String {
        format!("{}{}", self.prefix, host)
    }

    fn cmd(&self, host: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host)]).args(args).current_dir(&self.dir);
        c
    }

    /// Runs a command in a host and waits for it.
    pub fn run(&self, host: &str, args: &[&str]) -> Output {
        self.cmd(host, args).output().unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, host: &str, args: &[&str]) -> String {
        let o = self.run(host, args);
        assert!(
            o.status.success(),
            "{host}: {args:?} failed ({}):\n{}{}\nmasq log:\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.masq_log()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Starts a long-running program in a host (killed at teardown); its
    /// stdout and stderr go to `log` in the lab's directory. Returns its
    /// process id (`ip netns exec` execs it), to signal it.
    pub fn spawn(&mut self, host: &str, args: &[&str], log: &str) -> u32 {
        let f = std::fs::File::create(self.dir.join(log)).expect("log file");
        let child = self
            .cmd(host, args)
            .stdout(f.try_clone().expect("log"))
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// The running masq's process id (`ip netns exec` execs it).
    pub fn masq_pid(&self) -> Option<u32> {
        self.masq.as_ref().map(Child::id)
    }

    /// CPU time (user + system) the running masq has used, in seconds.
    pub fn masq_cpu_secs(&self) -> f64 {
        let pid = self.masq_pid().expect("masq runs");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("masq's /proc stat");
        // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let f: Vec<f64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        // Clock ticks of 1/100 s (USER_HZ on Linux).
        (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
    }

    /// A file of the lab's directory.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// The source port an echo server spawned with [`UDP_ECHO`] into
    /// `echo.log` saw `public` send from (its first line from `public`).
    #[allow(dead_code)] // not every test binary uses it
    pub fn seen_port(&self, public: &str) -> u16 {
        let echo = self.read("echo.log");
        echo.lines()
            .find_map(|l| l.strip_prefix(&format!("from {public}:")))
            .and_then(|r| r.split(' ').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the echo saw nothing from {public}: {echo}"))
    }

    /// Starts masq in the box with `args` after `run --inside nat-in --outside nat-out`,
    /// and waits until it forwards.
    pub fn start_masq(&mut self, args: &[&str]) {
        let mut v = vec!["run", "--inside", "nat-in", "--outside", "nat-out"];
        v.extend(args);
        self.start_masq_with(&v);
    }

    /// Starts masq in the box with exactly `args` and waits until it forwards
    /// (with `MASQ_LAB_WORKERS=2`, on cores 0 and 1 whatever `args` say).
    pub fn start_masq_with(&mut self, args: &[&str]) {
        // A --config run gets its shape from the file ([`shaped`]).
        let two = workers() == 2 && self.queues == 2 && !args.contains(&"--config");
        let mut args: Vec<&str> = args.to_vec();
        if two {
            match args.iter().position(|a| *a == "--cores") {
                Some(i) if i + 1 < args.len() => args[i + 1] = "0,1",
                _ => args.extend(["--cores", "0,1"]),
            }
        }
        let child = self.spawn_masq("nat", &args, &self.masq_log);
        self.masq = Some(child);
    }

    /// Starts masq with `args` in `host`, its output in the file
    /// `log_path`, and waits until it forwards.
    fn spawn_masq(&self, host: &str, args: &[&str], log_path: &std::path::Path) -> Child {
        // Append mode: masq's stdout and the stderr lines copied below share
        // the file, and neither may overwrite the other.
        std::fs::write(log_path, "").expect("masq log");
        let log = std::fs::OpenOptions::new().append(true).open(log_path).expect("masq log");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns(host), env!("CARGO_BIN_EXE_masq")])
            .args(args)
            .stdout(log.try_clone().expect("log"))
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting masq");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let path = log_path.to_path_buf();
        std::thread::spawn(move || {
            let mut log = std::fs::OpenOptions::new().append(true).open(path).ok();
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(f) = log.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(f, "{line}");
                }
                if !sent && line.contains("forwarding") {
                    let _ = tx.send(());
                    sent = true;
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(10)).is_err() {
            panic!("masq did not start in {host}:\n{}", std::fs::read_to_string(log_path).unwrap_or_default());
        }
        child
    }

    /// Stops masq with SIGINT and returns everything it printed.
    pub fn stop_masq(&mut self) -> String {
        if let Some(mut c) = self.masq.take() {
            let _ = Command::new("kill").args(["-INT", &c.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(st)) = c.try_wait() {
                    assert!(st.success(), "masq exited with {st}:\n{}", self.masq_log());
                    break;
                }
                assert!(Instant::now() < deadline, "masq did not stop on SIGINT:\n{}", self.masq_log());
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        self.masq_log()
    }

    /// Sends `signal` (`HUP`, `INT`, ...) to this lab's masq and no other:
    /// every lab's masq shares the host's process table, so a name match
    /// (`pkill -f`) would reach the masq of a lab running beside this one.
    pub fn signal_masq(&self, signal: &str) {
        let pid = self.masq.as_ref().map(|c| c.id().to_string()).expect("masq is not running");
        let st = Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("kill");
        assert!(st.success(), "kill -{signal} {pid}");
    }

    /// Kills masq with SIGKILL (no clean-up of its own).
    pub fn kill_masq(&mut self) {
        if let Some(mut c) = self.masq.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// What masq printed so far.
    pub fn masq_log(&self) -> String {
        std::fs::read_to_string(&self.masq_log).unwrap_or_default()
    }

    /// XDP programs attached in the box's namespace.
    pub fn xdp_attached(&self) -> usize {
        let o = self.run("nat", &["ip", "link", "show"]);
        String::from_utf8_lossy(&o.stdout).matches("prog/xdp").count()
    }

    /// The value of the unlabelled sample `name` on masq's /metrics (0 if
    /// it is not there).
    pub fn metric(&self, name: &str) -> u64 {
        let m = self.ok("nat", &["curl", "-sS", "http://127.0.0.1:9091/metrics"]);
        m.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Waits until `f` holds (or the timeout passes); returns whether it held.
    pub fn wait_for(&self, timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        f()
    }
}

/// The scale-out lab (deploy/lab/scaleout.sh): subscribers `sub`, the
/// inside router `ir`, masq boxes `b1` to `b3` with their BGP speakers and
/// health hooks, the upstream router `ur` with the server.
impl Lab {
    /// Brings up the scale-out lab named after the test.
    pub fn up_scaleout(test: &str) -> Lab {
        Self::up_script(test, 1500, 1, "deploy/lab/scaleout.sh")
    }

    /// Starts masq in `host` with `args`, its output in `log` of the lab's
    /// directory; waits until it forwards and returns its process id
    /// (killed at teardown, or before by [`Lab::kill_pid`]).
    pub fn start_masq_in(&mut self, host: &str, args: &[&str], log: &str) -> u32 {
        let child = self.spawn_masq(host, args, &self.dir.join(log));
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Sends `signal` (`KILL`, `STOP`, ...) to one process this lab started.
    pub fn kill_pid(&self, signal: &str, pid: u32) {
        let st = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status().expect("kill");
        assert!(st.success(), "kill -{signal} {pid}");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.kill_masq();
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.script(&["down"], 1500);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
