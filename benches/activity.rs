//! Activity matching with the shipped signatures: target under 1 µs per
//! request. Run with `cargo bench --bench activity`.
//!
//! Each case is one request as the proxy sees it: the platform lookup, the
//! platform's path set, and the signatures whose path matched.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, Method};
use socialgate::policy::activity::{Body, Seen};
use socialgate::policy::load_dir;

/// Name, method, host, path, query, headers, body.
type Case<'a> = (
    &'a str,
    Method,
    &'a str,
    &'a str,
    Option<&'a str>,
    &'a HeaderMap,
    Body<'a>,
);

fn bench(c: &mut Criterion) {
    let policy = load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))
        .expect("the shipped policy compiles");
    let json: HeaderMap = [(
        http::header::CONTENT_TYPE,
        "application/json".parse().unwrap(),
    )]
    .into_iter()
    .collect();
    let fb: HeaderMap = [(
        http::HeaderName::from_static("x-fb-friendly-name"),
        "CometNewsFeedPaginationQuery".parse().unwrap(),
    )]
    .into_iter()
    .collect();
    let empty = HeaderMap::new();
    let body = br#"{"operationName":"GetSubredditInfo","variables":{"name":"rust"}}"#;
    let cases: [Case; 7] = [
        ("x_post", Method::POST, "x.com", "/i/api/graphql/oB-5XsHNAbjvARJEc8CZFw/CreateTweet", None, &empty, Body::NotYet),
        ("linkedin_get_feed", Method::GET, "www.linkedin.com", "/feed/", None, &empty, Body::None),
        ("linkedin_graphql_query", Method::POST, "www.linkedin.com", "/voyager/api/graphql", Some("action=execute&queryId=voyagerContentcreationDashShares.279996efa5064c01775d5aff003d9377"), &empty, Body::NotYet),
        ("facebook_header_op", Method::POST, "www.facebook.com", "/api/graphql/", None, &fb, Body::NotYet),
        ("youtube_read_post", Method::POST, "www.youtube.com", "/youtubei/v1/browse", Some("prettyPrint=false"), &empty, Body::NotYet),
        ("reddit_json_body", Method::POST, "www.reddit.com", "/svc/shreddit/graphql", None, &json, Body::Peeked { bytes: body, complete: true }),
        ("not_a_platform", Method::POST, "intranet.example.com", "/form", None, &empty, Body::NotYet),
    ];
    let mut group = c.benchmark_group("activity_shipped_signatures");
    for (name, method, host, path, query, headers, body) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| {
                let platform = policy
                    .domains
                    .lookup(black_box(host))
                    .map(|(_, hit)| hit.platform);
                let seen = Seen {
                    method,
                    host,
                    path: black_box(path),
                    query: *query,
                    headers,
                    body: *body,
                };
                policy.activities.classify(platform, black_box(&seen))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
