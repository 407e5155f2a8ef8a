//! One inspected tunnel, after its CONNECT was admitted and the policy core
//! said to inspect it on its ClientHello.
//!
//! Upstream first, as g3proxy and mitmproxy do: socialgate opens its own TLS
//! to the origin over the already-dialed TCP stream, naming the SNI and
//! offering the client's ALPN list (restricted to `h2` and `http/1.1`), and
//! verifies the origin fully. Only then does it answer the client, replaying
//! the peeked ClientHello into its own TLS server with a leaf for the name,
//! offering exactly the protocol the origin chose. hyper serves the client
//! side (HTTP/1.1 or HTTP/2) and speaks the same version to the origin;
//! every request goes through [`crate::proxy::handler::handle_inspected`].
//!
//! An origin whose certificate fails verification is never used: the client
//! still gets the TLS session, and every request on it an error page. A
//! tunnel opened only to show a refusal has no upstream at all. A client
//! that refuses socialgate's certificate (a pinned app) ends the tunnel
//! with `client-refused-certificate`, and with `inspection.learn_pinned`
//! its host passes through undecrypted for a while.
//!
//! The tunnel itself ends in one record (`tls: intercepted`, the raw bytes
//! both ways); each request inside has its own.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::counted::CountedIo;
use super::{Inspector, H2, HTTP11};
use crate::event::Tls;
use crate::outcome::ErrorKind;
use crate::policy::{Host, Policy};
use crate::proxy::body::{BoxError, Pending};
use crate::proxy::identify::Identity;
use crate::proxy::sni::ClientHello;
use crate::proxy::upstream::ProxyBody;
use crate::proxy::{handler, ProxyState};

/// Concurrent streams one inspected HTTP/2 client connection may have open
/// (nginx's default is 128; RFC 9113 advises at least 100).
pub const H2_MAX_STREAMS: u32 = 100;
/// Data written to one stream but not yet sent to a slow client.
pub const H2_SEND_BUF: usize = 64 * 1024;
/// Streams opened and reset by the client before they were served; one
/// more and the connection is closed (h2's default, named here).
pub const H2_PENDING_RESETS: usize = 20;
/// Streams the server had to reset because the client broke the protocol.
pub const H2_LOCAL_RESETS: usize = 256;

/// What a request inside an inspected tunnel inherits from it.
pub struct Inside {
    pub peer: SocketAddr,
    /// Who opened the tunnel (its CONNECT was identified).
    pub identity: Identity,
    /// The name the ClientHello sent, normalised: every request must name it.
    pub host: Host,
    pub port: u16,
    /// The address the tunnel was dialed to, if it was.
    pub resolved: Option<IpAddr>,
    pub upstream: Reach,
}

/// How requests inside the tunnel reach the origin.
pub enum Reach {
    /// Over socialgate's verified TLS session.
    Origin(Link),
    /// They cannot: the session failed (an untrusted certificate, a failed
    /// handshake); every request gets this error.
    Failed(ErrorKind, String),
    /// The tunnel was opened only to show a refusal: nothing is dialed.
    None,
}

/// A hyper client connection over the origin TLS session.
pub enum Link {
    H1 {
        sender: tokio::sync::Mutex<hyper::client::conn::http1::SendRequest<ProxyBody>>,
        /// Set before an Upgrade request is sent: when the origin's
        /// connection then ends, it was handed to the WebSocket, and the
        /// client's connection must not be shut down for it.
        upgrading: Arc<std::sync::atomic::AtomicBool>,
    },
    H2 {
        sender: hyper::client::conn::http2::SendRequest<ProxyBody>,
    },
}

impl Link {
    /// Shapes a request for this connection: HTTP/1.1 takes origin-form and
    /// `Host`; HTTP/2 takes the scheme and authority in the URI
    /// (`:scheme`, `:authority`) and no `Host`.
    pub fn prepare(&self, parts: &mut http::request::Parts, host: &Host, port: u16) {
        let authority = if port == 443 {
            host.to_string()
        } else {
            format!("{host}:{port}")
        };
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        match self {
            Link::H1 { .. } => {
                parts.uri = path.parse().unwrap_or_else(|_| http::Uri::from_static("/"));
                parts.version = http::Version::HTTP_11;
                if let Ok(v) = http::HeaderValue::from_str(&authority) {
                    parts.headers.insert(http::header::HOST, v);
                }
            }
            Link::H2 { .. } => {
                let uri = format!("https://{authority}{path}");
                parts.uri = uri.parse().unwrap_or_else(|_| http::Uri::from_static("/"));
                parts.version = http::Version::HTTP_2;
                parts.headers.remove(http::header::HOST);
            }
        }
    }

    /// Marks the session as about to be taken over by a WebSocket.
    pub fn upgrading(&self) {
        if let Link::H1 { upgrading, .. } = self {
            upgrading.store(true, Ordering::SeqCst);
        }
    }

    /// Sends a request and waits for the response head.
    pub async fn send(
        &self,
        req: Request<ProxyBody>,
    ) -> Result<http::Response<Incoming>, BoxError> {
        match self {
            Link::H1 { sender, .. } => {
                let mut s = sender.lock().await;
                s.ready().await?;
                Ok(s.send_request(req).await?)
            }
            Link::H2 { sender } => {
                let mut s = sender.clone();
                s.ready().await?;
                Ok(s.send_request(req).await?)
            }
        }
    }
}

/// Everything the inspected path takes over from the tunnel.
pub struct Tunnel {
    pub policy: Arc<Policy>,
    /// The tunnel's record.
    pub pending: Pending,
    /// The client's side (an upgraded CONNECT, or a redirected socket).
    pub client: crate::proxy::upstream::BoxIo,
    /// The ClientHello bytes already read (and counted).
    pub first: Vec<u8>,
    pub hello: ClientHello,
    /// The server name as sent, and normalised.
    pub name: String,
    pub host: Host,
    pub port: u16,
    /// The dialed origin; `None` when the tunnel only shows a refusal.
    pub upstream: Option<(crate::proxy::upstream::BoxIo, Option<IpAddr>)>,
    pub identity: Identity,
    pub peer: SocketAddr,
}

/// Runs an inspected tunnel to its end, and records it.
pub async fn run(state: Arc<ProxyState>, inspector: Arc<Inspector>, t: Tunnel) {
    let Tunnel {
        policy,
        mut pending,
        client,
        first,
        hello,
        name,
        host,
        port,
        upstream,
        identity,
        peer,
    } = t;
    pending.event_mut().tls = Some(Tls::Intercepted);

    // Upstream first: its protocol is what the client will be offered.
    let mut upstream_closed = None;
    let (reach, resolved, alpn) = match upstream {
        None => (Reach::None, None, own_choice(&hello)),
        Some((tcp, addr)) => match connect_origin(&state, &inspector, &hello, &name, tcp).await {
            Ok((link, alpn, closed)) => {
                upstream_closed = Some(closed);
                (Reach::Origin(link), addr, alpn)
            }
            Err((kind, detail)) => {
                tracing::info!(host = %name, error = kind.as_str(), %detail, "inspected origin not usable");
                (Reach::Failed(kind, detail), addr, own_choice(&hello))
            }
        },
    };

    // Then the client, with a leaf for the name it asked for.
    let leaf = match inspector.leaves.get(&name) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "no leaf certificate; closing the tunnel");
            pending.event_mut().error = Some(ErrorKind::ClientProtocol);
            return;
        }
    };
    let config = inspector.server_config(leaf, alpn.as_deref());
    let io = Replay {
        prefix: first,
        at: 0,
        inner: CountedIo::client(client, pending.meter.clone()),
    };
    let handshake = tokio_rustls::TlsAcceptor::from(config).accept(io);
    let tls = match tokio::time::timeout(state.config.header_read_timeout, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            let refused = refused_our_certificate(&e);
            let ev = pending.event_mut();
            if refused {
                ev.error = Some(ErrorKind::ClientRefusedCertificate);
                if policy.inspection.learn_pinned {
                    inspector.learn_pinned(&name, policy.inspection.pinned_for);
                    tracing::info!(host = %name, hours = policy.inspection.pinned_for.as_secs() / 3600, "the client refused socialgate's certificate (a pinned app?); passing this host through undecrypted for a while");
                }
            } else {
                ev.error = Some(ErrorKind::ClientProtocol);
                tracing::debug!(host = %name, error = %e, "client TLS handshake failed");
            }
            return;
        }
        Err(_) => {
            pending.event_mut().error = Some(ErrorKind::ClientTimeout);
            return;
        }
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(H2);

    let inside = Arc::new(Inside {
        peer,
        identity,
        host,
        port,
        resolved,
        upstream: reach,
    });
    drop(policy);
    let st = state.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        handler::handle_inspected(st.clone(), inside.clone(), req)
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let mut builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    if h2 {
        // Every bound named rather than left to hyper's defaults (200
        // streams, 400 KiB of unsent data per stream): what one client
        // connection may hold open is at most H2_MAX_STREAMS upstream
        // requests and H2_MAX_STREAMS x H2_SEND_BUF bytes waiting for a
        // client that does not read. Streams a client opens and resets
        // before they are served (HTTP/2 "rapid reset", CVE-2023-44487)
        // are capped by h2's pending-reset limit, and streams the client
        // makes the server reset by protocol errors by its local-reset
        // limit: past either the connection is closed with GOAWAY.
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(H2_MAX_STREAMS)
            .max_send_buf_size(H2_SEND_BUF)
            .max_pending_accept_reset_streams(H2_PENDING_RESETS)
            .max_local_error_reset_streams(H2_LOCAL_RESETS)
            .max_header_list_size(state.config.max_header_bytes.min(u32::MAX as usize) as u32);
    } else {
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(state.config.header_read_timeout)
            .max_buf_size(state.config.max_header_bytes.saturating_mul(2).max(8192))
            .keep_alive(true);
    }
    // With upgrades: a WebSocket request takes the connection over (and
    // records itself); this tunnel's record then ends.
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
    tokio::pin!(conn);

    // Until the client's connection ends, the origin's ends (then the
    // client's is shut down gracefully, so it reconnects), no byte moves
    // for `--idle-timeout`, or the drain time is up.
    let mut hard_stop = state.hard_stop.subscribe();
    let mut ticker =
        tokio::time::interval(state.config.idle_timeout.max(Duration::from_millis(10)));
    ticker.tick().await;
    let mut last_total = u64::MAX;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "inspected client connection ended with an error");
                }
                break;
            }
            _ = closed(&mut upstream_closed) => {
                upstream_closed = None;
                conn.as_mut().graceful_shutdown();
            }
            _ = hard_stop.wait_for(|s| *s) => {
                pending.event_mut().error = Some(ErrorKind::Shutdown);
                break;
            }
            _ = ticker.tick() => {
                let m = &pending.meter;
                let total = m.up.load(Ordering::Relaxed) + m.down.load(Ordering::Relaxed);
                if total == last_total {
                    pending.event_mut().error = Some(ErrorKind::IdleTimeout);
                    break;
                }
                last_total = total;
            }
        }
    }
    pending.complete();
}

/// Resolves when the origin's connection ended; never when it was handed
/// to a WebSocket (the sender is dropped unsent) or there is none.
async fn closed(rx: &mut Option<tokio::sync::oneshot::Receiver<()>>) {
    let ended = match rx.as_mut() {
        Some(r) => r.await.is_ok(),
        None => false,
    };
    if !ended {
        std::future::pending::<()>().await;
    }
}

/// socialgate's TLS to the origin, verified, then a hyper client
/// connection of the protocol the origin chose. Returns the link, that
/// protocol, and a receiver that fires when the origin's connection ends.
async fn connect_origin(
    state: &ProxyState,
    inspector: &Inspector,
    hello: &ClientHello,
    name: &str,
    tcp: crate::proxy::upstream::BoxIo,
) -> Result<(Link, Option<Vec<u8>>, tokio::sync::oneshot::Receiver<()>), (ErrorKind, String)> {
    let server_name = ServerName::try_from(name.to_string()).map_err(|_| {
        (
            ErrorKind::ClientProtocol,
            format!("{name:?} is not a server name"),
        )
    })?;
    let connector = tokio_rustls::TlsConnector::from(inspector.client_config(&hello.alpn));
    let tls = match tokio::time::timeout(
        state.config.connect_timeout,
        connector.connect(server_name, tcp),
    )
    .await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return Err(origin_tls_error(&e)),
        Err(_) => {
            return Err((
                ErrorKind::UpstreamTimeout,
                "the site did not complete the TLS handshake in time".into(),
            ))
        }
    };
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let io = TokioIo::new(tls);
    let link = if alpn.as_deref() == Some(H2) {
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_header_list_size(state.config.max_header_bytes.min(u32::MAX as usize) as u32)
            .handshake::<_, ProxyBody>(io)
            .await
            .map_err(|e| {
                (
                    ErrorKind::UpstreamProtocol,
                    format!("HTTP/2 with the site failed: {e}"),
                )
            })?;
        tokio::spawn(async move {
            let _ = conn.await;
            let _ = tx.send(());
        });
        Link::H2 { sender }
    } else {
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(state.config.max_header_bytes.max(8192))
            .handshake::<_, ProxyBody>(io)
            .await
            .map_err(|e| {
                (
                    ErrorKind::UpstreamProtocol,
                    format!("HTTP/1.1 with the site failed: {e}"),
                )
            })?;
        let upgrading = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let upgraded = upgrading.clone();
        tokio::spawn(async move {
            // With upgrades: a WebSocket takes the session over, and then
            // the client's connection is the WebSocket's, not to be closed.
            let _ = conn.with_upgrades().await;
            if !upgraded.load(Ordering::SeqCst) {
                let _ = tx.send(());
            }
        });
        Link::H1 {
            sender: tokio::sync::Mutex::new(sender),
            upgrading,
        }
    };
    Ok((link, alpn, rx))
}

/// The protocol socialgate offers the client when no origin chose one (a
/// refusal or an unusable origin): h2 if the client offers it, else
/// HTTP/1.1 if offered, else none (HTTP/1.1 implied).
fn own_choice(hello: &ClientHello) -> Option<Vec<u8>> {
    [H2, HTTP11]
        .into_iter()
        .find(|p| hello.alpn.iter().any(|o| o.as_slice() == *p))
        .map(<[u8]>::to_vec)
}

/// Maps a failed TLS handshake with the origin to an error kind and a
/// sentence: a certificate that failed verification is `upstream-certificate`.
fn origin_tls_error(e: &std::io::Error) -> (ErrorKind, String) {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return match tls {
            rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::InvalidCertRevocationList(_) => (
                ErrorKind::UpstreamCertificate,
                format!("the site's certificate was not accepted: {tls}"),
            ),
            other => (
                ErrorKind::UpstreamProtocol,
                format!("TLS with the site failed: {other}"),
            ),
        };
    }
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => (
            ErrorKind::UpstreamProtocol,
            "the site closed the connection during the TLS handshake".into(),
        ),
        _ => (
            ErrorKind::UpstreamConnect,
            format!("TLS with the site failed: {e}"),
        ),
    }
}

/// True when a failed client handshake is the client refusing our
/// certificate: a certificate alert (pinned apps, clients that do not trust
/// the company CA).
fn refused_our_certificate(e: &std::io::Error) -> bool {
    use rustls::AlertDescription as A;
    let Some(rustls::Error::AlertReceived(alert)) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return false;
    };
    matches!(
        alert,
        A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied
    )
}

/// The client side of the tunnel with the peeked ClientHello put back in
/// front: socialgate's TLS server reads the hello the client already sent.
struct Replay<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = (self.prefix.len() - self.at).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            if self.at == self.prefix.len() {
                self.prefix = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
