//! socialgate: a forwarding HTTP/HTTPS proxy that enforces per-group
//! social-platform policy and measures how social platforms are used.
//!
//! # Layout
//!
//! Data flows one way: **listener → identify → decide → forward → record**.
//!
//! - [`policy`]: the pure core. Raw YAML structs, the compiler, the domain
//!   matcher, time windows and `decide(&Policy, &RequestFacts, now)`. No
//!   sockets, no clock, no tokio.
//! - [`identity`]: htpasswd (bcrypt), `Proxy-Authorization: Basic`, the
//!   trusted identity header, the verified-credential cache.
//! - [`proxy`]: the async shell. Accept loop, HTTP forwarding, CONNECT
//!   tunnels with the ClientHello peek, upstream dialing with destination
//!   checks, the parent proxy (`proxy::parent`: CONNECT chaining, absolute
//!   form), the transparent listener (`proxy::transparent`: redirected
//!   HTTP and TLS, `SO_ORIGINAL_DST`), and the one module that builds every
//!   refusal and error response.
//! - [`outcome`]: outcomes as types (action, mode, reason, activity, error
//!   and the side it blames) and the one definition of "refused".
//! - [`event`] and [`accesslog`]: every request or tunnel ends in exactly one
//!   `Event`; the access log is written from it off the hot path.
//! - [`pseudonym`]: keyed HMAC pseudonyms for users in logs and reports.
//! - [`warn`]: the state behind `action: warn`: signed Continue links and
//!   acknowledgements (in memory, or in Redis shared by replicas).
//! - [`activetime`]: estimated active time (5-minute idle sessions), shared
//!   by reports and budgets.
//! - [`budget`]: the state behind daily budgets: the ledger of what each
//!   person spent today (in memory, a snapshot file, Redis shared by
//!   replicas) and the charges that count traffic into it.
//! - [`report`]: `socialgate report`, offline: reads access logs only.
//! - [`metrics`] and [`admin`]: Prometheus metrics derived from events, and
//!   the admin listener (`/metrics`, `/healthz`, `/readyz`, `/proxy.pac`
//!   with the policy's `pac:` bypass list, also as `/wpad.dat`).
//! - [`reload`]: the policy snapshot, swapped atomically on SIGHUP or when
//!   a policy file changes.
//! - [`notify`]: `READY=1`, `RELOADING=1`, `STOPPING=1` and watchdog pings
//!   to systemd (`Type=notify`); nothing without `NOTIFY_SOCKET`.
//! - [`health`]: `socialgate health`, the container health check.
//! - [`limits`]: the open-file limit, raised at start (with a warning
//!   when it is too low for `--max-connections`).
//! - [`memory`]: freed memory given back to the system after a burst of
//!   connections closes or goes idle (glibc keeps it otherwise).
//! - [`cli`]: the `socialgate` command line (`run`, `check`, `explain`,
//!   `test`, `report`, `simulate`, `completions` and `man` generated
//!   from the same definitions, and `schema`, the policy files' JSON
//!   Schemas generated from the [`policy::raw`] structs).
//! - [`yaml`]: the one place that parses YAML.

pub mod accesslog;
pub mod activetime;
pub mod admin;
pub mod app;
pub mod budget;
pub mod ca;
pub mod cli;
pub mod event;
pub mod health;
pub mod html;
pub mod identity;
pub mod limits;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod outcome;
pub mod policy;
pub mod proxy;
pub mod pseudonym;
pub mod reload;
pub mod report;
pub mod requests;
pub mod simulate;
pub mod warn;
pub mod yaml;
