//! The transparent listener (`--transparent`): traffic that a gateway
//! redirects to socialgate (iptables/nftables `REDIRECT`), from clients
//! that do not know a proxy is there.
//!
//! Each connection's original destination comes from the socket
//! (`SO_ORIGINAL_DST`, `IP6T_SO_ORIGINAL_DST`); a connection that was not
//! redirected has the listener itself as its original destination, which
//! the policy refuses (`destination-self`). The first byte tells TLS from
//! plain HTTP:
//!
//! - **TLS**: the ClientHello's server name is the destination (the
//!   original address when it names none). It is admitted like a CONNECT
//!   tunnel, on the original port, then handed to the same post-ClientHello
//!   path as CONNECT tunnels ([`super::tunnel::after_hello`]): inspected
//!   when a rule says so, as a CONNECT tunnel would be. A refusal is shown
//!   over HTTPS when the connection would be inspected (the block page
//!   signed by the company CA); otherwise the connection is reset
//!   (`SO_LINGER` 0) and recorded.
//! - **HTTP**: hyper serves the connection; each request's target is made
//!   absolute from its `Host` (the port defaults to the original port) and
//!   goes through the same phases as a proxy request
//!   ([`super::handler::handle_redirected`]); refusals get the block page.
//!
//! The client is known by its address only. The policy core checks that
//! the name is where the connection was going: the original address must be
//! one of the name's addresses, on the same port (`destination-mismatch`),
//! and socialgate connects to that original address only. Nothing is
//! decided here.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::{TcpListener, TcpStream};

use super::context::Exchange;
use super::keepalive::Kept;
use super::sni::{self, Hello, Peeked};
use super::splice::{Admitted, Signals};
use super::tunnel::{after_hello, Tunnel};
use super::upstream::{open, ProxyBody};
use super::{conn, handler, ProxyState};
use crate::event::Kind;
use crate::policy::{normalize_host, Class, Entry, Host};

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Serves redirected connections on `listener` until `shutdown` resolves,
/// then drains like [`super::serve`].
pub async fn serve(
    listener: TcpListener,
    state: Arc<ProxyState>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> Option<u64> {
    let builder = conn::builder(&state.config);
    tokio::pin!(shutdown);
    while let Some(accepted) = super::accept(&listener, &state, "transparent", &mut shutdown).await
    {
        let client = match accepted {
            super::Accepted::Client(c) => c,
            super::Accepted::OverClientLimit(stream, peer) => {
                // A redirected client cannot be told why: reset, and count it.
                state.note_client_limit(peer.ip());
                reset(stream);
                continue;
            }
        };
        let (stream, peer) = (&client.stream, client.peer);
        let original = match original_destination(stream) {
            Ok(o) => o,
            Err(e) => {
                // No NAT record: the client came to the listener itself,
                // which the destination stage refuses as destination-self.
                tracing::debug!(%peer, error = %e, "no original destination; using the listener's address");
                match stream.local_addr() {
                    Ok(local) => local,
                    Err(_) => continue,
                }
            }
        };
        let st = state.clone();
        let b = builder.clone();
        state.conns.spawn(connection(st, b, client, original));
    }
    drop(listener);
    super::drain_connections(&state, drain).await
}

/// One redirected connection: TLS or plain HTTP, by its first byte. A
/// client that sends nothing within `--header-read-timeout` is closed
/// without a record, as an idle proxy connection is.
async fn connection(
    state: Arc<ProxyState>,
    builder: Arc<hyper::server::conn::http1::Builder>,
    client: conn::Client,
    original: SocketAddr,
) {
    let mut byte = [0u8; 1];
    let first = tokio::time::timeout(
        state.config.header_read_timeout,
        client.stream.peek(&mut byte),
    );
    if !matches!(first.await, Ok(Ok(1..))) {
        return;
    }
    let peer = client.peer;
    if byte[0] == TLS_HANDSHAKE {
        // Tracked as a tunnel: shutdown waits for it, the drain limit cuts
        // it. Its limits are held until it ends.
        let st = state.clone();
        state.spawn_tunnel(async move {
            let conn::Client { stream, held, .. } = client;
            tls(st, stream, peer, original).await;
            drop(held);
        });
        return;
    }
    let st = state.clone();
    let handle = move |req, kept| {
        let answer = request(st.clone(), peer, original, req, kept);
        async move {
            match answer.await {
                Ok(resp) => resp,
                Err(never) => match never {},
            }
        }
    };
    conn::serve(state, builder, client, handle).await;
}

/// One plain-HTTP request on a redirected connection.
async fn request(
    state: Arc<ProxyState>,
    peer: SocketAddr,
    original: SocketAddr,
    mut req: Request<Incoming>,
    kept: Arc<Kept>,
) -> Result<Response<ProxyBody>, Infallible> {
    let refuse = |kind: Kind, req: &Request<Incoming>, detail: &str| {
        let host = original.ip().to_string();
        let mut ex = Exchange::begin(&state, kind, peer, req.method(), host, original.port());
        ex.redirected(original);
        ex.bad_request(&state, StatusCode::BAD_REQUEST, None, detail)
    };
    if req.method() == Method::CONNECT {
        let detail = "the transparent listener takes redirected traffic, not CONNECT; proxy clients use the --listen address";
        return Ok(refuse(Kind::Tunnel, &req, detail));
    }
    if req.uri().authority().is_none() {
        match absolute_target(req.uri(), req.headers(), original) {
            Ok(uri) => *req.uri_mut() = uri,
            Err(detail) => return Ok(refuse(Kind::Request, &req, detail)),
        }
    }
    Ok(handler::handle_redirected(state, peer, original, req, &kept).await)
}

/// The absolute `http://` target of an origin-form request: the host and
/// port of its `Host` header (the port defaults to the original port), or
/// the original address when an HTTP/1.0 client sent no `Host`.
fn absolute_target(
    uri: &http::Uri,
    headers: &HeaderMap,
    original: SocketAddr,
) -> Result<http::Uri, &'static str> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut hosts = headers.get_all(header::HOST).iter();
    let target = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err("more than one Host header"),
        (Some(value), None) => {
            let authority: http::uri::Authority = value
                .to_str()
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or("the Host header is not HOST[:PORT]")?;
            if authority.as_str().contains('@') {
                return Err("the Host header is not HOST[:PORT]");
            }
            let port = match authority.port_u16() {
                Some(p) => p,
                // A port that is there but not a number 0-65535.
                None if authority.as_str() != authority.host() => {
                    return Err("the Host header's port is not 0-65535")
                }
                None => original.port(),
            };
            format!("http://{}:{port}{path}", authority.host())
        }
        (None, _) => format!("http://{original}{path}"),
    };
    target
        .parse()
        .map_err(|_| "the Host header and path do not form a URL")
}

/// One redirected TLS connection: the ClientHello names the destination;
/// admitted like a CONNECT tunnel, then the shared post-ClientHello path.
/// Whatever ends it before bytes are relayed resets the connection.
async fn tls(
    state: Arc<ProxyState>,
    mut stream: TcpStream,
    peer: SocketAddr,
    original: SocketAddr,
) {
    // Subscribed before the snapshot is taken, as for CONNECT tunnels.
    let signals = Signals::subscribe(&state);
    let limit = state.policy.load().tunnels.sni_timeout;
    let mut first = Vec::new();
    let peeked = sni::peek(&mut stream, &mut first, limit).await;
    if matches!(peeked, Peeked::Closed) && first.is_empty() {
        return;
    }
    let name = match &peeked {
        Peeked::Hello(Hello::Tls(h)) => h.server_name.clone(),
        _ => None,
    };
    // Without a usable server name, the tunnel is decided on the address.
    let host = name
        .as_deref()
        .and_then(|n| normalize_host(n).ok())
        .unwrap_or(Host::Ip(original.ip()));
    let port = original.port();
    let mut ex = Exchange::begin(
        &state,
        Kind::Tunnel,
        peer,
        &Method::CONNECT,
        super::handler::host_text(&host),
        port,
    );
    ex.redirected(original);
    ex.event.sni.clone_from(&name);
    let (identity, mut admission) = match ex
        .identify_and_admit(&state, &HeaderMap::new(), Entry::Connect, &host, port)
        .await
    {
        Ok(x) => x,
        Err(refusal) => {
            let _ = ex.refuse(&state, refusal);
            return reset(stream);
        }
    };
    ex.event.foreground = admission.decision.class == Some(Class::Primary);
    // A warn rule cannot show its page inside TLS that is not inspected.
    ex.event.warn = super::tunnel::unshown(&admission);
    // A refused connection goes on (undialed) only to show the refusal
    // page inside it, when a rule has it inspected; otherwise a reset.
    let show_refusal = admission.refuses();
    if show_refusal && !(admission.inspect.inspect && state.inspector.is_some()) {
        let _ = ex.refuse(&state, admission.decision);
        return reset(stream);
    }
    ex.apply(&mut admission.decision);
    let (opened, resolved_by_parent) = if show_refusal {
        (None, false)
    } else {
        let dest = match ex
            .resolve_and_admit(&state, &host, port, &admission.decision)
            .await
        {
            Ok(d) => d,
            Err(stop) => {
                let _ = ex.stop(&state, stop);
                return reset(stream);
            }
        };
        match open(&state, &dest, &host, port).await {
            Ok(o) => (Some(o), dest.resolved_by_parent),
            Err(e) => {
                let _ = ex.fail_upstream(&state, &e);
                return reset(stream);
            }
        }
    };
    ex.event.status = 200;
    let (pending, policy) = ex.into_pending(&state);
    let admitted = Admitted {
        entry: Entry::Connect,
        client: peer.ip(),
        user: identity.user.clone(),
        host,
        port,
        resolved: opened
            .as_ref()
            .map(|o| o.resolved.clone())
            .unwrap_or_default(),
        sni: None,
        resolved_by_parent,
        original: Some(original),
        activity: None,
        hello: None,
    };
    let tunnel = Tunnel {
        policy,
        pending,
        admitted,
        admission,
        signals,
        identity,
        peer,
    };
    let upstream = opened.map(|o| o.stream);
    if let Some(client) = after_hello(state, tunnel, stream, upstream, first, peeked).await {
        reset(client);
    }
}

/// Closes with a reset (`SO_LINGER` 0): a TLS client gets no page, and a
/// reset tells it at once that this connection will not work.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Where a redirected connection was going: the destination before the
/// gateway's NAT rewrote it (`SO_ORIGINAL_DST`, `IP6T_SO_ORIGINAL_DST`).
/// An error when the connection has no NAT record (it was not redirected).
#[cfg(target_os = "linux")]
pub fn original_destination(stream: &TcpStream) -> std::io::Result<SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    let ipv4 = match stream.local_addr()? {
        SocketAddr::V4(_) => true,
        // An IPv4 client on a dual-stack listener: its NAT record is IPv4.
        SocketAddr::V6(a) => a.ip().to_ipv4_mapped().is_some(),
    };
    if ipv4 {
        // SAFETY: sockaddr_in is plain data, for which all-zero is valid.
        let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: `fd` is an open socket owned by `stream`; `sa` and `len`
        // describe a writable buffer of the size the option fills in.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_IP,
                libc::SO_ORIGINAL_DST,
                (&mut sa as *mut libc::sockaddr_in).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let ip = Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr));
        Ok(SocketAddr::from((ip, u16::from_be(sa.sin_port))))
    } else {
        // SAFETY: sockaddr_in6 is plain data, for which all-zero is valid.
        let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        // SAFETY: as above, for the IPv6 option and buffer.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_IPV6,
                libc::IP6T_SO_ORIGINAL_DST,
                (&mut sa as *mut libc::sockaddr_in6).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let ip = Ipv6Addr::from(sa.sin6_addr.s6_addr);
        Ok(SocketAddr::V6(SocketAddrV6::new(
            ip,
            u16::from_be(sa.sin6_port),
            0,
            0,
        )))
    }
}

/// Only Linux keeps a NAT record socialgate can read.
#[cfg(not(target_os = "linux"))]
pub fn original_destination(_stream: &TcpStream) -> std::io::Result<SocketAddr> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "transparent mode needs Linux (SO_ORIGINAL_DST)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_form_targets_take_the_host_header_and_the_original_port() {
        let original: SocketAddr = "198.18.0.1:8080".parse().unwrap();
        let uri: http::Uri = "/a?b=1".parse().unwrap();
        let with = |hosts: &[&str]| {
            let mut h = HeaderMap::new();
            for v in hosts {
                h.append(header::HOST, v.parse().unwrap());
            }
            absolute_target(&uri, &h, original).map(|u| u.to_string())
        };
        assert_eq!(
            with(&["www.example.org"]).unwrap(),
            "http://www.example.org:8080/a?b=1"
        );
        assert_eq!(
            with(&["www.example.org:81"]).unwrap(),
            "http://www.example.org:81/a?b=1"
        );
        assert_eq!(
            with(&["[2001:db8::1]"]).unwrap(),
            "http://[2001:db8::1]:8080/a?b=1"
        );
        assert_eq!(with(&[]).unwrap(), "http://198.18.0.1:8080/a?b=1");
        assert!(with(&["a.example", "b.example"]).is_err());
        assert!(with(&["user@www.example.org"]).is_err());
        assert!(with(&["bad host"]).is_err());
        assert!(with(&["x:99999"]).is_err(), "{:?}", with(&["x:99999"]));
    }

    #[tokio::test]
    async fn a_connection_that_was_not_redirected_has_no_original_destination() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        // Without a NAT record the kernel says so, or (where conntrack
        // tracks loopback) reports the listener itself.
        match original_destination(&server) {
            Ok(o) => assert_eq!(o, addr),
            Err(e) => assert!(e.raw_os_error().is_some(), "{e}"),
        }
        drop(client);
    }
}
