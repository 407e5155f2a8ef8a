//! Access requests: "I need this for work", sent from a block page.
//!
//! A rule with `request_access: true` has its block page offer a one-line
//! form that posts to socialgate's own name (see `proxy::me`). The form
//! carries a token made like a warn rule's Continue link
//! ([`crate::warn::WarnKey::sign`]): HMAC-signed, bound to the person, the
//! rule and the platform, short-lived, and made for the own name and the
//! path [`REQUEST_PATH`] + the site, so a Continue link cannot be used as
//! one nor one as a Continue link. The request is recorded as one
//! `access-request` record in the access log (pseudonymised like every
//! record): the log is where it is never lost. Optionally it is also
//! POSTed as JSON to `requests.webhook`, in the background, with retries
//! and back-off ([`Webhook`]); a failure is logged and counted, never
//! shown to the person as lost.
//!
//! The reason text is the person's: it is cut to [`MAX_REASON_CHARS`]
//! characters, its control characters become spaces and its runs of
//! whitespace one space ([`clean_reason`]); it is escaped wherever it is
//! shown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;

/// The path on the own name that access requests are POSTed to; the site
/// follows it in the token's path (`/request-access/www.tiktok.com`).
pub const REQUEST_PATH: &str = "/request-access";

/// Where a block page shown inside an inspected tunnel posts its form: a
/// path on the blocked site's own origin, which socialgate answers itself
/// there, so that the browser sends the form over the same TLS session
/// instead of from an HTTPS page to an `http://` address (which browsers
/// warn about before sending). Only a POST to exactly this path is taken.
pub const INSPECTED_REQUEST_PATH: &str = "/.well-known/socialgate/request-access";

/// The longest reason kept, in characters.
pub const MAX_REASON_CHARS: usize = 200;

/// The largest form body read (the token and a reason fit with room).
pub const MAX_FORM_BYTES: usize = 8 * 1024;

/// Webhook posts waiting or in flight at once; more are counted as failed
/// (the access log still has them).
pub const MAX_PENDING: usize = 1_000;

/// Attempts per request (the first and the retries).
pub const ATTEMPTS: u32 = 5;

/// Each attempt's time limit.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// A person's reason as it is kept: control characters become spaces,
/// runs of whitespace one space, trimmed, at most [`MAX_REASON_CHARS`]
/// characters. `None` when nothing is left.
pub fn clean_reason(raw: &str) -> Option<String> {
    let spaced: String = raw
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let words: Vec<&str> = spaced.split_whitespace().collect();
    let joined = words.join(" ");
    let cut: String = joined.chars().take(MAX_REASON_CHARS).collect();
    let cut = cut.trim().to_string();
    (!cut.is_empty()).then_some(cut)
}

/// The token's path for a request about `site`.
pub fn token_path(site: &str) -> String {
    format!("{REQUEST_PATH}/{site}")
}

/// The site a token's path names, if it is an access request's path.
pub fn site_of(path: &str) -> Option<&str> {
    path.strip_prefix(REQUEST_PATH)?
        .strip_prefix('/')
        .filter(|s| !s.is_empty())
}

/// The fields of a form body, by name (the first of each wins).
pub fn form_field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Posts access requests to the webhook in the background.
pub struct Webhook {
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    /// The wait before the first retry; each later one waits four times
    /// longer (1 s, 4 s, 16 s, 64 s by default).
    first_backoff: Duration,
    pending: Arc<AtomicUsize>,
}

impl Webhook {
    pub fn new(metrics: Arc<Metrics>, first_backoff: Duration) -> Webhook {
        // Never through a proxy (socialgate itself, or one from the
        // environment), never following redirects: the URL is the admin's.
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(ATTEMPT_TIMEOUT)
            .user_agent(concat!("socialgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Webhook {
            client,
            metrics,
            first_backoff,
            pending: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Posts `body` (JSON) to `url` in the background: retried with
    /// back-off while the answer is not 2xx; the outcome is counted
    /// (`delivered` or `failed`), and a failure is logged with the last
    /// problem (never the URL, which may carry a secret).
    pub fn post(&self, url: http::Uri, body: serde_json::Value) {
        if self.pending.fetch_add(1, Ordering::Relaxed) >= MAX_PENDING {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            self.metrics.access_request_webhook("failed");
            tracing::warn!(
                pending = MAX_PENDING,
                "access request not posted to requests.webhook: too many posts waiting (it is in the access log)"
            );
            return;
        }
        let client = self.client.clone();
        let metrics = self.metrics.clone();
        let pending = self.pending.clone();
        let mut backoff = self.first_backoff;
        tokio::spawn(async move {
            let body = body.to_string();
            let mut last = String::new();
            for attempt in 1..=ATTEMPTS {
                let sent = client
                    .post(url.to_string())
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => {
                        metrics.access_request_webhook("delivered");
                        pending.fetch_sub(1, Ordering::Relaxed);
                        return;
                    }
                    Ok(r) => last = format!("it answered {}", r.status()),
                    Err(e) if e.is_timeout() => last = "no answer in time".into(),
                    Err(e) if e.is_connect() => last = "it could not be reached".into(),
                    Err(_) => last = "the request failed".into(),
                }
                if attempt < ATTEMPTS {
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(4);
                }
            }
            metrics.access_request_webhook("failed");
            pending.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(
                attempts = ATTEMPTS,
                problem = %last,
                "access request not posted to requests.webhook after every retry (it is in the access log); check the URL and that the receiver answers 2xx"
            );
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_one_bounded_line_without_control_characters() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "  I run the brand account  ",
                Some("I run the brand account"),
            ),
            ("line one\r\nline two\tend", Some("line one line two end")),
            ("\u{1b}[31mred\u{7}", Some("[31mred")),
            ("   \n\t ", None),
            ("", None),
            ("<script>x</script>", Some("<script>x</script>")),
        ];
        for (raw, want) in cases {
            assert_eq!(clean_reason(raw).as_deref(), *want, "{raw:?}");
        }
        let long = "é".repeat(500);
        assert_eq!(
            clean_reason(&long).unwrap().chars().count(),
            MAX_REASON_CHARS
        );
    }

    #[test]
    fn token_paths_name_the_site() {
        assert_eq!(
            token_path("www.tiktok.com"),
            "/request-access/www.tiktok.com"
        );
        assert_eq!(
            site_of("/request-access/www.tiktok.com"),
            Some("www.tiktok.com")
        );
        assert_eq!(site_of("/request-access/"), None);
        assert_eq!(site_of("/hello"), None);
        assert_eq!(site_of("/request-accessx/a"), None);
    }
}
