//! Bodies stream through the proxy in both directions, never buffered whole.

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::support::*;

#[tokio::test]
async fn delivers_response_chunks_as_the_origin_produces_them() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let started = Instant::now();
    let resp = within(
        proxy
            .client()
            .get(format!("http://example.org:{}/stream", origin.port()))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let first = within(body.next()).await.expect("a first chunk").unwrap();
    let first_at = started.elapsed();
    assert!(first.starts_with(b"chunk-0"), "{first:?}");
    let mut all = first.to_vec();
    while let Some(chunk) = within(body.next()).await {
        all.extend_from_slice(&chunk.unwrap());
    }
    let last_at = started.elapsed();
    assert_eq!(
        String::from_utf8(all).unwrap(),
        "chunk-0\nchunk-1\nchunk-2\nchunk-3\nchunk-4\n"
    );
    // The origin sends the last chunk 400 ms after the first one.
    assert!(last_at >= Duration::from_millis(390), "{last_at:?}");
    assert!(
        first_at + Duration::from_millis(250) < last_at,
        "first chunk at {first_at:?}, last at {last_at:?}: the response was buffered"
    );
}

#[tokio::test]
async fn streams_a_chunked_request_body_upstream_while_it_is_being_sent() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let stream = futures_util::stream::poll_fn({
        let mut rx = rx;
        move |cx| rx.poll_recv(cx)
    });
    let client = proxy.client();
    let url = format!("http://example.org:{}/echo", origin.port());
    tx.send(Ok(b"part-one;".to_vec())).await.unwrap();
    let resp = within(
        client
            .post(url)
            .body(reqwest::Body::wrap_stream(stream))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().get("content-length").is_none(),
        "a streamed body has no length"
    );
    let mut body = resp.bytes_stream();
    // The echo of the first part arrives while the request body is still open.
    let first = within(body.next())
        .await
        .expect("echo of part one")
        .unwrap();
    assert_eq!(&first[..], b"part-one;");
    tx.send(Ok(b"part-two;".to_vec())).await.unwrap();
    tx.send(Ok(b"part-three".to_vec())).await.unwrap();
    drop(tx);
    let mut rest = Vec::new();
    while let Some(chunk) = within(body.next()).await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(String::from_utf8(rest).unwrap(), "part-two;part-three");
    let log = proxy.log_lines(1).await;
    assert_eq!(log[0]["method"], "POST");
    assert_eq!(log[0]["activity"], "write");
    assert_eq!(log[0]["bytes_up"], 28);
    assert_eq!(log[0]["bytes_down"], 28);
}

#[tokio::test]
async fn carries_a_one_mebibyte_body_in_each_direction() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let client = proxy.client();
    let big = within(
        client
            .get(format!("http://example.org:{}/big", origin.port()))
            .send(),
    )
    .await
    .unwrap()
    .bytes()
    .await
    .unwrap();
    assert_eq!(big.len(), 1 << 20);
    assert!(big.iter().all(|b| *b == b'x'));

    let upload: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    let echoed = within(
        client
            .post(format!("http://example.org:{}/echo", origin.port()))
            .body(upload.clone())
            .send(),
    )
    .await
    .unwrap()
    .bytes()
    .await
    .unwrap();
    assert!(
        echoed[..] == upload[..],
        "the 1 MiB upload came back changed ({} bytes)",
        echoed.len()
    );
    let log = proxy.log_lines(2).await;
    assert_eq!(log[0]["bytes_down"], 1 << 20);
    assert_eq!(log[1]["bytes_up"], 1 << 20);
    assert_eq!(log[1]["bytes_down"], 1 << 20);
}
