//! Instructions per activity classification, for `valgrind --tool=callgrind`
//! (which counts instructions whatever else the machine is doing):
//!
//! ```sh
//! cargo build --release --example activity_cost
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!   --toggle-collect='*Signatures*classify*' target/release/examples/activity_cost x_post
//! callgrind_annotate /tmp/cg.out | head -20   # total / 100,000 = per request
//! ```
//!
//! The argument names one case of `benches/activity.rs`; each runs 100,000 times.

use std::hint::black_box;
use std::path::Path;

use http::{HeaderMap, Method};
use socialgate::policy::activity::{Body, Seen};
use socialgate::policy::load_dir;

fn main() {
    let case = std::env::args().nth(1).unwrap_or_else(|| "x_post".into());
    let policy = load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))
        .expect("the shipped policy compiles");
    let mut headers = HeaderMap::new();
    let body: &[u8] = br#"{"operationName":"GetSubredditInfo","variables":{"name":"rust"}}"#;
    let (method, host, path, query, b) = match case.as_str() {
        "x_post" => (Method::POST, "x.com", "/i/api/graphql/oB-5XsHNAbjvARJEc8CZFw/CreateTweet", None, Body::NotYet),
        "linkedin_get_feed" => (Method::GET, "www.linkedin.com", "/feed/", None, Body::None),
        "linkedin_graphql_query" => (Method::POST, "www.linkedin.com", "/voyager/api/graphql", Some("action=execute&queryId=voyagerContentcreationDashShares.279996efa5064c01775d5aff003d9377"), Body::NotYet),
        "facebook_header_op" => {
            headers.insert("x-fb-friendly-name", "CometNewsFeedPaginationQuery".parse().unwrap());
            (Method::POST, "www.facebook.com", "/api/graphql/", None, Body::NotYet)
        }
        "youtube_read_post" => (Method::POST, "www.youtube.com", "/youtubei/v1/browse", Some("prettyPrint=false"), Body::NotYet),
        "reddit_json_body" => {
            headers.insert(http::header::CONTENT_TYPE, "application/json".parse().unwrap());
            (Method::POST, "www.reddit.com", "/svc/shreddit/graphql", None, Body::Peeked { bytes: body, complete: true })
        }
        "not_a_platform" => (Method::POST, "intranet.example.com", "/form", None, Body::NotYet),
        other => panic!("unknown case {other:?}"),
    };
    let platform = policy.domains.lookup(host).map(|(_, hit)| hit.platform);
    for _ in 0..100_000 {
        let seen = Seen {
            method: &method,
            host,
            path: black_box(path),
            query,
            headers: &headers,
            body: b,
        };
        black_box(
            policy
                .activities
                .classify(black_box(platform), black_box(&seen)),
        );
    }
}
