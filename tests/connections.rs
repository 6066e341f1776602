//! How the server treats connections themselves: slow or silent clients do not hold them.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Options, TestServer};

/// Sends `head` (an unfinished request head) and reads what the server does about it.
async fn send_and_read(
    server: &TestServer,
    head: &'static [u8],
) -> (Result<String, ErrorKind>, Duration) {
    let address = server.url.trim_start_matches("http://").to_string();
    tokio::task::spawn_blocking(move || {
        let mut socket = TcpStream::connect(address).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        socket.write_all(head).unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        let result = socket
            .read_to_end(&mut answer)
            .map(|_| String::from_utf8_lossy(&answer).into_owned())
            .map_err(|e| e.kind());
        (result, started.elapsed())
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let server = TestServer::start_with(Options {
        header_read_timeout: Duration::from_millis(500),
        ..Options::default()
    })
    .await;

    for head in [
        &b"GET /status HTTP/1.1\r\nHost: test\r\n"[..],
        // Nothing at all after connecting.
        &b""[..],
    ] {
        let (outcome, waited) = send_and_read(&server, head).await;
        match &outcome {
            // Closed, or closed after a 408: either way the connection is gone.
            Ok(answer) if answer.is_empty() || answer.starts_with("HTTP/1.1 408") => {}
            Err(ErrorKind::ConnectionReset) => {}
            other => {
                panic!("the connection was not closed after {head:?}: {other:?} after {waited:?}")
            }
        }
        assert!(
            waited < Duration::from_secs(5),
            "closed only after {waited:?}"
        );
    }

    // An idle keep-alive connection is closed after the same time, once its request is answered.
    let (outcome, waited) =
        send_and_read(&server, b"GET /status HTTP/1.1\r\nHost: test\r\n\r\n").await;
    let answer = outcome.unwrap_or_else(|e| panic!("the idle connection stayed open: {e:?}"));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        waited < Duration::from_secs(5),
        "closed only after {waited:?}"
    );

    // A client that sends its request in time is served as usual.
    let response = server
        .http
        .get(format!("{}/status", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// An idle HTTP/2 cleartext connection (prior knowledge, as h2c clients and proxies open them)
/// is closed after the same time as an HTTP/1 one, once its requests are answered.
#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    let server = TestServer::start_with(Options {
        header_read_timeout: Duration::from_millis(500),
        ..Options::default()
    })
    .await;

    // Served as usual over HTTP/2.
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = client
        .get(format!("{}/status", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);

    // The connection preface and an empty SETTINGS frame, then nothing: the server answers with
    // its own SETTINGS and, once the connection has been idle, a GOAWAY, and closes it.
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    let (outcome, waited) = send_and_read(&server, preface).await;
    let answer =
        outcome.unwrap_or_else(|e| panic!("the idle HTTP/2 connection stayed open: {e:?}"));
    // A GOAWAY frame (type 7) on stream 0.
    assert!(
        answer
            .as_bytes()
            .windows(4)
            .any(|w| w[0] == 0x07 && w[1] == 0 && w[2..] == [0, 0]),
        "no GOAWAY in {:?}",
        answer.as_bytes()
    );
    assert!(
        waited < Duration::from_secs(5),
        "closed only after {waited:?}"
    );
}
