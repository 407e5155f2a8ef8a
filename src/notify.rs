//! Telling the service manager how the process is doing (systemd's
//! `sd_notify` protocol, for `Type=notify` units).
//!
//! `READY=1` once the listeners are bound and the policy is loaded,
//! `RELOADING=1` and `READY=1` around each policy reload, `STOPPING=1` when
//! a graceful shutdown starts, and `WATCHDOG=1` at half the interval
//! systemd asks for (`WatchdogSec=`, passed as `WATCHDOG_USEC`). Without
//! `NOTIFY_SOCKET` in the environment every function here does nothing.
//!
//! It must not decide anything or fail the caller: a message that cannot be
//! sent is logged at debug level and otherwise ignored, because the proxy
//! serves just the same without a service manager listening.

use std::time::Duration;

use sd_notify::NotifyState;

/// Sends `states`; never unsets `NOTIFY_SOCKET` (changing the environment
/// of a multi-threaded process is unsound), so later messages still go out.
fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!(error = %e, "cannot notify the service manager");
    }
}

/// Listeners bound and policy loaded: the unit becomes active. Starts the
/// watchdog pings if the service manager asked for them; call it from
/// inside the tokio runtime.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
    if let Some(every) = watchdog_interval() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                send(&[NotifyState::Watchdog]);
            }
        });
    }
}

/// A policy reload is starting. `MONOTONIC_USEC` lets `Type=notify-reload`
/// units match it to their own reload request.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// A reload attempt ended (whatever its result: the old policy keeps
/// serving on failure, so the service is ready either way).
pub fn reloaded(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A graceful shutdown has started.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

/// Half of `WATCHDOG_USEC`, when it is meant for this process.
fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    (sd_notify::watchdog_enabled(false, &mut usec) && usec > 0)
        .then(|| Duration::from_micros(usec / 2))
}
