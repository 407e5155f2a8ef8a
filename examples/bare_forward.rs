//! The floor under socialgate's per-request cost: a forward proxy built from
//! the same parts (tokio's multi-thread runtime, hyper's HTTP/1 server and
//! connection-level client, one kept upstream connection per client
//! connection, as socialgate's `proxy::keepalive` does) and nothing else: no
//! policy, no identity, no header hygiene, no metrics, no access log. What it
//! costs per request is what hyper and tokio cost; socialgate can only add to
//! it. `benches/cpu-split.sh` measures it beside nginx and socialgate when
//! `FLOOR=1`.
//!
//!   cargo build --release --example bare_forward
//!   target/release/examples/bare_forward run --listen 127.0.0.1:18218
//!
//! It takes the same `run --listen ADDR` as socialgate and ignores the rest
//! of the arguments. Loopback benchmarking only: it listens on a loopback
//! address and forwards to loopback addresses, nothing else.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1 as client;
use hyper::server::conn::http1 as server;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

type Body = BoxBody<bytes::Bytes, hyper::Error>;
type Kept = Arc<Mutex<Option<(SocketAddr, client::SendRequest<Incoming>)>>>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listen: SocketAddr = args
        .iter()
        .position(|a| a == "--listen")
        .and_then(|i| args.get(i + 1))
        .and_then(|a| a.parse().ok())
        .filter(|a: &SocketAddr| a.ip().is_loopback())
        .unwrap_or_else(|| {
            eprintln!("usage: bare_forward run --listen ADDR (a loopback address, such as 127.0.0.1:18218)");
            std::process::exit(2)
        });
    // FLOOR_RUNTIME=current: tokio's single-threaded scheduler instead of
    // the multi-thread one socialgate uses, to see what that part costs.
    let rt = match std::env::var("FLOOR_RUNTIME").as_deref() {
        Ok("current") => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build()
    .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(listen).await.expect("bind");
        // Scripts stop it with SIGINT, which a background job ignores
        // unless the program listens for it, as socialgate does.
        let stop = tokio::signal::ctrl_c();
        tokio::pin!(stop);
        loop {
            let stream = tokio::select! {
                _ = &mut stop => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let kept: Kept = Arc::default();
                let svc = service_fn(move |req| forward(req, kept.clone()));
                let _ = server::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}

async fn forward(req: Request<Incoming>, kept: Kept) -> Result<Response<Body>, hyper::Error> {
    let addr: Option<SocketAddr> = req.uri().authority().and_then(|a| a.as_str().parse().ok());
    let Some(addr) = addr else {
        return Ok(status(400));
    };
    if !addr.ip().is_loopback() {
        return Ok(status(403));
    }
    let (mut parts, body) = req.into_parts();
    parts.uri = parts.uri.path_and_query().map_or_else(
        || http::Uri::from_static("/"),
        |p| http::Uri::from(p.clone()),
    );
    let held = kept.lock().unwrap().take().filter(|(a, _)| *a == addr);
    let mut sender = match held {
        Some((_, s)) => s,
        None => {
            let Ok(stream) = TcpStream::connect(addr).await else {
                return Ok(status(502));
            };
            let _ = stream.set_nodelay(true);
            let (sender, conn) = client::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            sender
        }
    };
    sender.ready().await?;
    let resp = sender
        .send_request(Request::from_parts(parts, body))
        .await?;
    *kept.lock().unwrap() = Some((addr, sender));
    Ok(resp.map(|b| b.boxed()))
}

fn status(code: u16) -> Response<Body> {
    let mut r = Response::new(
        http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = http::StatusCode::from_u16(code).unwrap_or_default();
    r
}
