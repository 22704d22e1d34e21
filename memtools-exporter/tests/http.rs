//! The HTTP side, hardened: only GET /metrics and /, request size and rate bounded, slow and
//! idle clients cut off without holding up anyone else. Real sockets on loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memtools_exporter::{Config, Exporter, Limits, RecorderStats, RecorderView, bind};

fn start(limits: Limits) -> (Exporter, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let stats = Arc::new(RecorderStats::default());
    stats.publish(RecorderView {
        backend: "procfs".into(),
        processes_followed: 3,
        ..RecorderView::default()
    });
    let config = Config {
        limits,
        ..Config::default()
    };
    let exporter = Exporter::start(
        bind("127.0.0.1:0").unwrap(),
        &dir.path().join("none.db"),
        config,
        stats,
    )
    .unwrap();
    (exporter, dir)
}

/// Sends `request` as is and reads the whole answer (the server closes after `Connection:
/// close`, or the test's timeout).
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn get(addr: SocketAddr, path: &str, extra: &str) -> String {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n").as_bytes(),
    )
}

fn status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"))
}

#[test]
fn metrics_in_either_format_a_page_and_nothing_else() {
    let (exporter, _dir) = start(Limits::default());
    let addr = exporter.local_addr();
    let text = get(addr, "/metrics", "");
    assert_eq!(status(&text), 200, "{text}");
    assert!(
        text.contains("content-type: text/plain; version=0.0.4"),
        "{text}"
    );
    assert!(
        text.contains("memtools_recorder_processes_followed 3"),
        "{text}"
    );
    assert!(!text.contains("# EOF"));
    let om = get(
        addr,
        "/metrics",
        "Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n",
    );
    assert!(
        om.contains("content-type: application/openmetrics-text"),
        "{om}"
    );
    assert!(om.trim_end().ends_with("# EOF"), "{om}");
    let page = get(addr, "/", "");
    assert_eq!(status(&page), 200);
    assert!(page.contains("<a href=\"/metrics\">"), "{page}");

    assert_eq!(status(&get(addr, "/metrics/../etc", "")), 404);
    assert_eq!(status(&get(addr, "/favicon.ico", "")), 404);
    let post = exchange(
        addr,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(status(&post), 405);
    assert!(post.contains("allow: GET"), "{post}");
    let head = exchange(
        addr,
        b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&head), 405);
    let body = exchange(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_eq!(status(&body), 413);
    // 10 KiB of headers: refused, not buffered.
    let big = format!("X-Big: {}\r\n", "a".repeat(10 * 1024));
    assert_eq!(status(&get(addr, "/metrics", &big)), 431);
    exporter.stop();
}

#[test]
fn requests_past_the_rate_are_told_to_come_back() {
    let (exporter, _dir) = start(Limits {
        rate: 0.5,
        burst: 3.0,
        ..Limits::default()
    });
    let addr = exporter.local_addr();
    let codes: Vec<u16> = (0..5).map(|_| status(&get(addr, "/metrics", ""))).collect();
    assert_eq!(&codes[..3], &[200, 200, 200], "{codes:?}");
    assert_eq!(codes[4], 429, "{codes:?}");
    let refused = get(addr, "/metrics", "");
    assert!(refused.contains("retry-after: 1"), "{refused}");
    exporter.stop();
}

#[test]
fn a_stuck_client_is_cut_off_and_never_holds_up_the_others() {
    let (exporter, _dir) = start(Limits {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(2),
        connection_lifetime: Duration::from_secs(4),
        ..Limits::default()
    });
    let addr = exporter.local_addr();
    // One client sends half a request line and stops.
    let mut stuck = TcpStream::connect(addr).unwrap();
    stuck.write_all(b"GET /metr").unwrap();
    // Another scrapes meanwhile and is answered before the stuck one's time is up.
    let began = Instant::now();
    assert_eq!(status(&get(addr, "/metrics", "")), 200);
    assert!(
        began.elapsed() < Duration::from_millis(1500),
        "{:?}",
        began.elapsed()
    );
    // The stuck one is closed after the header timeout.
    stuck
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    let _ = stuck.read_to_end(&mut buf);
    let waited = began.elapsed();
    assert!(waited < Duration::from_secs(6), "closed after {waited:?}");

    // Two idle connections take both slots: a third is closed at once, without an answer.
    let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let refused = get(addr, "/metrics", "");
    assert!(refused.is_empty(), "{refused}");
    // Once they are cut off, scrapes are served again.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(status(&get(addr, "/metrics", "")), 200);
    drop(idle);
    exporter.stop();
}
