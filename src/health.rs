//! `socialgate health`: asks a running socialgate's admin listener for
//! `/healthz` (or `/readyz`) and exits 0 on a 2xx answer, 1 otherwise.
//!
//! It exists for container health checks: the runtime image has no curl,
//! and the binary is already there. It only reads one short response from
//! the admin listener; it must not start a runtime or touch the policy.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// Admin address of the running socialgate (the same value as `run --admin`);
    /// an unspecified address such as 0.0.0.0 means this host's loopback.
    #[arg(long, env = "SOCIALGATE_ADMIN", default_value = "127.0.0.1:9128")]
    pub admin: SocketAddr,
    /// The endpoint to ask: /healthz (the process answers) or /readyz (ready to serve).
    #[arg(long, default_value = "/healthz", value_parser = ["/healthz", "/readyz"])]
    pub path: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    pub timeout: u64,
}

/// Runs the check; prints the failure on stderr.
pub fn run(a: &HealthArgs) -> ExitCode {
    match check(a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("socialgate health: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(a: &HealthArgs) -> Result<(), String> {
    let addr = reachable(a.admin);
    let timeout = Duration::from_secs(a.timeout.max(1));
    let mut s = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to the admin listener at {addr}: {e}"))?;
    let io = |e: std::io::Error| format!("{addr}{}: {e}", a.path);
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    write!(
        s,
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
        a.path
    )
    .map_err(io)?;
    // The head is all we need; /readyz's body is a few lines.
    let mut buf = Vec::new();
    s.take(16 * 1024).read_to_end(&mut buf).map_err(io)?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(&buf) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(format!("{addr}{}: no valid HTTP response", a.path)),
    }
    match resp.code {
        Some(c) if (200..300).contains(&c) => Ok(()),
        c => Err(format!(
            "{addr}{} answered {}",
            a.path,
            c.map_or("nothing".into(), |c| c.to_string())
        )),
    }
}

/// The address to connect to for a listener bound to `addr`: a wildcard
/// bind is reached through loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}
