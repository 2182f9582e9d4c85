//! The fast path against pingora's: a bounded, generated corpus of request heads (valid,
//! edge-case and malformed), each sent through an lb with the fast path (the default) and
//! through one with `server.fast_path: false` (where pingora's HTTP/1 session parses and
//! serialises every request), both in front of the same raw-TCP backend. The backend
//! records the raw bytes it receives and answers with a scripted raw response, so the
//! responses vary too. What the backend received and what the client got must be the same
//! from both lbs, header order and the lb's own headers aside; where they differ on
//! purpose, [`intended`] names the case.
//!
//! Also held for every case: each request took its path (from the access log: a simple
//! request the fast path on the default lb and the direct path on the other, any other the
//! same path on both); the backend got it once (a resend only after an answer the lb cannot
//! use, on a reused connection: see `UNUSABLE`); the request id the backend got is the one
//! the client got; an answer that says it closes the connection is followed by its end and
//! nothing else.
//!
//! Plus: pipelined requests on the fast path, and requests that are not simple following
//! simple ones on one connection.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::Lb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bound on every wait for bytes: a hang fails the case instead of the whole run.
const LIMIT: Duration = Duration::from_secs(5);
/// Header slots for parsing on either side (the lb takes at most 100 by default).
const HEADERS: usize = 256;
/// How many generated request heads (each goes through both lbs).
const GENERATED: usize = 240;
const SEED: u64 = 0x5eed_fa57;

// ---------------------------------------------------------------------------------------
// The backend: raw TCP, scripted answers.
// ---------------------------------------------------------------------------------------

/// A scripted backend answer.
#[derive(Clone, Debug)]
struct Shape {
    name: &'static str,
    /// Everything up to and including the final response's empty line (interim answers
    /// included).
    head: String,
    /// Sent after the head unless the request was `HEAD`.
    body: Vec<u8>,
    /// Close the connection after the answer.
    close: bool,
}

impl Shape {
    fn new(name: &'static str, head: &str, body: &[u8], close: bool) -> Shape {
        Shape {
            name,
            head: head.to_string(),
            body: body.to_vec(),
            close,
        }
    }
}

/// The answers the corpus is paired with.
fn shapes() -> Vec<Shape> {
    let large: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    vec![
        Shape::new(
            "length",
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n",
            b"hello",
            false,
        ),
        Shape::new(
            "chunked",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            false,
        ),
        Shape::new(
            "chunked-extensions",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"5;name=value;flag\r\nhello\r\n0;last\r\n\r\n",
            false,
        ),
        Shape::new(
            "chunked-trailers",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n",
            b"5\r\nhello\r\n0\r\nx-sum: 42\r\n\r\n",
            false,
        ),
        Shape::new(
            "close-delimited",
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n",
            b"until the backend closes",
            true,
        ),
        Shape::new(
            "204-with-length",
            "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
            b"",
            false,
        ),
        Shape::new(
            "304-with-length",
            "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 5\r\n\r\n",
            b"",
            false,
        ),
        Shape::new(
            "100-continue-first",
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
            b"ok",
            false,
        ),
        Shape::new(
            "connection-close",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n",
            b"ok",
            true,
        ),
        Shape::new(
            "duplicate-identical-length",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            b"abc",
            false,
        ),
        Shape::new(
            "keep-alive-header",
            "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5, max=100\r\n\
             Proxy-Connection: keep-alive\r\nContent-Length: 2\r\n\r\n",
            b"ok",
            false,
        ),
        Shape::new(
            "backend-request-id-and-date",
            "HTTP/1.1 200 OK\r\nX-Request-Id: from-backend\r\nDate: Mon, 01 Jan 2001 00:00:00 GMT\r\n\
             Server: stub/1\r\nContent-Length: 2\r\n\r\n",
            b"ok",
            false,
        ),
        Shape::new(
            "odd-reason",
            "HTTP/1.1 404 Not Here, Nor There!\r\nContent-Length: 4\r\n\r\n",
            b"nope",
            false,
        ),
        Shape::new(
            "repeated-headers",
            "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nVary: accept\r\nvary: cookie\r\n\
             X-Latin: caf\u{e9}\r\nContent-Length: 2\r\n\r\n",
            b"ok",
            false,
        ),
        Shape::new(
            "http10-response",
            "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n",
            b"ok",
            true,
        ),
        Shape::new(
            "chunked-and-length",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 100\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\r\n",
            true,
        ),
        Shape::new(
            "server-error",
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 3\r\nContent-Length: 4\r\n\r\n",
            b"busy",
            false,
        ),
        Shape::new(
            "empty-length",
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            b"",
            false,
        ),
        Shape {
            name: "large-length",
            head: format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                large.len()
            ),
            body: large,
            close: false,
        },
        Shape::new(
            "chunked-upper-hex-zeros",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"000A\r\n0123456789\r\n00\r\n\r\n",
            false,
        ),
        Shape::new(
            "gzip-then-chunked",
            "HTTP/1.1 200 OK\r\nContent-Encoding: identity\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"3\r\nabc\r\n0\r\n\r\n",
            false,
        ),
        Shape::new(
            "chunked-space-before-extension",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"5 ;x=1\r\nhello\r\n0\r\n\r\n",
            false,
        ),
        Shape::new(
            "chunked-bare-lf",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"5\nhello\n0\n\n",
            false,
        ),
        Shape::new(
            "no-reason-phrase",
            "HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\n",
            b"ok",
            false,
        ),
        Shape::new(
            "length-not-a-number",
            "HTTP/1.1 200 OK\r\nContent-Length: five\r\n\r\n",
            b"hello",
            true,
        ),
        Shape::new(
            "lengths-disagree",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            b"abcd",
            true,
        ),
    ]
}

/// One request as the backend read it: its raw bytes (head and body).
type Raw = Vec<u8>;

struct Backend {
    addr: std::net::SocketAddr,
    shape: Arc<Mutex<Shape>>,
    received: Arc<Mutex<Vec<Raw>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    async fn start() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shape = Arc::new(Mutex::new(shapes().remove(0)));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (shape.clone(), received.clone());
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        conns.spawn(serve(stream, s.clone(), r.clone()));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Backend {
            addr,
            shape,
            received,
            task,
        }
    }

    fn answer_with(&self, shape: &Shape) {
        *self.shape.lock().expect("lock") = shape.clone();
    }

    /// The requests received since the last call.
    fn take(&self) -> Vec<Raw> {
        std::mem::take(&mut *self.received.lock().expect("lock"))
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One backend connection: read each request (head, and a body by its framing), record
/// it, answer with the current shape.
async fn serve(mut stream: TcpStream, shape: Arc<Mutex<Shape>>, received: Arc<Mutex<Vec<Raw>>>) {
    let mut buf = Vec::new();
    loop {
        let Some((len, is_head)) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        let raw: Vec<u8> = buf.drain(..len).collect();
        received.lock().expect("lock").push(raw);
        let shape = shape.lock().expect("lock").clone();
        let mut answer = shape.head.clone().into_bytes();
        if !is_head {
            answer.extend_from_slice(&shape.body);
        }
        if stream.write_all(&answer).await.is_err() || shape.close {
            return;
        }
    }
}

/// Read one whole request into `buf`: its length and whether it is a `HEAD`. `None`: the
/// connection ended (or sent what no lb should send: the test then finds it missing).
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(usize, bool)> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = req.parse(buf) {
            let is_head = req.method == Some("HEAD");
            let value = |name: &str| {
                req.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
            };
            let end = if value("transfer-encoding").is_some_and(|v| v.ends_with("chunked")) {
                // The test's chunked bodies have no trailers: the body ends at `0` CRLF CRLF.
                find(&buf[head..], b"0\r\n\r\n").map(|at| head + at + 5)
            } else {
                let length: usize = value("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                (buf.len() >= head + length).then_some(head + length)
            };
            if let Some(end) = end {
                return Some((end, is_head));
            }
        }
        let mut chunk = [0u8; 16 * 1024];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------
// The client: raw requests, and what came back, parsed by hand.
// ---------------------------------------------------------------------------------------

/// One answer as the client got it.
#[derive(Clone, PartialEq, Eq)]
struct Answer {
    /// Interim (1xx) statuses before it.
    interim: Vec<u16>,
    version: u8,
    status: u16,
    reason: String,
    /// (lower-case name, value), in arrival order.
    headers: Vec<(String, Vec<u8>)>,
    /// The body, de-chunked.
    body: Vec<u8>,
    /// A chunked body's extensions and trailer lines, as sent.
    extensions: Vec<Vec<u8>>,
    trailers: Vec<Vec<u8>>,
    chunked: bool,
    /// Why the body is not whole, if it is not.
    incomplete: Option<&'static str>,
    /// After an answer that closes the connection: anything but its end.
    after: Option<String>,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = |b: &[u8]| Text(b.to_vec());
        f.debug_struct("Answer")
            .field("interim", &self.interim)
            .field(
                "status",
                &format!("HTTP/1.{} {} {}", self.version, self.status, self.reason),
            )
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(n, v)| (n, text(v)))
                    .collect::<Vec<_>>(),
            )
            .field("body", &text(&self.body[..self.body.len().min(300)]))
            .field("body_len", &self.body.len())
            .field("chunked", &self.chunked)
            .field(
                "extensions",
                &self.extensions.iter().map(|e| text(e)).collect::<Vec<_>>(),
            )
            .field(
                "trailers",
                &self.trailers.iter().map(|e| text(e)).collect::<Vec<_>>(),
            )
            .field("incomplete", &self.incomplete)
            .field("after", &self.after)
            .finish()
    }
}

impl Answer {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    fn says_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case(b"close"))
    }
}

/// What the client saw on its connection for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Answer(Answer),
    /// The connection closed with no answer.
    Closed,
    /// Nothing usable came within [`LIMIT`]: what did.
    Hung(Text),
    /// Bytes that are no HTTP/1 answer, or the connection ended inside a head.
    Broken(Text),
}

/// A client's byte stream: plain TCP or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Where a client reaches an lb.
#[derive(Clone, Copy)]
enum Via {
    Plain(u16),
    Tls(std::net::SocketAddr),
}

/// A client connection and the bytes read from it but not yet used.
struct Client {
    stream: Box<dyn Io>,
    buf: Vec<u8>,
    eof: bool,
    /// A read waited [`LIMIT`] for nothing.
    hung: bool,
}

impl Client {
    async fn connect(lb: &Lb) -> Client {
        Client::via(Via::Plain(lb.port)).await
    }

    async fn via(via: Via) -> Client {
        let stream: Box<dyn Io> = match via {
            Via::Plain(port) => Box::new(
                TcpStream::connect(("127.0.0.1", port))
                    .await
                    .expect("connect"),
            ),
            Via::Tls(addr) => {
                let tcp = TcpStream::connect(addr).await.expect("connect");
                let config = std::sync::Arc::new(support::tls_client::any_cert_config());
                let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .expect("TLS handshake");
                Box::new(tls)
            }
        };
        Client {
            stream,
            buf: Vec::new(),
            eof: false,
            hung: false,
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// Read more; `false` at the end of the stream, or when nothing came within [`LIMIT`]
    /// (`hung` then tells).
    async fn fill(&mut self) -> bool {
        if self.eof {
            return false;
        }
        let mut chunk = [0u8; 64 * 1024];
        let n = match tokio::time::timeout(LIMIT, self.stream.read(&mut chunk)).await {
            Ok(read) => read.unwrap_or(0),
            Err(_) => {
                self.hung = true;
                0
            }
        };
        self.buf.extend_from_slice(&chunk[..n]);
        self.eof = n == 0;
        n > 0
    }

    /// Read one answer to a request (`HEAD` if `is_head`).
    async fn answer(&mut self, is_head: bool) -> Seen {
        let mut interim = Vec::new();
        loop {
            let mut headers = [httparse::EMPTY_HEADER; HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            let parsed = resp.parse(&self.buf);
            let head_len = match parsed {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => {
                    if !self.fill().await {
                        return if self.hung {
                            Seen::Hung(Text(std::mem::take(&mut self.buf)))
                        } else if self.buf.is_empty() {
                            Seen::Closed
                        } else {
                            Seen::Broken(Text(std::mem::take(&mut self.buf)))
                        };
                    }
                    continue;
                }
                Err(_) => return Seen::Broken(Text(std::mem::take(&mut self.buf))),
            };
            let status = resp.code.expect("status");
            let mut answer = Answer {
                interim: Vec::new(),
                version: resp.version.expect("version"),
                status,
                reason: resp.reason.unwrap_or("").to_string(),
                headers: resp
                    .headers
                    .iter()
                    .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                    .collect(),
                body: Vec::new(),
                extensions: Vec::new(),
                trailers: Vec::new(),
                chunked: false,
                incomplete: None,
                after: None,
            };
            self.buf.drain(..head_len);
            if (100..200).contains(&status) {
                interim.push(status);
                continue;
            }
            answer.interim = interim;
            self.body(&mut answer, is_head).await;
            return Seen::Answer(answer);
        }
    }

    /// Read the body of `answer` as RFC 9112 §6.3 frames it.
    async fn body(&mut self, answer: &mut Answer, is_head: bool) {
        if is_head || answer.status == 204 || answer.status == 304 {
            return;
        }
        let chunked = answer
            .header("transfer-encoding")
            .is_some_and(|v| lossy(v).to_ascii_lowercase().trim().ends_with("chunked"));
        if chunked {
            answer.chunked = true;
            return self.chunked(answer).await;
        }
        if let Some(length) = answer.header("content-length") {
            let length: usize = lossy(length)
                .trim()
                .parse()
                .expect("a client-side Content-Length");
            while self.buf.len() < length {
                if !self.fill().await {
                    answer.incomplete = Some(self.why());
                    answer.body = std::mem::take(&mut self.buf);
                    return;
                }
            }
            answer.body = self.buf.drain(..length).collect();
            return;
        }
        while self.fill().await {}
        if self.hung {
            answer.incomplete = Some(self.why());
        }
        answer.body = std::mem::take(&mut self.buf);
    }

    fn why(&self) -> &'static str {
        if self.hung {
            "hung"
        } else {
            "ended early"
        }
    }

    async fn line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(at) = find(&self.buf, b"\r\n") {
                let line = self.buf.drain(..at + 2).take(at).collect();
                return Some(line);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    async fn chunked(&mut self, answer: &mut Answer) {
        loop {
            let Some(line) = self.line().await else {
                answer.incomplete = Some(self.why());
                return;
            };
            let (size, ext) = match line.iter().position(|&b| b == b';') {
                Some(at) => (&line[..at], line[at..].to_vec()),
                None => (&line[..], Vec::new()),
            };
            if !ext.is_empty() {
                answer.extensions.push(ext);
            }
            let Ok(size) = usize::from_str_radix(lossy(size).trim(), 16) else {
                answer.incomplete = Some("bad chunk size");
                return;
            };
            if size == 0 {
                break;
            }
            while self.buf.len() < size + 2 {
                if !self.fill().await {
                    answer.incomplete = Some(self.why());
                    return;
                }
            }
            answer.body.extend(self.buf.drain(..size));
            if self.buf.drain(..2).collect::<Vec<_>>() != b"\r\n" {
                answer.incomplete = Some("chunk data longer than its size");
                return;
            }
        }
        loop {
            let Some(line) = self.line().await else {
                answer.incomplete = Some(self.why());
                return;
            };
            if line.is_empty() {
                return;
            }
            answer.trailers.push(line);
        }
    }

    /// After an answer that closes the connection: what came before the end (nothing,
    /// if all is well), or why there was no end.
    async fn rest(&mut self) -> Option<String> {
        while self.fill().await {}
        if self.hung {
            return Some("the connection stayed open".into());
        }
        (!self.buf.is_empty())
            .then(|| format!("bytes after the answer: {:?}", Text(self.buf.clone())))
    }
}

/// Bytes shown escaped, exactly.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Text(Vec<u8>);

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{}\"", self.0.escape_ascii())
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------
// The corpus.
// ---------------------------------------------------------------------------------------

/// Which path each lb should send the request down.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Simple: the fast path on the default lb, the direct path on the other.
    Simple,
    /// Not simple: the same path (not the fast one) on both lbs.
    NotSimple,
    /// Refused before any path: no backend request.
    Refused,
}

#[derive(Clone, Debug)]
struct Case {
    name: String,
    request: Vec<u8>,
    is_head: bool,
    shape: usize,
    expect: Expect,
}

/// Pick one of `items`.
fn pick<'a, T>(rng: &mut fastrand::Rng, items: &'a [T]) -> &'a T {
    &items[rng.usize(..items.len())]
}

fn casing(rng: &mut fastrand::Rng, name: &str) -> String {
    match rng.u8(..4) {
        0 => name.to_ascii_lowercase(),
        1 => name.to_ascii_uppercase(),
        2 => name
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect(),
        _ => name.to_string(),
    }
}

/// `n` request heads, seeded: simple ones of every shape, and some made not simple by one
/// feature, each paired with a backend answer.
fn generated(n: usize, shapes: usize) -> Vec<Case> {
    let mut rng = fastrand::Rng::with_seed(SEED);
    let targets = [
        "/",
        "/a/b/c",
        "/search?q=%20x%2By&lang=en",
        "/p%2Fq/%7Euser?x=%41%42",
        "/a;b=c/d,e",
        "/~user/x.y-z_1",
        "/x?",
        "/x?a=b&c=d&e",
        "/@:!$&'()*+,;=/q",
        "/strip/inner?k=v",
        "/strip",
        "/hosted/x?y=1",
    ];
    let hosts = [
        "example.test",
        "example.test:8080",
        "127.0.0.1",
        "[::1]:80",
        "EXAMPLE.Test",
    ];
    let ordinary = [
        ("Accept", "*/*"),
        ("User-Agent", "gen/1.0 (test)"),
        ("Cookie", "a=1; b=2"),
        ("X-Custom", "v"),
        ("Accept-Encoding", "gzip, br"),
        ("If-None-Match", "\"v1\""),
        ("X-Empty", ""),
        ("X-Pad", "  padded \t "),
        ("Authorization", "Bearer abc.def"),
        ("X-Forwarded-Host", "client.example"),
        ("X-Forwarded-Proto", "https"),
        ("Forwarded", "for=192.0.2.1"),
        ("Cache-Control", "no-cache"),
    ];
    let hop = [
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Proxy-Authorization", "Basic eDp5"),
        ("Proxy-Connection", "keep-alive"),
        ("Trailer", "x-sum"),
        ("HTTP2-Settings", "AAMAAABkAAQAAP__"),
    ];
    let mut cases = Vec::new();
    for i in 0..n {
        let is_head = rng.u8(..10) < 3;
        let method = if is_head { "HEAD" } else { "GET" };
        let target = *pick(&mut rng, &targets);
        let mut lines: Vec<String> = Vec::new();
        lines.push(format!(
            "{}: {}",
            casing(&mut rng, "Host"),
            pick(&mut rng, &hosts)
        ));
        match rng.u8(..4) {
            0 => lines.push("X-Forwarded-For: 203.0.113.7".into()),
            1 => {
                lines.push("x-forwarded-for: 203.0.113.7, 198.51.100.2".into());
                lines.push("X-FORWARDED-FOR: 192.0.2.9".into());
            }
            _ => {}
        }
        match rng.u8(..5) {
            0 => lines.push(format!("X-Request-Id: gen-{i}")),
            1 => lines.push(format!("x-request-id: gen-{i} has spaces")),
            2 => {
                lines.push(format!("X-Request-Id: gen-{i}-a"));
                lines.push(format!("X-Request-Id: gen-{i}-b"));
            }
            3 => lines.push(format!("X-Request-Id: {}", "x".repeat(129))),
            _ => {}
        }
        match rng.u8(..5) {
            0 => lines.push(format!("{}: keep-alive", casing(&mut rng, "Connection"))),
            1 => lines.push(format!("{}: close", casing(&mut rng, "Connection"))),
            2 => lines.push("Connection: Keep-Alive, close".into()),
            _ => {}
        }
        for (name, value) in hop {
            if rng.u8(..6) == 0 {
                lines.push(format!("{}: {value}", casing(&mut rng, name)));
            }
        }
        for _ in 0..rng.usize(..5) {
            let (name, value) = *pick(&mut rng, &ordinary);
            let sep = if rng.bool() { ": " } else { ":" };
            lines.push(format!("{}{sep}{value}", casing(&mut rng, name)));
        }
        if rng.u8(..8) == 0 {
            lines.push(format!("{}: 0", casing(&mut rng, "Content-Length")));
        }
        // One feature in five makes it not simple (the same path on both lbs).
        let (mut version, mut target, mut expect) =
            ("HTTP/1.1", target.to_string(), Expect::Simple);
        let mut feature = "";
        if rng.u8(..5) == 0 {
            expect = Expect::NotSimple;
            feature = *pick(
                &mut rng,
                &[
                    "nominated",
                    "expect",
                    "upgrade",
                    "http10",
                    "absolute",
                    "length",
                ],
            );
            match feature {
                "nominated" => {
                    lines.push("Connection: keep-alive, x-drop-me\r\nX-Drop-Me: 1".into())
                }
                "expect" => lines.push("Expect: 100-continue".into()),
                "upgrade" => lines.push("Upgrade: h2c".into()),
                "http10" => version = "HTTP/1.0",
                "absolute" => {
                    // The authority must agree with Host: drop the generated one.
                    lines.retain(|l| !l.to_ascii_lowercase().starts_with("host:"));
                    lines.push("Host: example.test".into());
                    target = format!("http://example.test{target}");
                }
                _ => {
                    lines.retain(|l| !l.to_ascii_lowercase().starts_with("content-length"));
                    lines.push("Content-Length: 3".into());
                }
            }
        }
        rng.shuffle(&mut lines);
        let mut request = format!("{method} {target} {version}\r\n");
        for line in &lines {
            request.push_str(line);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        if feature == "length" {
            request.push_str("abc");
        }
        cases.push(Case {
            name: format!("generated {i} {method} {target} {version} {feature}"),
            request: request.into_bytes(),
            is_head,
            shape: rng.usize(..shapes),
            expect,
        });
    }
    cases
}

/// Edge cases and malformed heads, by hand; each goes with a few answers.
fn hand_written() -> Vec<(&'static str, Vec<u8>, Expect)> {
    use Expect::{NotSimple, Refused, Simple};
    let long = "v".repeat(16 * 1024);
    let many: String = (0..95).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    let b = |s: &str| s.as_bytes().to_vec();
    vec![
        ("plain", b("GET / HTTP/1.1\r\nHost: t\r\n\r\n"), Simple),
        ("head", b("HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n"), Simple),
        ("no space after colons", b("GET /n HTTP/1.1\r\nHost:t\r\nX-A:1\r\n\r\n"), Simple),
        ("empty value", b("GET /e HTTP/1.1\r\nHost: t\r\nX-Empty:\r\n\r\n"), Simple),
        ("underscore in a name", b("GET /u HTTP/1.1\r\nHost: t\r\nX_Under: 1\r\n\r\n"), Simple),
        (
            "obs-text in a value",
            b"GET /o HTTP/1.1\r\nHost: t\r\nX-Latin: caf\xe9 cr\xe8me\r\n\r\n".to_vec(),
            Simple,
        ),
        ("long value", format!("GET /l HTTP/1.1\r\nHost: t\r\nX-Long: {long}\r\n\r\n").into_bytes(), Simple),
        ("many headers", format!("GET /m HTTP/1.1\r\nHost: t\r\n{many}\r\n").into_bytes(), Simple),
        ("bare LF", b("GET /lf HTTP/1.1\nHost: t\nX-A: 1\n\n"), Simple),
        ("content-length 0", b("GET /z HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"), Simple),
        ("connection close", b("GET /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"), Simple),
        (
            "every hop-by-hop header",
            b("GET /hop HTTP/1.1\r\nHost: t\r\nConnection: keep-alive\r\nKeep-Alive: 300\r\nTE: trailers\r\n\
               Trailer: x\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eDp5\r\n\
               Proxy-Authenticate: Basic\r\nHTTP2-Settings: AAMA\r\n\r\n"),
            Simple,
        ),
        (
            "forwarded headers from the client",
            b("GET /f HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: unknown\r\nX-Forwarded-Host: evil\r\n\
               X-Forwarded-Proto: https\r\nX-Request-Id: ok-id_1.2:3\r\n\r\n"),
            Simple,
        ),
        ("upstream host override", b("GET /hosted/a HTTP/1.1\r\nHost: client.test\r\n\r\n"), Simple),
        ("prefix strip to root", b("GET /strip/?q=1 HTTP/1.1\r\nHost: t\r\n\r\n"), Simple),
        ("absolute-form target", b("GET http://t/abs?x=1 HTTP/1.1\r\nHost: t\r\n\r\n"), NotSimple),
        ("HTTP/1.0", b("GET /ten HTTP/1.0\r\nHost: t\r\n\r\n"), NotSimple),
        ("HTTP/1.0 keep-alive", b("GET /ten HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n"), NotSimple),
        ("no Host", b("GET /nohost HTTP/1.1\r\nX-A: 1\r\n\r\n"), Refused),
        ("lower-case method", b("get /lower HTTP/1.1\r\nHost: t\r\n\r\n"), NotSimple),
        ("nominated header", b("GET /nom HTTP/1.1\r\nHost: t\r\nConnection: x-secret\r\nX-Secret: s\r\n\r\n"), NotSimple),
        ("expect on GET", b("GET /x HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\r\n"), NotSimple),
        ("upgrade", b("GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\r\n"), NotSimple),
        ("chunked GET", b("GET /te HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), NotSimple),
        ("GET with a body", b("GET /body HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody"), NotSimple),
        ("content-length 00", b("GET /zz HTTP/1.1\r\nHost: t\r\nContent-Length: 00\r\n\r\n"), NotSimple),
        ("quote in the target", b("GET /q?a=\"b\" HTTP/1.1\r\nHost: t\r\n\r\n"), Refused),
        ("both lengths and chunked", b("GET /s HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), Refused),
        ("two lengths", b("GET /s HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n"), Refused),
        ("length not a number", b("GET /s HTTP/1.1\r\nHost: t\r\nContent-Length: 1x\r\n\r\n"), Refused),
        ("negative length", b("GET /s HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n"), Refused),
        ("duplicate Host", b("GET /s HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), Refused),
        ("space before colon", b("GET /s HTTP/1.1\r\nHost : t\r\n\r\n"), Refused),
        ("transfer-encoding gzip", b("GET /s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n"), Refused),
        ("absolute-form disagreeing with Host", b("GET http://a/x HTTP/1.1\r\nHost: b\r\n\r\n"), Refused),
        ("userinfo in Host", b("GET /s HTTP/1.1\r\nHost: u@t\r\n\r\n"), Refused),
        ("CONNECT", b("CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n"), Refused),
        ("control byte in a value", b("GET /s HTTP/1.1\r\nHost: t\r\nX-A: a\x01b\r\n\r\n"), Refused),
        ("obs-fold", b("GET /s HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n"), Refused),
    ]
}

/// Every case: the generated ones, and each hand-written one with three answers.
fn corpus(shapes: &[Shape]) -> Vec<Case> {
    let mut cases = generated(GENERATED, shapes.len());
    let by_name = |name: &str| shapes.iter().position(|s| s.name == name).expect("shape");
    let answers = [
        by_name("length"),
        by_name("chunked-trailers"),
        by_name("close-delimited"),
    ];
    for (name, request, expect) in hand_written() {
        let is_head = request.starts_with(b"HEAD ");
        for (j, &shape) in answers.iter().enumerate() {
            // Refused heads never reach the backend: one answer is enough.
            if expect == Expect::Refused && j > 0 {
                break;
            }
            cases.push(Case {
                name: format!("{name} ({})", shapes[shape].name),
                request: request.clone(),
                is_head,
                shape,
                expect,
            });
        }
    }
    cases
}

// ---------------------------------------------------------------------------------------
// Normalising and comparing.
// ---------------------------------------------------------------------------------------

/// A request as the backend got it: request line, headers as a sorted multiset, body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Forwarded {
    line: String,
    /// Values escaped: exact bytes, readable.
    headers: Vec<(String, String)>,
    body: Text,
}

/// The lb's own request headers: present exactly once each.
const ADDED: [&str; 4] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
];

/// Parse one request the backend received; the request id's value is replaced by a
/// marker (returned), the other added headers keep theirs (they must agree too).
fn forwarded(raw: &[u8], case: &str) -> (Forwarded, String) {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!(
            "{case}: the backend got an unparsable request ({other:?}): {:?}",
            lossy(raw)
        ),
    };
    assert!(
        raw[..head].ends_with(b"\r\n\r\n")
            && !raw[..head]
                .windows(2)
                .any(|w| w[1] == b'\n' && w[0] != b'\r'),
        "{case}: the backend got bare LFs: {:?}",
        lossy(raw)
    );
    let line = format!(
        "{} {} HTTP/1.{}",
        req.method.unwrap_or(""),
        req.path.unwrap_or(""),
        req.version.unwrap_or(9)
    );
    let mut id = String::new();
    let mut list: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            let name = h.name.to_ascii_lowercase();
            let mut value = h.value.escape_ascii().to_string();
            if name == "x-request-id" {
                id = std::mem::replace(&mut value, "<id>".into());
            }
            (name, value)
        })
        .collect();
    for name in ADDED {
        let n = list.iter().filter(|(n, _)| n == name).count();
        assert_eq!(
            n,
            1,
            "{case}: {name} {n} times at the backend: {:?}",
            lossy(raw)
        );
    }
    list.sort();
    (
        Forwarded {
            line,
            headers: list,
            body: Text(raw[head..].to_vec()),
        },
        id,
    )
}

/// What one lb did with one case, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    /// Each distinct request the backend got (a resend shows in `resent`).
    forwarded: Vec<Forwarded>,
    seen: Seen,
}

/// Send `case` through `lb`; normalise what the backend and the client saw. Also returns
/// the request id the client was answered with (for the access log).
async fn run(
    via: Via,
    backend: &Backend,
    case: &Case,
    shape: &Shape,
) -> (Outcome, Option<String>, usize) {
    backend.answer_with(shape);
    let mut client = Client::via(via).await;
    client.send(&case.request).await;
    let mut seen = client.answer(case.is_head).await;
    let received = backend.take();
    let mut forwarded_ids = Vec::new();
    let mut all: Vec<Forwarded> = received
        .iter()
        .map(|raw| {
            let (f, id) = forwarded(raw, &case.name);
            forwarded_ids.push(id);
            f
        })
        .collect();
    // The same request again: a resend after a reused connection failed (see `resent`).
    let sent = all.len();
    all.dedup();
    let resent = sent - all.len();
    let forwarded = all;
    let mut answered_id = None;
    if let Seen::Answer(answer) = &mut seen {
        let closes = answer.says_close()
            || (answer.header("content-length").is_none()
                && !answer.chunked
                && !case.is_head
                && answer.status != 204
                && answer.status != 304);
        if closes && answer.incomplete.is_none() {
            answer.after = client.rest().await;
        }
        answer.headers.retain(|(n, _)| n != "date");
        let id = answer.header("x-request-id").map(lossy);
        if let Some(id) = &id {
            for (_, v) in answer
                .headers
                .iter_mut()
                .filter(|(n, _)| n == "x-request-id")
            {
                *v = b"<id>".to_vec();
            }
            // The lb's JSON errors carry the id in their body.
            let body = lossy(&answer.body).replace(id.as_str(), "<id>");
            if body.as_bytes() != answer.body {
                answer.body = body.into_bytes();
            }
            for got in &forwarded_ids {
                assert_eq!(
                    got, id,
                    "{}: the backend's id is not the client's",
                    case.name
                );
            }
        }
        answer.headers.sort();
        answered_id = id;
    }
    (Outcome { forwarded, seen }, answered_id, resent)
}

/// The answers the lb cannot use (a 502 on both paths).
const UNUSABLE: [&str; 2] = ["length-not-a-number", "lengths-disagree"];

const CLOSE_DELIMITED: &str =
    "a body to the backend's close: the fast path says `Connection: close`, pingora's path \
     `keep-alive` (both close after it)";
const CHUNKED_AS_SENT: &str =
    "a chunked body: the fast path passes it byte for byte (extensions, trailers), pingora \
     re-chunks it without them";
const OWN_VERSION: &str =
    "an HTTP/1.0 backend: the fast path answers in its own version (HTTP/1.1), pingora's \
     path passes HTTP/1.0 on";

const NOT_CHUNKED: &str =
    "a chunked body that breaks the framing at once: the fast path has sent nothing and \
     answers 502, pingora's path sends the head and cuts the body";

/// Every difference [`intended`] names.
const INTENDED: [&str; 4] = [CLOSE_DELIMITED, CHUNKED_AS_SENT, OWN_VERSION, NOT_CHUNKED];

/// A difference between the two paths that is there on purpose: `Some(name)` after
/// checking its shape and removing it from both outcomes, which must then agree.
fn intended(shape: &Shape, fast: &mut Outcome, direct: &mut Outcome) -> Option<&'static str> {
    let (Seen::Answer(f), Seen::Answer(d)) = (&mut fast.seen, &mut direct.seen) else {
        return None;
    };
    let connection = |a: &Answer| a.header("connection").map(lossy);
    match shape.name {
        // The body ends when the backend closes: the client's connection ends with it. The
        // fast path says so; pingora's path announces keep-alive and then closes (a
        // finding on that path, harmless: the client reads to the close either way).
        "close-delimited"
            if connection(f).as_deref() == Some("close")
                && connection(d).as_deref() == Some("keep-alive")
                && !f.chunked
                && !d.chunked
                && f.header("content-length").is_none()
                && f.after.is_none()
                && d.after.is_none() =>
        {
            for a in [&mut *f, &mut *d] {
                a.headers.retain(|(n, _)| n != "connection");
            }
            Some(CLOSE_DELIMITED)
        }
        name if name.starts_with("chunked")
            && f.chunked
            && d.chunked
            && (!f.extensions.is_empty() || !f.trailers.is_empty())
            && d.extensions.is_empty()
            && d.trailers.is_empty() =>
        {
            // Exactly what the backend sent.
            let sent = lossy(&shape.body);
            for e in f.extensions.iter().chain(&f.trailers) {
                assert!(sent.contains(&lossy(e)), "{e:?} is not the backend's");
            }
            f.extensions.clear();
            f.trailers.clear();
            Some(CHUNKED_AS_SENT)
        }
        "http10-response" if f.version == 1 && d.version == 0 => {
            d.version = 1;
            Some(OWN_VERSION)
        }
        // The fast path checks the framing before the head leaves: no response has
        // started, so the client gets the lb's 502 rather than a cut body.
        "chunked-bare-lf" if f.status == 502 && d.status == 200 && d.incomplete.is_some() => {
            fast.seen = direct.seen.clone();
            Some(NOT_CHUNKED)
        }
        _ => None,
    }
}

/// The access log's `pipeline` for each of `ids`, waited for (lines come in batches).
async fn pipelines(lb: &Lb, ids: &[String]) -> HashMap<String, String> {
    let mut found = HashMap::new();
    support::eventually(Duration::from_secs(10), "every access line", || {
        found.clear();
        for line in lb
            .log()
            .lines()
            .filter(|l| l.contains("\"target\":\"access\""))
        {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if let (Some(id), Some(p)) = (v["request_id"].as_str(), v["pipeline"].as_str()) {
                found.insert(id.to_string(), p.to_string());
            }
        }
        let all = ids.iter().all(|id| found.contains_key(id));
        async move { all }
    })
    .await;
    found
}

fn config(backend: &Backend) -> String {
    let a = backend.addr;
    format!(
        "routes:\n  - {{ prefix: /, upstream: app }}\n  - {{ prefix: /strip/, upstream: app, strip_prefix: true }}\n  \
         - {{ prefix: /hosted/, upstream: hosted }}\nupstreams:\n  \
         app: {{ discovery: {{ static: [\"{a}\"] }}, retries: 0 }}\n  \
         hosted: {{ discovery: {{ static: [\"{a}\"] }}, retries: 0, host: backend.internal }}\n"
    )
}

/// The backend and two lbs in front of it: the default (fast path) and `fast_path: false`,
/// each with its `server` lines.
async fn setup(fast_extra: &str, direct_extra: &str) -> (Backend, Lb, Lb) {
    let backend = Backend::start().await;
    let body = config(&backend);
    let mut fast = Lb::start(fast_extra, &body);
    let mut direct = Lb::start(&format!("  fast_path: false\n{direct_extra}"), &body);
    fast.wait_ready().await;
    direct.wait_ready().await;
    (backend, fast, direct)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_paths_forward_and_answer_the_same() {
    let (backend, fast_lb, direct_lb) = setup("", "").await;
    let (fast, direct) = (Via::Plain(fast_lb.port), Via::Plain(direct_lb.port));
    differential(&backend, (&fast_lb, fast), (&direct_lb, direct)).await;
}

/// The same over TLS listeners: the fast path serves HTTP/1.1 there too. (Their own
/// loopback address: a second listener on 127.0.0.1:0 could not be told apart.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_paths_forward_and_answer_the_same_over_tls() {
    let dir = tempfile::tempdir().expect("dir");
    let listener = |name: &str| {
        format!(
            "  tls_listen:\n    - address: \"127.0.0.9:0\"\n      certificates: [ {{ local_ca: {:?}, names: [localhost, 127.0.0.9], default: true }} ]\n",
            dir.path().join(name)
        )
    };
    let (backend, fast_lb, direct_lb) = setup(&listener("fast"), &listener("direct")).await;
    let fast = Via::Tls(support::tls_addr(&fast_lb, 0).await);
    let direct = Via::Tls(support::tls_addr(&direct_lb, 0).await);
    differential(&backend, (&fast_lb, fast), (&direct_lb, direct)).await;
}

/// Every case of the corpus through both lbs, reached `via` their listeners.
async fn differential(
    backend: &Backend,
    (fast_lb, fast_via): (&Lb, Via),
    (direct_lb, direct_via): (&Lb, Via),
) {
    let shapes = shapes();
    let cases = corpus(&shapes);

    let mut problems = Vec::new();
    let mut resends = 0;
    let mut named: BTreeMap<&'static str, usize> = BTreeMap::new();
    // (case, fast lb's id, direct lb's id) for the access-log check.
    let mut ids = Vec::new();
    for case in &cases {
        let shape = &shapes[case.shape];
        let (mut fast, fast_id, fast_resent) = run(fast_via, backend, case, shape).await;
        let (mut direct, direct_id, direct_resent) = run(direct_via, backend, case, shape).await;
        let what = format!(
            "{} [answer: {}]\n  request: {:?}",
            case.name,
            shape.name,
            lossy(&case.request)
        );
        // A request is sent again only when a reused connection gave no usable answer: a
        // stale connection, or (a finding, both paths: `failover::reconnect_stale` takes
        // any error before the answer for a stale connection) an answer the lb refuses.
        for (lb, resent, outcome) in [
            ("fast", fast_resent, &fast),
            ("direct", direct_resent, &direct),
        ] {
            let refused_answer = matches!(&outcome.seen, Seen::Answer(a) if a.status == 502);
            if resent > 0 {
                if refused_answer && UNUSABLE.contains(&shape.name) {
                    resends += 1;
                } else {
                    problems.push(format!(
                        "{what}\n  the {lb} lb sent it {} times: {outcome:?}",
                        resent + 1
                    ));
                }
            }
        }
        if case.expect == Expect::Refused {
            let client_error = match &fast.seen {
                Seen::Answer(a) => (400..500).contains(&a.status),
                Seen::Closed => true,
                Seen::Hung(_) | Seen::Broken(_) => false,
            };
            if !fast.forwarded.is_empty() || !client_error {
                problems.push(format!("{what}\n  refused, yet: {fast:?}"));
            }
        } else {
            for (lb, outcome) in [("fast", &fast), ("direct", &direct)] {
                if outcome.forwarded.len() != 1 {
                    problems.push(format!(
                        "{what}\n  the {lb} lb did not forward it once: {outcome:?}"
                    ));
                }
            }
            if let (Some(f), Some(d)) = (fast_id, direct_id) {
                ids.push((case, f, d));
            }
        }
        if let Some(name) = intended(shape, &mut fast, &mut direct) {
            *named.entry(name).or_default() += 1;
        }
        if fast != direct {
            problems.push(format!(
                "{what}\n  fast:    {fast:?}\n  direct:  {direct:?}"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems in {} cases:\n{}",
        problems.len(),
        cases.len(),
        problems.join("\n")
    );
    for name in INTENDED {
        assert!(
            named.contains_key(name),
            "the corpus never showed the intended difference {name:?}: {named:?}"
        );
    }
    eprintln!("intended differences: {named:?}; resends after an unusable answer: {resends}");

    // Each request took the path it was meant to.
    let fast_ids: Vec<String> = ids.iter().map(|(_, f, _)| f.clone()).collect();
    let direct_ids: Vec<String> = ids.iter().map(|(_, _, d)| d.clone()).collect();
    let (on_fast, on_direct) = (
        pipelines(fast_lb, &fast_ids).await,
        pipelines(direct_lb, &direct_ids).await,
    );
    let mut simple = 0;
    for (case, f, d) in &ids {
        let (pf, pd) = (&on_fast[f], &on_direct[d]);
        match case.expect {
            Expect::Simple => {
                simple += 1;
                assert_eq!(
                    (pf.as_str(), pd.as_str()),
                    ("fast", "direct"),
                    "{}",
                    case.name
                );
            }
            Expect::NotSimple => {
                assert_ne!(pf, "fast", "{}", case.name);
                assert_eq!(pf, pd, "{}: the same path from both lbs", case.name);
            }
            Expect::Refused => unreachable!("refused cases log no request"),
        }
    }
    assert!(
        simple > GENERATED / 2,
        "only {simple} simple requests were checked"
    );
}

/// Two GETs in one write: both answered, in order, on the fast path; then a request that
/// is not simple (a POST with a body) and a simple one again, on the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_and_mixed_requests_on_one_connection() {
    let (backend, fast_lb, _direct_lb) = setup("", "").await;
    let shapes = shapes();
    for shape in ["length", "chunked-extensions"] {
        let shape = shapes.iter().find(|s| s.name == shape).expect("shape");
        backend.answer_with(shape);
        let mut client = Client::connect(&fast_lb).await;
        let tag = shape.name;
        client
            .send(
                format!(
                    "GET /one HTTP/1.1\r\nHost: t\r\nX-Request-Id: {tag}-one\r\n\r\n\
                     GET /two HTTP/1.1\r\nHost: t\r\nX-Request-Id: {tag}-two\r\n\r\n"
                )
                .as_bytes(),
            )
            .await;
        for n in ["one", "two"] {
            let Seen::Answer(a) = client.answer(false).await else {
                panic!("{tag}: no answer to {n}");
            };
            assert_eq!(a.status, 200, "{tag} {n}");
            assert_eq!(
                a.header("x-request-id"),
                Some(format!("{tag}-{n}").as_bytes())
            );
            assert_eq!(a.body, b"hello", "{tag} {n}");
        }
        client
            .send(
                format!(
                    "POST /three HTTP/1.1\r\nHost: t\r\nX-Request-Id: {tag}-three\r\nContent-Length: 5\r\n\r\nabcde"
                )
                .as_bytes(),
            )
            .await;
        let Seen::Answer(a) = client.answer(false).await else {
            panic!("{tag}: no answer to the POST");
        };
        assert_eq!((a.status, a.body.as_slice()), (200, &b"hello"[..]), "{tag}");
        client
            .send(
                format!("GET /four HTTP/1.1\r\nHost: t\r\nX-Request-Id: {tag}-four\r\n\r\n")
                    .as_bytes(),
            )
            .await;
        let Seen::Answer(a) = client.answer(false).await else {
            panic!("{tag}: no answer to the GET after the POST");
        };
        assert_eq!((a.status, a.body.as_slice()), (200, &b"hello"[..]), "{tag}");

        let got: Vec<String> = backend
            .take()
            .iter()
            .map(|raw| {
                let (f, _) = forwarded(raw, tag);
                format!("{} {}", f.line, lossy(&f.body.0))
            })
            .collect();
        assert_eq!(
            got,
            [
                "GET /one HTTP/1.1 ",
                "GET /two HTTP/1.1 ",
                "POST /three HTTP/1.1 abcde",
                "GET /four HTTP/1.1 "
            ],
            "{tag}"
        );
        for (n, pipeline) in [
            ("one", "fast"),
            ("two", "fast"),
            ("three", "engine"),
            ("four", "fast"),
        ] {
            let line = support::access_line(&fast_lb, &format!("{tag}-{n}")).await;
            assert_eq!(line["pipeline"], pipeline, "{line}");
        }
    }
}
