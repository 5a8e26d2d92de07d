//! GET and POST take the same query text: up to `limits.max_query_length`
//! both answer, one byte more both get the same Prometheus error, even
//! where the GET's URL-encoded target is far past the 65,534 bytes the
//! HTTP stack parses; a target past `limits.max_body_bytes` gets a
//! Prometheus-format 400, not a bare 414.

mod ops_support;

use std::time::Duration;

use ops_support::{json, Promfed};

/// `vector(1)` and a comment of `é` (two bytes, six URL-encoded): a
/// query of exactly `len` bytes.
fn query_of(len: usize) -> String {
    let head = "vector(1) #";
    let pad = len - head.len();
    format!("{head}{}{}", "é".repeat(pad / 2), "x".repeat(pad % 2))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .expect("client")
}

/// Reads one HTTP/1.1 answer (Content-Length or chunked) from `s`.
async fn read_answer(s: &mut tokio::io::BufReader<tokio::net::TcpStream>) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut line = String::new();
    s.read_line(&mut line).await.expect("status line");
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {line:?}"));
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        s.read_line(&mut line).await.expect("header");
        let h = line.trim_end().to_ascii_lowercase();
        if h.is_empty() {
            break;
        }
        if let Some(v) = h.strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        }
        if h.starts_with("transfer-encoding:") && h.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            s.read_line(&mut line).await.expect("chunk size");
            let n = usize::from_str_radix(line.trim(), 16).expect("chunk size");
            let mut chunk = vec![0u8; n + 2];
            s.read_exact(&mut chunk).await.expect("chunk");
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        body.resize(length.expect("content-length"), 0);
        s.read_exact(&mut body).await.expect("body");
    }
    (status, body)
}

/// GETs the query on a raw connection (no HTTP client builds a URI over
/// 65,534 bytes) and then, on the same kept-alive connection, `then`.
async fn by_get_then(
    p: &Promfed,
    query: &str,
    then: Option<&str>,
) -> Vec<(u16, serde_json::Value)> {
    use tokio::io::AsyncWriteExt;
    let stream = tokio::net::TcpStream::connect(&p.addr)
        .await
        .expect("connect");
    let mut s = tokio::io::BufReader::new(stream);
    let mut out = Vec::new();
    for q in std::iter::once(query).chain(then) {
        let target: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", q)
            .append_pair("time", "1000")
            .finish();
        let req = format!("GET /api/v1/query?{target} HTTP/1.1\r\nhost: promfed\r\n\r\n");
        s.get_mut().write_all(req.as_bytes()).await.expect("send");
        let (status, body) = read_answer(&mut s).await;
        let body = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)));
        out.push((status, body));
    }
    out
}

async fn by_get(p: &Promfed, query: &str) -> (u16, serde_json::Value) {
    by_get_then(p, query, None).await.remove(0)
}

async fn by_post(p: &Promfed, query: &str) -> (u16, serde_json::Value) {
    let r = client()
        .post(p.url("/api/v1/query"))
        .form(&[("query", query), ("time", "1000")])
        .send()
        .await
        .expect("POST answered");
    json(r).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_post_take_the_same_query_length() {
    let p = Promfed::start(
        "query-length",
        "backends:\n  - name: k8s-1\n    url: http://127.0.0.1:1\nlimits:\n  max_body_bytes: 1048576\n",
    );
    // The default limit, 131072 bytes: URL-encoded, the GET's target is
    // about 384 KiB, six times what hyper's URI holds.
    let at_limit = query_of(131_072);
    let (get_status, get_body) = by_get(&p, &at_limit).await;
    let (post_status, post_body) = by_post(&p, &at_limit).await;
    assert_eq!(post_status, 200, "{post_body}");
    assert_eq!(get_status, 200, "{get_body}");
    assert_eq!(get_body, post_body);
    assert_eq!(get_body["data"]["result"][0]["value"][1], "1");
    // One byte more: the same error both ways.
    let over = query_of(131_073);
    let (get_status, get_body) = by_get(&p, &over).await;
    let (post_status, post_body) = by_post(&p, &over).await;
    ops_support::assert_error(
        post_status,
        &post_body,
        400,
        "bad_data",
        "query is 131073 bytes long",
    );
    assert_eq!((get_status, &get_body), (post_status, &post_body));
    // Keep-alive: a short GET after a long one on the same connection
    // still answers (the next request's line is read afresh).
    let answers = by_get_then(&p, &at_limit, Some("vector(2)")).await;
    assert_eq!(answers[0].0, 200, "{}", answers[0].1);
    assert_eq!(answers[1].0, 200, "{}", answers[1].1);
    assert_eq!(answers[1].1["data"]["result"][0]["value"][1], "2");
    // Past max_body_bytes (1 MiB): a Prometheus-format 400, as a POST body
    // past it gets, not a bare 414.
    let huge = query_of(400_000);
    let (get_status, get_body) = by_get(&p, &huge).await;
    ops_support::assert_error(
        get_status,
        &get_body,
        400,
        "bad_data",
        "limits.max_body_bytes",
    );
    let (post_status, post_body) = by_post(&p, &"x".repeat(1_100_000)).await;
    assert_eq!(post_status, 400, "{post_body}");
    assert_eq!(post_body["errorType"], "bad_data");
    let r = client()
        .get(p.url("/-/healthy"))
        .send()
        .await
        .expect("alive");
    assert_eq!(r.status().as_u16(), 200);
}
