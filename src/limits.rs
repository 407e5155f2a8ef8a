//! Process limits socialgate adjusts when it starts.
//!
//! Every client connection is a file descriptor, and a tunnel or a
//! forwarded request holds a second one upstream, so the open-file limit
//! (`RLIMIT_NOFILE`) bounds how many connections can really be served.
//! Distributions give services a soft limit of 1024 and a much higher hard
//! limit; socialgate raises the soft limit to the hard one, as nginx
//! (`worker_rlimit_nofile`) and Squid do, and warns when even that is below
//! what `--max-connections` needs. When descriptors run out anyway, accepts
//! fail with EMFILE; the listeners then wait 50 ms between tries instead of
//! spinning (see `proxy::ACCEPT_BACKOFF`).

/// The open-file limit before and after [`raise_open_files`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit socialgate started with.
    pub before: u64,
    /// The soft limit now.
    pub now: u64,
    /// The hard limit (only root can raise it).
    pub hard: u64,
}

/// Descriptors `max_connections` client connections may need: each one
/// and its upstream connection (a tunnel holds both), plus room for the
/// listeners, the access log, idle pooled upstream connections and DNS.
pub fn open_files_needed(max_connections: usize) -> u64 {
    (max_connections as u64)
        .saturating_mul(2)
        .saturating_add(1024)
}

/// Raises the soft open-file limit to the hard limit.
#[cfg(unix)]
pub fn raise_open_files() -> std::io::Result<OpenFiles> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    let hard = lim.rlim_max;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(OpenFiles {
        before,
        now: hard.max(before),
        hard,
    })
}

/// Raises the limit and says what it did: a warning when the limit is
/// below what `max_connections` needs, with how to raise it.
pub fn raise_and_report(max_connections: usize) {
    let needed = open_files_needed(max_connections);
    #[cfg(unix)]
    match raise_open_files() {
        Ok(f) if f.now < needed => tracing::warn!(
            limit = f.now,
            needed,
            max_connections,
            "the open-file limit ({}) is below what --max-connections {} needs (about {}); clients beyond it \
             are refused by the kernel or wait; raise it (systemd: LimitNOFILE=; shell: ulimit -n; containers: --ulimit nofile=) \
             or lower --max-connections",
            f.now, max_connections, needed
        ),
        Ok(f) if f.now > f.before => {
            tracing::info!(from = f.before, to = f.now, "raised the open-file limit")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the open-file limit"),
    }
    #[cfg(not(unix))]
    let _ = needed;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_connection_may_need_two_descriptors_plus_a_margin() {
        assert_eq!(open_files_needed(10_000), 21_024);
        assert_eq!(open_files_needed(0), 1024);
        assert_eq!(open_files_needed(usize::MAX), u64::MAX);
    }
}
