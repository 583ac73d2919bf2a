//! Connections: the header, keep-alive and body deadlines, the connection cap, running out of
//! file descriptors, and an oversize body still getting its 413. Raw sockets on loopback, so the
//! tests control exactly what is sent and when; every wait is bounded.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::helpers::{ADMIN, ADMIN_PASSWORD, TestApp};
use crate::process::{Proc, serve_with};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn addr(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

fn basic() -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{ADMIN}:{ADMIN_PASSWORD}"))
}

/// Reads until the server closes the connection (EOF or reset) or `deadline` passes. Returns
/// what was read and, if it closed, when.
async fn read_until_closed(stream: &mut (impl AsyncRead + Unpin), deadline: Instant) -> (Vec<u8>, Option<Instant>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (got, None),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, Some(Instant::now())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn status_line(response: &[u8]) -> String {
    String::from_utf8_lossy(response).lines().next().unwrap_or("").to_owned()
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_header_timeout() {
    let app = TestApp::spawn_with(|c| c.http.header_read_timeout = ms(300)).await;
    let mut s = TcpStream::connect(addr(&app.base)).await.unwrap();
    let start = Instant::now();
    let (got, closed) = read_until_closed(&mut s, start + Duration::from_secs(5)).await;
    let closed = closed.expect("a connection that sends nothing is closed").duration_since(start);
    assert!(got.is_empty(), "nothing is answered: {:?}", String::from_utf8_lossy(&got));
    assert!(closed >= ms(250), "closed after {closed:?}, before the timeout");
}

#[tokio::test]
async fn a_head_sent_a_byte_at_a_time_is_closed_by_the_header_timeout() {
    let app = TestApp::spawn_with(|c| c.http.header_read_timeout = ms(300)).await;
    let (mut read, mut write) = TcpStream::connect(addr(&app.base)).await.unwrap().into_split();
    // Always one more header byte every 100 ms: never a complete head, never silent for long.
    let slowloris = tokio::spawn(async move {
        let bytes = b"GET /api HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().chain(std::iter::repeat(&b'a'));
        for b in bytes.take(100) {
            if write.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(ms(100)).await;
        }
    });
    let start = Instant::now();
    let (_, closed) = read_until_closed(&mut read, start + Duration::from_secs(5)).await;
    slowloris.abort();
    let closed = closed.expect("a head that never ends is cut off").duration_since(start);
    assert!(closed < Duration::from_secs(2), "closed after {closed:?}");
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let app = TestApp::spawn_with(|c| {
        c.http.header_read_timeout = Duration::from_secs(10);
        c.http.keep_alive_timeout = ms(300);
    })
    .await;
    let mut s = TcpStream::connect(addr(&app.base)).await.unwrap();
    s.write_all(b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let start = Instant::now();
    let (got, closed) = read_until_closed(&mut s, start + Duration::from_secs(5)).await;
    assert_eq!(status_line(&got), "HTTP/1.1 200 OK");
    let closed = closed.expect("an idle kept-alive connection is closed").duration_since(start);
    // Well before the header timeout: the keep-alive timeout closed it.
    assert!(closed >= ms(250) && closed < Duration::from_secs(3), "closed after {closed:?}");
}

#[tokio::test]
async fn a_body_slower_than_the_body_timeout_gets_408() {
    let app = TestApp::spawn_with(|c| c.http.body_read_timeout = ms(300)).await;
    let mut s = TcpStream::connect(addr(&app.base)).await.unwrap();
    let head = format!(
        "POST /api/v1/BatchTask HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\"Name\": ",
        basic()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let start = Instant::now();
    let (got, closed) = read_until_closed(&mut s, start + Duration::from_secs(10)).await;
    assert_eq!(status_line(&got), "HTTP/1.1 408 Request Timeout");
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("RequestTimeoutException") && text.contains("0.3 seconds"), "{text}");
    assert!(closed.is_some(), "the connection is closed after a 408");
}

/// Writes a 10 MiB body at once, never reading, then reads the answer.
async fn send_big_body(base: &str, chunked: bool) -> (std::io::Result<()>, Vec<u8>) {
    const SIZE: usize = 10 * 1024 * 1024;
    let mut s = TcpStream::connect(addr(base)).await.unwrap();
    let framing = if chunked { "Transfer-Encoding: chunked".to_owned() } else { format!("Content-Length: {SIZE}") };
    let head = format!(
        "POST /api/v1/BatchTask HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n",
        basic()
    );
    let mut request = head.into_bytes();
    if chunked {
        let chunk = vec![b'a'; 64 * 1024];
        for _ in 0..SIZE / chunk.len() {
            request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            request.extend_from_slice(&chunk);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
    } else {
        request.resize(request.len() + SIZE, b'a');
    }
    let sent = tokio::time::timeout(Duration::from_secs(20), s.write_all(&request)).await.expect("sent in time");
    let (got, _) = read_until_closed(&mut s, Instant::now() + Duration::from_secs(10)).await;
    (sent, got)
}

#[tokio::test]
async fn a_big_body_sent_without_waiting_still_gets_its_413() {
    let app = TestApp::spawn().await;
    for chunked in [false, true] {
        let (sent, got) = send_big_body(&app.base, chunked).await;
        assert!(sent.is_ok(), "chunked={chunked}: the body could not be sent: {sent:?}");
        assert_eq!(status_line(&got), "HTTP/1.1 413 Payload Too Large", "chunked={chunked}");
        assert!(String::from_utf8_lossy(&got).contains("PayloadTooLargeException"), "chunked={chunked}");
    }
    // The server is fine afterwards.
    assert_eq!(app.get("/api/v1/BatchTask/All").await.status(), 200);
}

/// User plus system CPU time the process has used.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// CPU the server uses over one second of doing nothing but holding `conns` open.
async fn cpu_over_a_second(server: &Proc) -> Duration {
    let before = cpu_time(server.child.id());
    tokio::time::sleep(Duration::from_secs(1)).await;
    cpu_time(server.child.id()) - before
}

fn serve_http(dir: &Path, http: &str, tweak: impl FnOnce(&mut std::process::Command)) -> Proc {
    let config = dir.join("conn.toml");
    std::fs::write(&config, http).unwrap();
    serve_with(&dir.join("conn.db"), &[("BATCHD_CONFIG", config.to_str().unwrap())], tweak)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(20)).build().unwrap()
}

#[tokio::test]
async fn at_the_connection_cap_new_clients_wait_without_spinning_and_are_served() {
    const CAP: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let server =
        serve_http(dir.path(), &format!("[http]\nmax_connections = {CAP}\nheader_read_timeout = \"1s\"\n"), |_| {});
    let mut idle = Vec::new();
    for _ in 0..CAP + 20 {
        idle.push(TcpStream::connect(addr(&server.base)).await.unwrap());
    }
    tokio::time::sleep(ms(100)).await;
    let cpu = cpu_over_a_second(&server).await;
    assert!(cpu < ms(300), "the server used {cpu:?} of CPU in a second at the cap");
    let res = client().get(format!("{}/api", server.base)).send().await.expect("served once idle ones time out");
    assert_eq!(res.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    for (i, s) in idle.iter_mut().enumerate() {
        let (_, closed) = read_until_closed(s, deadline).await;
        assert!(closed.is_some(), "idle connection {i} was never closed");
    }
}

#[tokio::test]
async fn a_server_out_of_file_descriptors_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_http(dir.path(), "[http]\nheader_read_timeout = \"500ms\"\n", |cmd| {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe, as pre_exec requires.
        unsafe {
            cmd.pre_exec(|| {
                let limit = libc::rlimit { rlim_cur: 64, rlim_max: 64 };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    });
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(TcpStream::connect(addr(&server.base)).await.unwrap());
    }
    tokio::time::sleep(ms(100)).await;
    let cpu = cpu_over_a_second(&server).await;
    assert!(cpu < ms(300), "the server used {cpu:?} of CPU in a second with 200 connections");
    // Served while the 200 are still open: the idle ones time out and make room.
    let res = client().get(format!("{}/api", server.base)).send().await.expect("served with 200 sockets open");
    assert_eq!(res.status(), 200);
    drop(idle);
    let res = client().get(format!("{}/api", server.base)).send().await.expect("served afterwards");
    assert_eq!(res.status(), 200);
}

#[test]
fn the_http_table_is_read_and_checked() {
    use batchd::config::{Config, HttpConfig};
    let example = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/batchd.example.toml"));
    assert_eq!(Config::load(Some(example)).unwrap().http, HttpConfig::default(), "the example shows the defaults");
    let dir = tempfile::tempdir().unwrap();
    let load = |text: &str| {
        let path = dir.path().join("http.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path))
    };
    let c = load("[http]\nheader_read_timeout = \"500ms\"\nkeep_alive_timeout = 5\nmax_connections = 3\n").unwrap();
    assert_eq!(c.http.header_read_timeout, ms(500));
    assert_eq!(c.http.keep_alive_timeout, Duration::from_secs(5));
    assert_eq!(c.http.body_read_timeout, HttpConfig::default().body_read_timeout);
    assert_eq!(c.http.max_connections, 3);
    for bad in ["max_connections = 0", "keep_alive_timeout = 0", "body_read_timeout = \"soon\"", "idle = \"1s\""] {
        assert!(load(&format!("[http]\n{bad}\n")).is_err(), "{bad} is refused");
    }
}
