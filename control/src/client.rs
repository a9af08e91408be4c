//! The operator commands' side of the control API: one HTTP/1.1 request
//! per connection, plain on loopback, TLS with a CA file (`--ca`) when the
//! API is elsewhere ([`crate::tls::ClientTls`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Why an operator command got no answer it could use.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens there.
    #[error("cannot reach masq's control API on {api} (is masq running? --api ADDR)")]
    Connect {
        /// Where it was asked.
        api: SocketAddr,
        /// Why the connection failed.
        #[source]
        source: std::io::Error,
    },
    /// The connection broke.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The answer is not HTTP.
    #[error("{0}: not an HTTP answer")]
    NotHttp(SocketAddr),
    /// The status line has no code.
    #[error("bad HTTP status line")]
    BadStatusLine,
    /// masq answered, and not with 2xx.
    #[error("masq answered {0}")]
    Status(u16),
    /// The CA file or server name.
    #[error("--ca: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The TLS session failed (certificate not trusted, name mismatch...).
    #[error("TLS with {api}: {error}")]
    Handshake {
        /// Where.
        api: SocketAddr,
        /// Why.
        error: String,
    },
}

/// A running masq's control API, as the operator commands reach it.
pub struct Api {
    /// Its address.
    pub addr: SocketAddr,
    /// The bearer token, sent with every call when given.
    pub token: Option<String>,
    /// TLS, when the API speaks it.
    pub tls: Option<crate::tls::ClientTls>,
}

impl Api {
    /// `ca`: trust this CA file and speak TLS, checking the server's name
    /// (`server_name`, or the address's IP).
    pub fn new(
        addr: SocketAddr,
        token: Option<String>,
        ca: Option<&std::path::Path>,
        server_name: Option<&str>,
    ) -> Result<Self> {
        let tls = match ca {
            Some(ca) => {
                let name = server_name.map_or_else(|| addr.ip().to_string(), str::to_string);
                Some(crate::tls::ClientTls::new(ca, &name)?)
            }
            None => None,
        };
        Ok(Self { addr, token, tls })
    }
}

type Result<T> = std::result::Result<T, ClientError>;

/// Sends one request; returns the status code and the body.
pub fn request(api: &Api, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let addr = api.addr;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|source| ClientError::Connect { api: addr, source })?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let auth = api.token.as_ref().map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut raw = Vec::new();
    match &api.tls {
        None => {
            let mut s = tcp;
            s.write_all(req.as_bytes())?;
            s.read_to_end(&mut raw)?;
        }
        Some(tls) => {
            let handshake = |e: &dyn std::fmt::Display| ClientError::Handshake { api: addr, error: e.to_string() };
            let mut s = tls.wrap(tcp).map_err(|e| handshake(&e))?;
            s.write_all(req.as_bytes()).map_err(|e| handshake(&e))?;
            // The server may close without close_notify after Connection: close.
            match s.read_to_end(&mut raw) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
                Err(e) => return Err(handshake(&e)),
            }
        }
    }
    let api = addr;
    let text = String::from_utf8_lossy(&raw);
    let Some((head, rest)) = text.split_once("\r\n\r\n") else { return Err(ClientError::NotHttp(api)) };
    let status: u16 = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or(ClientError::BadStatusLine)?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked { dechunk(rest) } else { rest.to_string() };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The query string of the session filters given.
pub fn filters(
    subscriber: &Option<String>,
    public: &Option<String>,
    protocol: &Option<String>,
    state: &Option<String>,
) -> String {
    let parts: Vec<String> = [("subscriber", subscriber), ("public", public), ("protocol", protocol), ("state", state)]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Prints a body and fails on a non-2xx status.
pub fn finish(status: u16, body: &str) -> Result<()> {
    if (200..300).contains(&status) {
        print!("{body}");
        Ok(())
    } else {
        eprint!("{body}");
        Err(ClientError::Status(status))
    }
}

/// `masq stats`: totals every second as rates, redrawn in place on a terminal.
pub fn stats(api: &Api, once: bool) -> Result<()> {
    use std::io::IsTerminal;
    let tty = std::io::stdout().is_terminal();
    let read = || -> Result<std::collections::BTreeMap<String, u64>> {
        let (status, body) = request(api, "GET", "/stats", "")?;
        if status != 200 {
            return Err(ClientError::Status(status));
        }
        Ok(body
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
            .collect())
    };
    let mut prev = read()?;
    let mut t_prev = std::time::Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = read()?;
        let dt = t_prev.elapsed().as_secs_f64();
        t_prev = std::time::Instant::now();
        let rate =
            |k: &str| (now.get(k).copied().unwrap_or(0).saturating_sub(prev.get(k).copied().unwrap_or(0))) as f64 / dt;
        let mut out = String::new();
        if tty {
            out.push_str("\x1b[H\x1b[2J");
        }
        out.push_str(&format!("masq on {}   (Ctrl-C quits)\n\n", api.addr));
        out.push_str(&format!("  in -> out  {:>12.0} pps\n", rate("tx_outside")));
        out.push_str(&format!("  out -> in  {:>12.0} pps\n", rate("tx_inside")));
        out.push_str(&format!(
            "  sessions   {:>12}   (+{:.0}/s)\n",
            now.get("sessions").copied().unwrap_or(0),
            rate("sessions_created")
        ));
        out.push_str(&format!("  port blocks in use {:>6}\n", now.get("blocks_in_use").copied().unwrap_or(0)));
        out.push_str(&format!("  hand-offs  {:>12.0} /s\n", rate("handoffs")));
        out.push_str(&format!("  drops      {:>12.0} /s\n", rate("drops")));
        for (k, _) in now.iter().filter(|(k, _)| k.starts_with("drop.")) {
            out.push_str(&format!(
                "    {:<24} {:>10.0} /s  ({} in all)\n",
                &k[5..],
                rate(k),
                now.get(k).copied().unwrap_or(0)
            ));
        }
        print!("{out}");
        std::io::stdout().flush()?;
        prev = now;
        if once {
            return Ok(());
        }
    }
}
