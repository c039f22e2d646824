//! Slow, idle and hostile clients on real sockets: the header, body and idle
//! timeouts, the connection cap, the early 413 and the shutdown grace.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::database::{settings_with_database, Backend, TestDatabase};
use crate::helpers::{spawn_app_with, test_settings, TestApp};

/// Longest any single wait in these tests may take.
const PATIENCE: Duration = Duration::from_secs(5);

/// A response read off a raw socket.
struct RawResponse {
    status: u16,
    /// Header lines, lower-cased.
    head: String,
    body: Value,
}

async fn connect(app: &TestApp) -> TcpStream {
    let address = app.address.trim_start_matches("http://");
    TcpStream::connect(address).await.expect("connect")
}

/// Reads one response with a Content-Length body; `None` if the server
/// closes the connection first.
async fn read_response(stream: &mut TcpStream) -> Option<RawResponse> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let read_all = async {
        loop {
            if let Some(response) = parse_response(&received) {
                return Some(response);
            }
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    };
    tokio::time::timeout(PATIENCE, read_all)
        .await
        .expect("a response or a close within the patience")
}

fn parse_response(received: &[u8]) -> Option<RawResponse> {
    let text = String::from_utf8_lossy(received);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let head = head.to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))?
        .trim()
        .parse()
        .ok()?;
    if body.len() < length {
        return None;
    }
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some(RawResponse {
        status,
        head,
        body: serde_json::from_str(&body[..length]).unwrap_or(Value::Null),
    })
}

/// Waits for the server to close `stream`; the time it took, or `None` if
/// it is still open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    let closed = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(within, closed)
        .await
        .ok()
        .map(|()| started.elapsed())
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: candor\r\n\r\n";

#[tokio::test]
async fn a_partial_request_head_is_closed_after_the_header_timeout() {
    let mut settings = test_settings();
    settings.connections.header_timeout = Duration::from_millis(300);
    let app = spawn_app_with(settings).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"POST /v1/classify HTTP/1.1\r\nHost: candor\r\nContent-Ty")
        .await
        .unwrap();
    let took = closed_within(&mut stream, PATIENCE)
        .await
        .expect("the connection is closed");
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"candor_connections_timed_out_total{waiting_for="head"} 1"#),
        "{metrics}"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_partial_body_gets_408_after_the_body_timeout_and_the_connection_closes() {
    let mut settings = test_settings();
    settings.connections.body_timeout = Duration::from_millis(300);
    let app = spawn_app_with(settings).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"POST /v1/classify HTTP/1.1\r\nHost: candor\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"inputs\": ")
        .await
        .unwrap();
    let started = Instant::now();
    let response = read_response(&mut stream).await.expect("a 408");
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(response.status, 408);
    assert_eq!(response.body["type"], "body_timeout");
    assert!(
        response.head.contains("connection: close"),
        "{}",
        response.head
    );
    assert!(closed_within(&mut stream, PATIENCE).await.is_some());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_body_the_client_stops_sending_is_a_400_not_a_413() {
    let app = spawn_app_with(test_settings()).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"POST /v1/classify HTTP/1.1\r\nHost: candor\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"inputs\": ")
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let response = read_response(&mut stream).await.expect("a 400");
    assert_eq!(response.status, 400);
    assert_eq!(response.body["type"], "body_incomplete");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout_while_an_active_one_stays_usable(
) {
    let mut settings = test_settings();
    settings.connections.idle_timeout = Duration::from_millis(400);
    let app = spawn_app_with(settings).await;
    let mut idle = connect(&app).await;
    let mut active = connect(&app).await;
    for stream in [&mut idle, &mut active] {
        stream.write_all(HEALTHZ).await.unwrap();
        assert_eq!(read_response(stream).await.unwrap().status, 200);
    }
    let started = Instant::now();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        active.write_all(HEALTHZ).await.unwrap();
        let response = read_response(&mut active).await;
        assert_eq!(response.expect("the active connection answers").status, 200);
    }
    assert!(started.elapsed() > Duration::from_millis(800));
    assert!(
        closed_within(&mut idle, Duration::from_millis(500))
            .await
            .is_some(),
        "the idle connection is closed"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"candor_connections_timed_out_total{waiting_for="idle"}"#),
        "{metrics}"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn connections_beyond_the_cap_are_refused_while_earlier_ones_are_served() {
    let mut settings = test_settings();
    settings.connections.max_connections = 3;
    // The readiness poll's pooled connection goes idle and is closed.
    settings.connections.idle_timeout = Duration::from_millis(200);
    let app = spawn_app_with(settings).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut earlier = Vec::new();
    for _ in 0..3 {
        earlier.push(connect(&app).await);
    }
    let mut beyond = connect(&app).await;
    let took = closed_within(&mut beyond, Duration::from_secs(2))
        .await
        .expect("the connection beyond the cap is closed at once");
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    for stream in &mut earlier {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: candor\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_response(stream).await.unwrap().status, 200);
        assert!(closed_within(stream, PATIENCE).await.is_some());
    }
    let mut metrics = String::new();
    for _ in 0..50 {
        if let Ok(r) = app
            .client
            .get(format!("{}/metrics", app.address))
            .send()
            .await
        {
            metrics = r.text().await.unwrap_or_default();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        metrics.contains("candor_connections_refused_total 1"),
        "{metrics}"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_oversized_content_length_gets_413_at_once_without_sending_the_body() {
    let app = spawn_app_with(test_settings()).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"POST /v1/classify HTTP/1.1\r\nHost: candor\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let response = read_response(&mut stream).await.expect("a 413");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(response.status, 413);
    assert_eq!(response.body["type"], "body_too_large");
    assert_eq!(
        response.body["error"],
        "request body exceeds the limit of 65536 bytes"
    );
    assert!(
        response.head.contains("connection: close"),
        "{}",
        response.head
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_client_holding_a_partial_body_does_not_keep_the_server_alive_past_the_shutdown_grace() {
    let mut settings = test_settings();
    settings.connections.shutdown_grace = Duration::from_millis(500);
    let mut app = spawn_app_with(settings).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"POST /v1/classify HTTP/1.1\r\nHost: candor\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"inputs\": ")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    app.begin_shutdown();
    tokio::time::timeout(PATIENCE, app.finished())
        .await
        .expect("run() returns")
        .expect("the server stops cleanly");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(450), "stopped after {took:?}");
    assert!(took < Duration::from_millis(1500), "stopped after {took:?}");
    assert!(closed_within(&mut stream, PATIENCE).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prediction_answered_during_the_shutdown_grace_is_logged_and_shutdown_ends_with_it() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let mut settings = settings_with_database(&db.url);
    settings.connections.shutdown_grace = Duration::from_secs(3);
    let mut app = spawn_app_with(settings).await;
    let body = br#"{"inputs": "Who wrote Hamlet ?"}"#;
    let mut stream = connect(&app).await;
    let head = format!(
        "POST /v1/classify HTTP/1.1\r\nHost: candor\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    app.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream.write_all(&body[5..]).await.unwrap();
    let response = read_response(&mut stream).await.expect("an answer");
    assert_eq!(response.status, 200);
    let id = response.body["predictions"][0]["id"]
        .as_str()
        .expect("a prediction id")
        .to_string();
    tokio::time::timeout(PATIENCE, app.finished())
        .await
        .expect("run() returns")
        .expect("the server stops cleanly");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "stopped after {took:?}");
    let store = db.store().await;
    let stored = store.prediction_ids().await.unwrap();
    store.close().await;
    assert!(
        stored.iter().any(|s| s.to_string() == id),
        "{id} was not logged"
    );
}
