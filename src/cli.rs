//! The `socialgate` command line.
//!
//! `run` serves the proxy; `check`, `explain` and `test` work on a policy
//! directory without starting anything; `completions` and `man` print a
//! shell completion script and the man page generated from these
//! definitions; `schema` prints the JSON Schemas of the policy files. Every flag has help text, and most
//! can also be set from the environment (`SOCIALGATE_*`).
//!
//! Why one long file: it is the flag definitions (clap derive, with their
//! help text) plus one short function per subcommand that turns flags into
//! calls; the subcommands' real work lives in their own modules.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::accesslog::{LogConfig, LogFormat};
use crate::app::{App, AppConfig, StartError};
use crate::policy::cases::{parse_target, parse_time};
use crate::policy::{admit, admit_traced, load_dir, run_cases, Entry, Facts, Host};
use crate::proxy::parent::{NoProxy, ParentConfig, ParentConfigError, ParentDns};
use crate::proxy::ProxyConfig;

#[derive(Debug, Parser)]
#[command(
    name = "socialgate",
    version,
    about = "A forwarding HTTP/HTTPS proxy that enforces who may use which social platform, how and when, and measures how they are used.",
    after_help = "Run `socialgate run` in the repository to serve the shipped policies/ on 127.0.0.1:3128."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the proxy with a policy directory.
    Run(RunArgs),
    /// Validate every policy file and print all errors with their location.
    Check(CheckArgs),
    /// Show the decision for one client and URL, with the rules considered.
    Explain(ExplainArgs),
    /// Create or show the company CA that signs certificates for inspected HTTPS.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Run the policy test cases kept in tests.yaml beside the policy.
    Test(DirArg),
    /// Build usage and security reports from access logs (HTML, CSV or JSON).
    Report(crate::report::ReportArgs),
    /// Replay access logs under a candidate policy and show what would change.
    Simulate(crate::simulate::SimulateArgs),
    /// Ask a running socialgate's admin listener for /healthz; exit 0 if healthy (container health checks).
    Health(crate::health::HealthArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// E.g. `socialgate completions bash > /etc/bash_completion.d/socialgate`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the JSON Schema of policy.yaml, catalog.yaml or tests.yaml (for editors).
    ///
    /// E.g. `socialgate schema policy > docs/schema/policy.schema.json`. Editors
    /// that speak yaml-language-server (VS Code's YAML extension) read the
    /// `# yaml-language-server: $schema=...` first line of the shipped files.
    Schema(SchemaArgs),
    /// Print the man page (roff), or a subcommand's own page.
    ///
    /// E.g. `socialgate man > /usr/local/share/man/man1/socialgate.1` and
    /// `socialgate man run > /usr/local/share/man/man1/socialgate-run.1`.
    Man {
        /// The subcommand whose page to print (run, check, explain, …); default the overview.
        subcommand: Option<String>,
    },
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["file", "all"]))]
pub struct SchemaArgs {
    /// The policy file whose schema to print.
    #[arg(value_enum)]
    pub file: Option<crate::policy::schema::SchemaFile>,
    /// Write every schema into this directory (e.g. docs/schema) instead of printing one.
    #[arg(long, value_name = "DIR")]
    pub all: Option<PathBuf>,
}

/// `socialgate ca ...`.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create the company CA (ECDSA P-256, path length 0, ten years); never overwrites one.
    ///
    /// The subject names the policy's settings.organization. The key is written with mode
    /// 0600. Prints the SHA-256 fingerprint and the SPKI hash to compare on devices;
    /// docs/tls-inspection.md says how to distribute the certificate.
    Init(CaArgs),
    /// Print the company CA's subject, validity, SHA-256 fingerprint and SPKI hash.
    Show(CaArgs),
}

#[derive(Debug, Args)]
pub struct CaArgs {
    /// Policy directory: settings.organization names the CA, and inspection.ca_cert/ca_key
    /// (if set) say where it is.
    #[arg(long, env = "SOCIALGATE_POLICY", default_value = "policies")]
    pub policy: PathBuf,
    #[command(flatten)]
    pub files: CaFiles,
}

/// Where the company CA is (the policy's inspection.ca_cert/ca_key take precedence).
#[derive(Debug, Args, Clone)]
pub struct CaFiles {
    /// The company CA certificate (PEM), made by `socialgate ca init`; the policy's
    /// inspection.ca_cert takes precedence.
    #[arg(long, env = "SOCIALGATE_CA_CERT", value_name = "PATH", default_value = crate::ca::DEFAULT_CERT)]
    pub ca_cert: PathBuf,
    /// The company CA's private key (PEM, mode 0600); the policy's inspection.ca_key takes
    /// precedence.
    #[arg(long, env = "SOCIALGATE_CA_KEY", value_name = "PATH", default_value = crate::ca::DEFAULT_KEY)]
    pub ca_key: PathBuf,
}

impl CaFiles {
    fn inspection(&self, upstream_ca: &[PathBuf]) -> crate::app::InspectionFiles {
        crate::app::InspectionFiles {
            ca: crate::ca::CaPaths {
                cert: self.ca_cert.clone(),
                key: self.ca_key.clone(),
            },
            upstream_ca: upstream_ca.to_vec(),
        }
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Policy directory.
    #[arg(default_value = "policies", env = "SOCIALGATE_POLICY")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub files: CaFiles,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Policy directory (catalog.yaml, policy.yaml, tests.yaml).
    #[arg(long, env = "SOCIALGATE_POLICY", default_value = "policies")]
    pub policy: PathBuf,
    /// Proxy listening address, IP:PORT (0.0.0.0:3128 or [::]:3128 for every interface). A port
    /// alone (3128), :PORT and localhost:PORT mean 127.0.0.1:PORT. Repeat, or separate with commas,
    /// for several (e.g. IPv4 and IPv6).
    #[arg(
        long,
        env = "SOCIALGATE_LISTEN",
        value_name = "ADDR",
        value_delimiter = ',',
        default_value = "127.0.0.1:3128",
        value_parser = parse_listen
    )]
    pub listen: Vec<SocketAddr>,
    /// Access-log file; `-` writes to standard output, `off` disables it.
    #[arg(long, env = "SOCIALGATE_ACCESS_LOG", default_value = "-")]
    pub access_log: String,
    /// Permission bits, in octal, of an access-log file socialgate creates (also after rotation).
    /// The log is personal data: by default only the owner and its group may read it.
    #[arg(long, env = "SOCIALGATE_ACCESS_LOG_MODE", value_name = "MODE", default_value = "0640", value_parser = parse_mode)]
    pub access_log_mode: u32,
    /// Access-log format.
    #[arg(
        long,
        env = "SOCIALGATE_LOG_FORMAT",
        value_enum,
        default_value = "json"
    )]
    pub log_format: LogFormat,
    /// Access-log records that may wait for the writer before new ones are dropped (and counted).
    #[arg(long, env = "SOCIALGATE_LOG_QUEUE", default_value_t = 4096)]
    pub log_queue: usize,
    /// Pin a host name to an address, like curl's --resolve (HOST=IP); for tests and split-horizon DNS.
    #[arg(long, env = "SOCIALGATE_RESOLVE", value_delimiter = ',', value_name = "HOST=IP", value_parser = parse_resolve)]
    pub resolve: Vec<(String, IpAddr)>,
    /// DNS server to ask, IP or IP:PORT (port 53 by default); repeat, or separate with commas, for
    /// several. Default: the servers in /etc/resolv.conf (with its search list; /etc/hosts first).
    #[arg(long, env = "SOCIALGATE_DNS_SERVER", value_name = "IP[:PORT]", value_delimiter = ',', value_parser = parse_dns_server)]
    pub dns_server: Vec<SocketAddr>,
    /// DNS lookups that may be in flight at once; further ones wait for a turn (within
    /// --connect-timeout). Answers are cached for their TTL, names that do not exist for 5-60 s.
    #[arg(
        long,
        env = "SOCIALGATE_DNS_MAX_IN_FLIGHT",
        value_name = "N",
        default_value_t = 256
    )]
    pub dns_max_in_flight: usize,
    /// Maximum concurrent client connections; further clients wait. Tunnels count until they close.
    #[arg(long, env = "SOCIALGATE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Maximum concurrent connections from one client address, so that one noisy client cannot
    /// take every slot; further ones get 429 (the transparent listener resets them). 0: no cap.
    /// Raise it for clients behind NAT (many users, one address).
    #[arg(
        long,
        env = "SOCIALGATE_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 1_000
    )]
    pub max_connections_per_client: usize,
    /// Largest request head accepted, in bytes.
    #[arg(long, env = "SOCIALGATE_MAX_HEADER_BYTES", default_value_t = 65_536)]
    pub max_header_bytes: usize,
    /// Seconds a client has to send a complete request head. The same timer closes an idle
    /// keep-alive client connection (it starts when the connection waits for its next request).
    #[arg(long, env = "SOCIALGATE_HEADER_READ_TIMEOUT", default_value_t = 30)]
    pub header_read_timeout: u64,
    /// Seconds without traffic after which a tunnel or WebSocket is closed.
    #[arg(long, env = "SOCIALGATE_IDLE_TIMEOUT", default_value_t = 300)]
    pub idle_timeout: u64,
    /// Seconds to connect to an upstream.
    #[arg(long, env = "SOCIALGATE_CONNECT_TIMEOUT", default_value_t = 10)]
    pub connect_timeout: u64,
    /// Seconds to wait for an upstream's response head.
    #[arg(long, env = "SOCIALGATE_UPSTREAM_TIMEOUT", default_value_t = 60)]
    pub upstream_timeout: u64,
    /// Seconds a request or response body may carry no data before the exchange is ended
    /// (logged as client-timeout or upstream-timeout).
    #[arg(long, env = "SOCIALGATE_BODY_IDLE_TIMEOUT", default_value_t = 120)]
    pub body_idle_timeout: u64,
    /// Seconds SIGTERM waits for in-flight requests and tunnels.
    #[arg(long, env = "SOCIALGATE_DRAIN_TIMEOUT", default_value_t = 30)]
    pub drain_timeout: u64,
    /// Milliseconds between checks of the policy directory for changes; 0 disables.
    #[arg(long, env = "SOCIALGATE_WATCH_INTERVAL_MS", default_value_t = 1000)]
    pub watch_interval_ms: u64,
    /// Admin listener for /metrics, /healthz, /readyz, /proxy.pac and POST /reload, written like
    /// --listen (a port alone means 127.0.0.1:PORT); `off` disables it.
    #[arg(long, env = "SOCIALGATE_ADMIN", value_name = "ADDR", default_value = "127.0.0.1:9128", value_parser = parse_admin)]
    pub admin: Admin,
    /// Proxy to advertise in /proxy.pac as HOST:PORT, a name or an address clients reach it by
    /// (default: the first --listen address).
    #[arg(long, env = "SOCIALGATE_PAC_PROXY", value_name = "HOST:PORT", value_parser = parse_pac_proxy)]
    pub pac_proxy: Option<String>,
    /// HMAC key file for pseudonymising users in the access log; created with mode 0600 if missing.
    /// The policy's logging.key_file takes precedence.
    #[arg(
        long,
        env = "SOCIALGATE_PSEUDONYM_KEY",
        default_value = "socialgate-pseudonym.key"
    )]
    pub pseudonym_key: PathBuf,
    /// File where the budgets spent today are saved (every 30 s and at exit, atomically; mode
    /// 0600), so that a restart does not refill them; `off` keeps them in memory only. Written only
    /// when a rule has a budget.
    #[arg(
        long,
        env = "SOCIALGATE_BUDGET_STATE",
        value_name = "PATH",
        default_value = "socialgate-budgets.json"
    )]
    pub budget_state: PathBuf,
    /// Transparent listener for traffic a gateway redirects to socialgate (iptables/nftables
    /// REDIRECT), written like --listen; plain HTTP and TLS on the same port. Repeat, or separate
    /// with commas, for several. Clients are known by their address only.
    #[arg(long, env = "SOCIALGATE_TRANSPARENT", value_name = "ADDR", value_delimiter = ',', value_parser = parse_listen)]
    pub transparent: Vec<SocketAddr>,
    /// Parent (egress) proxy that admitted traffic leaves through, as http://HOST:PORT: tunnels are
    /// chained with CONNECT, plain HTTP is sent in absolute form.
    #[arg(long, env = "SOCIALGATE_UPSTREAM_PROXY", value_name = "URL", value_parser = parse_upstream_proxy)]
    pub upstream_proxy: Option<String>,
    /// File holding USER:PASSWORD for the parent proxy (sent as Basic); mode 0600 or stricter.
    #[arg(
        long,
        env = "SOCIALGATE_UPSTREAM_PROXY_CREDENTIALS",
        value_name = "PATH",
        requires = "upstream_proxy"
    )]
    pub upstream_proxy_credentials: Option<PathBuf>,
    /// Destinations that go direct instead of through the parent: domains (each covers its
    /// subdomains), IP addresses, CIDR networks, or * for all; separated by commas.
    #[arg(long, env = "SOCIALGATE_NO_PROXY", value_name = "LIST", value_delimiter = ',', value_parser = parse_no_proxy, requires = "upstream_proxy")]
    pub no_proxy: Vec<String>,
    /// Who resolves the names of destinations that go through the parent: local (socialgate
    /// resolves and checks every address, the default) or parent (for networks where only the
    /// parent can; socialgate then checks IP literals and refuses local names only).
    #[arg(
        long,
        env = "SOCIALGATE_UPSTREAM_PROXY_DNS",
        value_enum,
        default_value = "local",
        value_name = "WHO"
    )]
    pub upstream_proxy_dns: ParentDns,
    /// Write the process id to this file once listening (for `kill -HUP "$(cat FILE)"`); removed
    /// on a clean exit.
    #[arg(long, env = "SOCIALGATE_PID_FILE", value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    #[command(flatten)]
    pub ca: CaFiles,
    /// Extra CA certificates (PEM) trusted for inspected origins, besides Mozilla's roots and the
    /// system store (internal CAs, tests); repeat or separate with commas. The policy's
    /// inspection.upstream_ca adds to these.
    #[arg(
        long,
        env = "SOCIALGATE_UPSTREAM_CA",
        value_name = "PATH",
        value_delimiter = ','
    )]
    pub upstream_ca: Vec<PathBuf>,
}

/// `--admin`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    Off,
    At(SocketAddr),
}

fn parse_admin(s: &str) -> Result<Admin, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(Admin::Off);
    }
    parse_listen(s).map(Admin::At)
}

/// Reads a listening address the way admins write it for Squid and
/// friends: `IP:PORT` and `[IPv6]:PORT` as they are; a port alone, `:PORT`
/// and `localhost:PORT` on 127.0.0.1. Port 0 (any free port) is accepted,
/// for tests. Every refusal says what is wrong and what to write.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let loopback = std::net::Ipv4Addr::LOCALHOST;
    let port = |p: &str| -> Result<u16, String> {
        match p.parse::<u64>() {
            Ok(n) if n <= u64::from(u16::MAX) => Ok(n as u16),
            Ok(_) => Err("port must be 1-65535".to_string()),
            Err(_) if p.is_empty() => {
                Err("no port; write e.g. 127.0.0.1:3128, or just 3128".into())
            }
            Err(_) => Err(format!("port {p:?} is not a number (1-65535)")),
        }
    };
    if s.is_empty() {
        return Err("empty address; write e.g. 127.0.0.1:3128, or just 3128".into());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return port(s).map(|p| SocketAddr::from((loopback, p)));
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Err(match ip {
            IpAddr::V4(_) => format!("no port; write e.g. {ip}:3128"),
            IpAddr::V6(_) => {
                format!("no port, or an IPv6 address without brackets; write e.g. [{ip}]:3128")
            }
        });
    }
    let Some((host, p)) = s.rsplit_once(':') else {
        return Err(
            "not an address; write IP:PORT (e.g. 0.0.0.0:3128 or [::]:3128), or just a port".into(),
        );
    };
    let p = port(p)?;
    match host {
        "" => Ok(SocketAddr::from((loopback, p))),
        h if h.eq_ignore_ascii_case("localhost") => Ok(SocketAddr::from((loopback, p))),
        h if h.starts_with('[') => Err(format!("{h:?} is not an IPv6 address in brackets, e.g. [::1]:3128")),
        h => Err(format!("{h:?} is not an IP address; names other than localhost are not looked up: write the address to listen on, e.g. 0.0.0.0:{p} for every interface")),
    }
}

/// Reads `--pac-proxy`: `HOST:PORT` with a host name or an IP address
/// (IPv6 in brackets), as written into the PAC file's `PROXY` line.
pub fn parse_pac_proxy(s: &str) -> Result<String, String> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a.to_string());
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err("write HOST:PORT, e.g. proxy.corp.example:3128".into());
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err("port must be 1-65535".into()),
    }
    match crate::policy::normalize_host(host) {
        Ok(crate::policy::Host::Name(n)) => Ok(format!("{n}:{port}")),
        _ => Err(format!(
            "{host:?} is not a host name or IP address; write HOST:PORT, e.g. proxy.corp.example:3128"
        )),
    }
}

/// Checks `--upstream-proxy` (the credentials file is read at start-up).
fn parse_upstream_proxy(s: &str) -> Result<String, String> {
    ParentConfig::new(s, None, NoProxy::default(), ParentDns::Local)
        .map(|_| s.trim().to_string())
        .map_err(|e| match e {
            ParentConfigError::Url(_, why) => why.to_string(),
            other => other.to_string(),
        })
}

/// Checks one `--no-proxy` entry.
fn parse_no_proxy(s: &str) -> Result<String, String> {
    NoProxy::parse(&[s.to_string()]).map(|_| s.trim().to_string())
}

/// Reads an octal file mode such as `0640` (at most `0777`).
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.trim().trim_start_matches("0o");
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 && !digits.is_empty() => Ok(m),
        _ => Err(format!(
            "{s:?} is not an octal file mode; write e.g. 0640 (owner read/write, group read)"
        )),
    }
}

#[derive(Debug, Args)]
pub struct DirArg {
    /// Policy directory.
    #[arg(default_value = "policies", env = "SOCIALGATE_POLICY")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Policy directory.
    #[arg(long, default_value = "policies", env = "SOCIALGATE_POLICY")]
    pub policy: PathBuf,
    /// The client's IP address.
    #[arg(long)]
    pub client: IpAddr,
    /// The authenticated user, if any.
    #[arg(long)]
    pub user: Option<String>,
    /// When, as RFC 3339 with offset (e.g. 2026-11-25T12:00+01:00); default now.
    #[arg(long)]
    pub at: Option<String>,
    /// The TLS server name the client sends in its ClientHello (https:// only); default: the URL's host.
    #[arg(long, value_name = "NAME")]
    pub sni: Option<String>,
    /// Decide as if the person had continued past the deciding warn rule's warning (within
    /// warn.remember); without it, explain says what happens until they do.
    #[arg(long)]
    pub acknowledged: bool,
    /// How much of the deciding rule's daily budget the person has spent today: a time such as
    /// 25m or 1h30m, an amount such as 300MB, or both (25m,300MB); repeatable. Default: nothing.
    #[arg(long, value_name = "USED", value_parser = parse_spent_arg)]
    pub spent: Vec<crate::policy::Spent>,
    /// Do not resolve the host: the destination stage then checks IP literals only.
    #[arg(long)]
    pub no_resolve: bool,
    /// Pin a host name to an address, as the proxy's --resolve does (HOST=IP).
    #[arg(long, value_name = "HOST=IP", value_parser = parse_resolve)]
    pub resolve: Vec<(String, IpAddr)>,
    /// The proxy's own listening addresses (never a destination); default 127.0.0.1:3128 and 127.0.0.1:9128.
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    pub listen: Vec<SocketAddr>,
    /// The request method, to see which activity the request is (e.g. POST).
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// A request header, `Name: value` (repeatable), e.g. `X-FB-Friendly-Name: ComposerStoryCreateMutation`.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// The request body (the first 64 KiB are what socialgate reads).
    #[arg(long)]
    pub body: Option<String>,
    /// The parent proxy, as `run --upstream-proxy` (the same variable): with
    /// --upstream-proxy-dns parent, names bound for it are not resolved here.
    #[arg(long, env = "SOCIALGATE_UPSTREAM_PROXY", value_name = "URL", value_parser = parse_upstream_proxy)]
    pub upstream_proxy: Option<String>,
    /// As `run --no-proxy`: destinations that go direct instead of through the parent.
    #[arg(long, env = "SOCIALGATE_NO_PROXY", value_name = "LIST", value_delimiter = ',', value_parser = parse_no_proxy)]
    pub no_proxy: Vec<String>,
    /// As `run --upstream-proxy-dns`: who resolves names bound for the parent.
    #[arg(
        long,
        env = "SOCIALGATE_UPSTREAM_PROXY_DNS",
        value_enum,
        default_value = "local",
        value_name = "WHO"
    )]
    pub upstream_proxy_dns: ParentDns,
    /// Decide as the transparent listener would for a connection redirected from this original
    /// destination (IP:PORT): the URL's host must resolve to it.
    #[arg(long, value_name = "IP:PORT")]
    pub original_dst: Option<SocketAddr>,
    /// The URL, e.g. https://www.tiktok.com/ (https:// is decided as a CONNECT tunnel, http:// as a request).
    pub url: String,
}

/// Reads a DNS server: `IP` (port 53) or `IP:PORT`, IPv6 as `[IP]:PORT`.
pub fn parse_dns_server(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    match s.parse::<SocketAddr>() {
        Ok(a) if a.port() != 0 => Ok(a),
        Ok(_) => Err("port must be 1-65535".into()),
        Err(_) => Err(format!(
            "{s:?} is not an IP address or IP:PORT; write e.g. 10.0.0.53, 10.0.0.53:5353 or [fd00::53]:53 (names are not looked up)"
        )),
    }
}

fn parse_spent_arg(s: &str) -> Result<crate::policy::Spent, String> {
    crate::policy::budget::parse_spent(s)
}

fn parse_resolve(s: &str) -> Result<(String, IpAddr), String> {
    let (h, ip) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: write HOST=IP, e.g. www.example.com=127.0.0.1"))?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("{ip:?} is not an IP address"))?;
    let host = crate::policy::normalize_host(h).map_err(|e| e.to_string())?;
    Ok((host.to_string(), ip))
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(args),
        Command::Check(d) => check(d),
        Command::Explain(a) => explain(a),
        Command::Ca(c) => ca(c),
        Command::Test(d) => test(d),
        Command::Report(a) => match crate::report::run(&a) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("socialgate report: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Health(a) => crate::health::run(&a),
        Command::Simulate(a) => match crate::simulate::run(&a) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("socialgate simulate: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "socialgate", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Schema(a) => schema(&a),
        Command::Man { subcommand } => man(subcommand.as_deref()),
    }
}

/// Prints one policy file's JSON Schema, or writes them all into a directory.
fn schema(args: &SchemaArgs) -> ExitCode {
    use crate::policy::schema::SchemaFile;
    if let Some(file) = args.file {
        print!("{}", file.render());
        return ExitCode::SUCCESS;
    }
    let Some(dir) = &args.all else {
        return ExitCode::from(2);
    };
    for file in SchemaFile::ALL {
        let path = dir.join(file.schema_name());
        if let Err(e) = std::fs::write(&path, file.render()) {
            eprintln!("socialgate schema: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}

/// Prints socialgate(1), or socialgate-SUBCOMMAND(1).
fn man(subcommand: Option<&str>) -> ExitCode {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    cmd.build();
    let page = match subcommand {
        None => cmd,
        Some(name) => match cmd.find_subcommand(name) {
            Some(sub) => {
                let title = format!("socialgate-{}", sub.get_name());
                sub.clone().name(title)
            }
            None => {
                let known: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).collect();
                eprintln!(
                    "socialgate man: no subcommand {name:?}; the pages are: {}",
                    known.join(", ")
                );
                return ExitCode::from(2);
            }
        },
    };
    match clap_mangen::Man::new(page).render(&mut std::io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("socialgate man: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SOCIALGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn run(args: RunArgs) -> ExitCode {
    init_tracing();
    crate::limits::raise_and_report(args.max_connections);
    let log = match args.access_log.as_str() {
        "off" => None,
        "-" => Some(LogConfig {
            path: None,
            format: args.log_format,
            capacity: args.log_queue,
            mode: args.access_log_mode,
        }),
        p => Some(LogConfig {
            path: Some(PathBuf::from(p)),
            format: args.log_format,
            capacity: args.log_queue,
            mode: args.access_log_mode,
        }),
    };
    let upstream_proxy = match &args.upstream_proxy {
        None => None,
        Some(url) => {
            // Each entry was checked when the flags were read.
            let no_proxy = NoProxy::parse(&args.no_proxy).unwrap_or_default();
            let credentials = args.upstream_proxy_credentials.as_deref();
            match ParentConfig::new(url, credentials, no_proxy, args.upstream_proxy_dns) {
                Ok(p) => Some(p),
                Err(e) => {
                    eprintln!("socialgate: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let cfg = AppConfig {
        policy_dir: args.policy.clone(),
        listen: args.listen.clone(),
        transparent: args.transparent.clone(),
        log,
        proxy: ProxyConfig {
            header_read_timeout: Duration::from_secs(args.header_read_timeout),
            idle_timeout: Duration::from_secs(args.idle_timeout),
            connect_timeout: Duration::from_secs(args.connect_timeout),
            upstream_timeout: Duration::from_secs(args.upstream_timeout),
            body_idle_timeout: Duration::from_secs(args.body_idle_timeout),
            max_connections: args.max_connections,
            max_connections_per_client: args.max_connections_per_client,
            max_header_bytes: args.max_header_bytes,
            resolve: args.resolve.iter().cloned().collect::<HashMap<_, _>>(),
            dns: crate::proxy::dns::DnsConfig {
                servers: args.dns_server.clone(),
                max_in_flight: args.dns_max_in_flight,
            },
            upstream_proxy,
            ..ProxyConfig::default()
        },
        watch_interval: (args.watch_interval_ms > 0)
            .then(|| Duration::from_millis(args.watch_interval_ms)),
        drain: Duration::from_secs(args.drain_timeout),
        admin: match args.admin {
            Admin::Off => None,
            Admin::At(a) => Some(a),
        },
        pac_proxy: args.pac_proxy,
        pseudonym_key: args.pseudonym_key.clone(),
        inspection: args.ca.inspection(&args.upstream_ca),
        budget_state: (args.budget_state.as_os_str() != "off").then(|| args.budget_state.clone()),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("socialgate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        // Listen for SIGTERM/SIGINT before anything else, so a signal that
        // arrives during start-up is handled (drain) rather than fatal.
        let stop = shutdown_signal();
        let app = match App::start(cfg).await {
            Ok(app) => app,
            Err(StartError::Policy { dir, errors }) => {
                eprintln!("socialgate: the policy in {} has errors:\n{errors}", dir.display());
                eprintln!("fix them and start again; `socialgate check {}` lists them", dir.display());
                return ExitCode::from(2);
            }
            Err(StartError::Other(e)) => {
                eprintln!("socialgate: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        // Listening now; written before that is reported, so whoever waits
        // for the report finds the file.
        if let Some(path) = &args.pid_file {
            if let Err(e) = write_pid_file(path) {
                tracing::error!(path = %path.display(), error = %e, "cannot write the pid file; stopping");
                app.shutdown().await;
                return ExitCode::FAILURE;
            }
        }
        let policy = app.policy().load();
        if let Some(a) = app.admin_addr {
            tracing::info!(admin = %a, "admin endpoints: /metrics /healthz /readyz /proxy.pac, POST /reload");
        }
        if let Some(p) = &app.state.config.upstream_proxy {
            tracing::info!(parent = %p.address(), dns = ?p.dns, no_proxy = %p.no_proxy.entries().join(","), credentials = p.has_credentials(), "upstream proxy: admitted traffic leaves through the parent");
        }
        for a in &app.transparent_addrs {
            tracing::info!(transparent = %a, "transparent listening for redirected traffic");
        }
        for a in &app.proxy_addrs {
            tracing::info!(proxy = %a, policy = %policy.source.dir.display(), hash = %policy.source.hash, rules = policy.rules.len(), platforms = policy.platforms.len(), "socialgate listening");
        }
        drop(policy);
        crate::notify::ready("serving");
        stop.await;
        crate::notify::stopping();
        tracing::info!("shutting down: no new connections; draining in-flight requests and tunnels");
        let done = app.shutdown().await;
        if let Some(path) = &args.pid_file {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove the pid file");
            }
        }
        tracing::info!(
            connections = done.connections_at_stop,
            tunnels = done.tunnels_at_stop,
            drain_deadline_hit = done.deadline_hit,
            tunnels_cut = done.tunnels_cut,
            log_records = done.log_records,
            log_dropped = done.log_dropped,
            "socialgate stopped"
        );
        ExitCode::SUCCESS
    })
}

/// Writes our process id and a newline to `path`, through a temporary
/// file renamed into place, so a reader never sees a half-written id.
fn write_pid_file(path: &std::path::Path) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, format!("{}\n", std::process::id()))?;
    std::fs::rename(&tmp, path)
}

/// Registers the SIGTERM/SIGINT handlers now; the returned future
/// resolves on the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut t), Ok(mut i)) => {
                    tokio::select! {
                        _ = t.recv() => {},
                        _ = i.recv() => {},
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async move {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn check(d: CheckArgs) -> ExitCode {
    match load_dir(&d.dir) {
        Ok(p) => {
            if let Err(e) = d.files.inspection(&[]).setup(&p) {
                eprintln!("{e}");
                eprintln!("  hint: create the CA with `socialgate ca init --policy {}`, or name it with --ca-cert/--ca-key or inspection.ca_cert/ca_key", d.dir.display());
                eprintln!("1 error(s) in {}", d.dir.display());
                return ExitCode::from(2);
            }
            println!(
                "{}: ok ({} platforms, {} activity signatures, {} groups, {} rules, {} test cases; hash {})",
                d.dir.display(),
                p.platforms.len(),
                p.activities
                    .platforms
                    .iter()
                    .map(|x| x.signatures.len())
                    .sum::<usize>(),
                p.groups.len(),
                p.rules.len(),
                p.cases.len(),
                p.source.hash
            );
            for note in crate::policy::advice::advice(&p) {
                println!("{note}");
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{} error(s) in {}", errors.0.len(), d.dir.display());
            ExitCode::from(2)
        }
    }
}

fn ca(c: CaCommand) -> ExitCode {
    let (args, init) = match &c {
        CaCommand::Init(a) => (a, true),
        CaCommand::Show(a) => (a, false),
    };
    // The policy supplies the organisation and may name the files; without
    // a readable policy the flags' files and a generic subject are used.
    let policy = load_dir(&args.policy).ok();
    let files = args.files.inspection(&[]);
    let paths = match &policy {
        Some(p) => files.ca_for(p),
        None => files.ca.clone(),
    };
    let org = policy
        .as_ref()
        .and_then(|p| p.settings.organization.as_deref().map(str::to_string));
    let result = if init {
        crate::ca::init(&paths, org.as_deref())
    } else {
        crate::ca::show(&paths)
    };
    match result {
        Ok(info) => {
            if init {
                println!(
                    "created the company CA:\n  certificate {}\n  key         {} (mode 0600; keep it secret, back it up)",
                    paths.cert.display(),
                    paths.key.display()
                );
            } else {
                println!("certificate:  {}", paths.cert.display());
            }
            println!("{info}");
            if init {
                println!("next: make company devices trust the certificate (docs/tls-inspection.md), then add `inspect: true` to the rules whose HTTPS traffic is to be inspected");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("socialgate ca {}: {e}", if init { "init" } else { "show" });
            ExitCode::from(2)
        }
    }
}

fn explain(a: ExplainArgs) -> ExitCode {
    let policy = match load_dir(&a.policy) {
        Ok(p) => p,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    let (host, port, entry) = match parse_target(&a.url) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("socialgate explain: {e}");
            return ExitCode::from(2);
        }
    };
    let at = match a.at.as_deref().map(parse_time).transpose() {
        Ok(t) => t.unwrap_or_else(jiff::Timestamp::now),
        Err(e) => {
            eprintln!("socialgate explain: --at: {e}");
            return ExitCode::from(2);
        }
    };
    // Nothing spent today unless --spent says otherwise.
    let spent = a
        .spent
        .iter()
        .fold(crate::policy::Spent::default(), |t, s| {
            crate::policy::Spent {
                minutes: t.minutes.saturating_add(s.minutes),
                bytes: t.bytes.saturating_add(s.bytes),
            }
        });
    if a.sni.is_some() && entry != Entry::Connect {
        eprintln!("socialgate explain: --sni applies to https:// URLs (tunnels) only");
        return ExitCode::from(2);
    }
    let listeners: Vec<SocketAddr> = if a.listen.is_empty() {
        vec![
            SocketAddr::from(([127, 0, 0, 1], 3128)),
            SocketAddr::from(([127, 0, 0, 1], 9128)),
        ]
    } else {
        a.listen.clone()
    };
    // What the request does: seen on plain HTTP (and, once inspected, on
    // HTTPS); a tunnel shows no activity.
    let seen = match explain_request(&a) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("socialgate explain: {e}");
            return ExitCode::from(2);
        }
    };
    let found = (entry == Entry::Request).then(|| seen.classify(&policy, &host));
    let activity = found.as_ref().map(|c| c.activity);
    // The route and who resolves names, as the proxy would have them.
    let parent = a.upstream_proxy.as_deref().and_then(|url| {
        let no_proxy = NoProxy::parse(&a.no_proxy).unwrap_or_default();
        ParentConfig::new(url, None, no_proxy, a.upstream_proxy_dns).ok()
    });
    let parent_resolves = parent
        .as_ref()
        .is_some_and(|p| p.resolves(&host, a.original_dst.is_some()));
    // The proxy resolves a name only once the rules and the port allowed it.
    let before_dns = Facts {
        entry,
        client: a.client,
        user: a.user.as_deref(),
        host: &host,
        port,
        resolved: None,
        sni: None,
        listeners: &listeners,
        activity,
        resolved_by_parent: false,
        original: a.original_dst,
        acknowledged: None,
        hello: None,
        spent: None,
    };
    let refused_before_dns = admit(&policy, &before_dns, at).refuses();
    // Resolve as the proxy would: --resolve pins first, then the system resolver.
    let mut resolve_note = None;
    let resolved: Option<Vec<IpAddr>> = match &host {
        Host::Ip(_) => None,
        _ if refused_before_dns => {
            resolve_note = Some("not resolved: refused before the name is looked up".to_string());
            None
        }
        _ if parent_resolves => {
            resolve_note = Some("not resolved here: the parent proxy resolves it".to_string());
            None
        }
        _ if a.no_resolve => {
            resolve_note = Some("not resolved (--no-resolve)".to_string());
            None
        }
        Host::Name(n) | Host::Numeric(n) => {
            if let Some((_, ip)) = a.resolve.iter().find(|(h, _)| h == n) {
                Some(vec![*ip])
            } else {
                use std::net::ToSocketAddrs;
                match (n.as_str(), port).to_socket_addrs() {
                    Ok(addrs) => Some(addrs.map(|s| s.ip()).collect()),
                    Err(e) => {
                        resolve_note = Some(format!(
                            "cannot resolve {n}: {e} (the proxy would answer 502 upstream-resolve)"
                        ));
                        None
                    }
                }
            }
        }
    };
    // A browser sends the URL's host as the server name.
    let sni = match (&a.sni, entry, &host) {
        (Some(s), _, _) => Some(s.clone()),
        (None, Entry::Connect, Host::Name(n)) => Some(n.clone()),
        _ => None,
    };
    let facts = Facts {
        entry,
        client: a.client,
        user: a.user.as_deref(),
        host: &host,
        port,
        resolved: resolved.as_deref(),
        sni: sni.as_deref(),
        listeners: &listeners,
        activity,
        resolved_by_parent: parent_resolves,
        original: a.original_dst,
        acknowledged: a.acknowledged.then_some(true),
        hello: Some(crate::policy::TlsHello::BROWSER).filter(|_| entry == Entry::Connect),
        spent: Some(crate::policy::SpentFact::Known(spent)),
    };
    let mut trace = Vec::new();
    let adm = admit_traced(&policy, &facts, at, &mut trace);
    let d = &adm.decision;
    let groups: Vec<&str> = d.groups.iter().map(|g| &**g).collect();
    println!(
        "client:   {}{}",
        a.client,
        a.user
            .as_deref()
            .map(|u| format!(" (user {u})"))
            .unwrap_or_default()
    );
    println!(
        "groups:   {}",
        if groups.is_empty() {
            "(none)".to_string()
        } else {
            groups.join(", ")
        }
    );
    let how = match entry {
        Entry::Connect => "CONNECT tunnel",
        Entry::Request => "plain-HTTP request",
    };
    println!("target:   {host}:{port} ({how})");
    match (&resolved, &resolve_note) {
        (Some(addrs), _) => println!(
            "resolved: {}",
            addrs
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (None, Some(note)) => println!("resolved: {note}"),
        (None, None) => {}
    }
    if let Some(sni) = &a.sni {
        println!("sni:      {sni}");
    }
    if let Some(o) = &a.original_dst {
        println!("original: {o} (a redirected connection, transparent mode)");
    }
    if let Some(p) = &parent {
        let via = p.carries(&host, resolved.as_deref());
        println!(
            "route:    {}",
            if via {
                format!("through the parent proxy {}", p.address())
            } else {
                "direct (--no-proxy)".to_string()
            }
        );
    }
    println!(
        "at:       {}",
        at.to_zoned_datetime(policy.settings.timezone.clone())
    );
    println!(
        "platform: {}",
        match (&d.platform, &d.class, &d.category) {
            (Some(p), Some(c), Some(cat)) => format!("{p} ({}, {cat})", c.as_str()),
            _ => "(none)".into(),
        }
    );
    match &found {
        Some(c) => println!(
            "activity: {}{}",
            c.activity.as_str(),
            c.signature
                .as_deref()
                .map(|s| format!(" (signature {s})"))
                .unwrap_or_else(|| " (no signature matched)".into())
        ),
        None => println!("activity: not visible in a tunnel that is not inspected"),
    }
    println!("rules and stages considered:");
    for step in &trace {
        println!(
            "  {} {:<28} {}",
            if step.matched { "=>" } else { "  " },
            step.rule,
            step.note
        );
    }
    println!(
        "decision: {} ({}) by {}, reason {}, stage {}{}",
        d.action.as_str(),
        d.mode.as_str(),
        d.rule,
        d.reason.as_str(),
        adm.stage.as_str(),
        match (d.mode, d.action) {
            (crate::policy::Mode::Report, crate::policy::Action::Block) =>
                " — report mode: traffic would pass",
            (crate::policy::Mode::Report, crate::policy::Action::Warn) =>
                " — report mode: traffic passes without a warning",
            _ => "",
        }
    );
    if let Some(w) = adm.warning {
        use crate::policy::Warning;
        let remember = crate::policy::compile::human_duration(policy.warn.remember);
        let text = match w {
            Warning::Unshown => "not shown: no page can be shown inside an HTTPS tunnel that is not inspected; the tunnel passes (recorded warn: unshown)".to_string(),
            Warning::Unchecked | Warning::Due => format!("shown until the person continues: page loads get the warning page with a Continue link, other requests a 403; a Continue is remembered for {remember} (warn.remember) for the platform's every domain. With --acknowledged: passes"),
            Warning::Acknowledged => format!("acknowledged (--acknowledged): the person continued within {remember}, so the request passes"),
        };
        println!("warning:  {text}");
    }
    if let Some(view) = &d.budget {
        println!(
            "budget:   {}",
            explain_budget(&policy, view, !a.spent.is_empty())
        );
    }
    if let Some(m) = &d.message {
        println!("message:  {m}");
    }
    if let Some(r) = &d.activity_unseen {
        println!(
            "note:     rule {r} is about activities, which a tunnel does not show; \
             the site-level rules decided (give the rule `inspect: true` to see them)"
        );
    }
    let i = &adm.inspect;
    println!(
        "inspect:  {} ({}: {}){}",
        if i.inspect { "yes" } else { "no" },
        i.why.as_str(),
        i.why.explain(),
        if i.inspect && d.refuses() {
            " — the refusal page is shown inside the decrypted tunnel"
        } else if i.inspect {
            " — unless the client refused socialgate's certificate for this host recently (inspection.learn_pinned)"
        } else {
            ""
        }
    );
    ExitCode::SUCCESS
}

/// What `explain` says about the deciding rule's budget.
fn explain_budget(
    policy: &crate::policy::Policy,
    view: &crate::policy::BudgetView,
    given: bool,
) -> String {
    use crate::policy::budget::{megabytes_words, minutes_words};
    use crate::policy::BudgetState;
    let rule = &policy.rules[view.rule as usize];
    let Some(b) = &rule.budget else {
        return String::new();
    };
    let renews = |t: jiff::Timestamp| {
        t.to_zoned_datetime(b.tz.clone())
            .strftime("%Y-%m-%d %H:%M %Z")
            .to_string()
    };
    let head = format!("{} a day per person ({} days)", b.describe(), b.tz_name);
    let assumed = if given {
        ""
    } else {
        " (assumed nothing spent today; --spent 25m or --spent 300MB says otherwise)"
    };
    match view.state {
        BudgetState::Left {
            minutes,
            bytes,
            renews: at,
        } => {
            let mut left = Vec::new();
            if let Some(m) = minutes {
                left.push(minutes_words(m));
            }
            if let Some(v) = bytes {
                left.push(megabytes_words(v));
            }
            format!(
                "{head}: {} left{assumed}, allowed and counted; once spent: {}; renews {}",
                left.join(" and "),
                rule.action.as_str(),
                renews(at)
            )
        }
        BudgetState::Exhausted { renews: at, .. } => format!(
            "{head}: used up{assumed}, so the rule's action applies ({}); open tunnels and WebSockets under it are closed when it runs out; renews {}",
            rule.action.as_str(),
            renews(at)
        ),
        BudgetState::Unavailable => format!("{head}: the state store cannot be reached, so the budget is not applied (fail open)"),
        BudgetState::Unchecked => format!("{head}: looked up by the proxy"),
    }
}

/// The request `explain` looks at: its method, headers and body.
fn explain_request(a: &ExplainArgs) -> Result<crate::policy::cases::SeenRequest, String> {
    let method = http::Method::from_bytes(a.method.as_bytes())
        .map_err(|_| format!("--method: {:?} is not an HTTP method", a.method))?;
    let mut headers = http::HeaderMap::new();
    for h in &a.headers {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| format!("--header {h:?}: write `Name: value`"))?;
        let k = http::HeaderName::from_bytes(k.trim().as_bytes())
            .map_err(|_| format!("--header {h:?}: {:?} is not a header name", k.trim()))?;
        let v = http::HeaderValue::from_str(v.trim())
            .map_err(|_| format!("--header {h:?}: the value is not a valid header value"))?;
        headers.append(k, v);
    }
    let uri: http::Uri = a.url.parse().map_err(|e| format!("{:?}: {e}", a.url))?;
    Ok(crate::policy::cases::SeenRequest {
        method,
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers,
        body: a.body.as_ref().map(|b| b.as_bytes().to_vec()),
    })
}

fn test(d: DirArg) -> ExitCode {
    let policy = match load_dir(&d.dir) {
        Ok(p) => p,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    if policy.cases.is_empty() {
        eprintln!(
            "{}: no test cases; add them to tests.yaml (see docs/policy.md)",
            d.dir.display()
        );
        return ExitCode::from(2);
    }
    let outcomes = run_cases(&policy, jiff::Timestamp::now());
    let mut failed = 0;
    for o in &outcomes {
        if o.passed {
            println!("ok    {}", o.name);
        } else {
            failed += 1;
            println!("FAIL  {}", o.name);
            for m in &o.mismatches {
                println!("        {m}");
            }
        }
    }
    println!("{} passed, {} failed", outcomes.len() - failed, failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
