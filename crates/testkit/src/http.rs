//! A local HTTP server for tests of HTTP sources: the test supplies a handler that answers as
//! the real API documents (paging, auth, errors); the server records every request. Several
//! connections are served at once (concurrency tests); a response can be delayed or gzipped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value as Json;

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct FakeRequest {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl FakeRequest {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Json {
        serde_json::from_slice(&self.body).unwrap_or(Json::Null)
    }
    /// The body as a form (`a=1&b=2`), decoded.
    pub fn form(&self) -> Vec<(String, String)> {
        parse_query(&String::from_utf8_lossy(&self.body))
    }
    pub fn form_value(&self, name: &str) -> Option<String> {
        self.form().into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// An answer.
#[derive(Debug, Clone)]
pub struct FakeResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Option<Duration>,
    pub gzip: bool,
}

impl FakeResponse {
    pub fn json(value: Json) -> Self {
        FakeResponse::raw(200, "application/json", value.to_string().into_bytes())
    }
    pub fn status(status: u16, body: &str) -> Self {
        FakeResponse::raw(status, "application/json", body.as_bytes().to_vec())
    }
    pub fn text(status: u16, content_type: &str, body: &str) -> Self {
        FakeResponse::raw(status, content_type, body.as_bytes().to_vec())
    }
    pub fn raw(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        FakeResponse {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
            delay: None,
            gzip: false,
        }
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = Some(d);
        self
    }
    /// Send the body gzip-encoded (when the client accepts it).
    pub fn gzipped(mut self) -> Self {
        self.gzip = true;
        self
    }
}

type Handler = dyn Fn(&FakeRequest) -> FakeResponse + Send + Sync;

/// A running server; stops on drop. One thread per connection with keep-alive (tiny_http's
/// pool queues new connections behind open keep-alive ones, which stalls concurrent clients).
pub struct FakeApi {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<FakeRequest>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl FakeApi {
    /// Start on a free port.
    pub fn start(handler: impl Fn(&FakeRequest) -> FakeResponse + Send + Sync + 'static) -> Self {
        Self::start_on("127.0.0.1:0", handler)
    }

    pub fn start_on(addr: &str, handler: impl Fn(&FakeRequest) -> FakeResponse + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind(addr).expect("bind the fake API");
        let addr = listener.local_addr().expect("local address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (r, st) = (requests.clone(), stop.clone());
        let acceptor = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (r, h, st) = (r.clone(), handler.clone(), st.clone());
                std::thread::spawn(move || serve(conn, &r, &*h, &st));
            }
        });
        FakeApi { url: format!("http://{addr}"), addr, stop, requests, acceptor: Some(acceptor) }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<FakeRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// How many requests reached `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.requests.lock().unwrap().iter().filter(|r| r.path == path).count()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor.
        let _ = TcpStream::connect(self.addr);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

/// Serve one connection's requests until it closes (or the server stops).
fn serve(conn: TcpStream, requests: &Mutex<Vec<FakeRequest>>, handler: &Handler, stop: &AtomicBool) {
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut writer = conn;
    loop {
        let req = match read_request(&mut reader, stop) {
            Some(r) => r,
            None => return,
        };
        requests.lock().unwrap().push(req.clone());
        let resp = handler(&req);
        if let Some(d) = resp.delay {
            std::thread::sleep(d);
        }
        let accepts_gzip = req.header("accept-encoding").is_some_and(|v| v.contains("gzip"));
        let mut headers = resp.headers.clone();
        let body = if resp.gzip && accepts_gzip {
            headers.push(("Content-Encoding".into(), "gzip".into()));
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            let _ = e.write_all(&resp.body);
            e.finish().unwrap_or_default()
        } else {
            resp.body.clone()
        };
        let mut out = format!("HTTP/1.1 {} {}\r\nContent-Length: {}\r\n", resp.status, reason(resp.status), body.len());
        for (k, v) in &headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&body);
        if writer.write_all(&bytes).and_then(|_| writer.flush()).is_err() {
            return;
        }
    }
}

/// Read one request (line, headers, Content-Length body); `None` at EOF or on stop.
fn read_request(reader: &mut BufReader<TcpStream>, stop: &AtomicBool) -> Option<FakeRequest> {
    let mut line = String::new();
    loop {
        match reader.read_line(&mut line) {
            Ok(0) => return None,
            Ok(_) if line.ends_with('\n') => break,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if stop.load(Ordering::SeqCst) {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => return None,
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    let mut got = 0;
    while got < len {
        match reader.read(&mut body[got..]) {
            Ok(0) => return None,
            Ok(n) => got += n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => return None,
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
    Some(FakeRequest { method, path: path.to_owned(), query: parse_query(query), headers, body })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// `a=1&b=x%20y` → pairs, percent- and plus-decoded.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

pub(crate) fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
