//! The metrics listener: a tiny HTTP/1.x server on std sockets and poll(2), built so that no
//! client can keep the others out.
//!
//! One thread (`oomguard-metrics`) owns the listening socket and every connection whose request
//! has not fully arrived. It accepts and reads without blocking and gives each connection one
//! deadline for its whole request ([`REQUEST_DEADLINE`], counted from accept, not per read): a
//! client that trickles bytes or sends nothing is closed when it runs out. At most
//! [`MAX_CONNECTIONS`] such connections are kept; a new one beyond that closes the oldest, so a
//! flood of idle connections cannot keep a real scrape out (its request usually comes in its
//! first segment and is answered at once).
//!
//! Complete requests are answered as follows: `/healthz`, `/`, errors and anything else that
//! needs no rendering are answered by the poll thread itself (a few hundred bytes into a fresh
//! socket buffer never block), so probes never wait behind `/metrics`. `/metrics` goes through a
//! small bounded queue to [`WORKERS`] threads that render under the registry's short lock and
//! write with a deadline; when every worker is busy and the queue is full the scrape gets
//! `503` at once. The counters of closed connections are exported
//! (`oomguard_metrics_connections_closed_total`).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};

use super::CONTENT_TYPE;
use crate::record::side;

/// How long a client has for its whole request, from accept to the blank line that ends it.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(3);

/// Connections kept while their request is still coming; one more closes the oldest.
pub const MAX_CONNECTIONS: usize = 64;

/// Threads that render and write `/metrics` answers.
pub const WORKERS: usize = 2;

/// Complete `/metrics` requests that may wait for a worker; beyond that the answer is `503`.
const QUEUE: usize = 8;

/// The longest request head read; a longer one is answered `431`.
const MAX_REQUEST: usize = 16 * 1024;

/// How long a worker may take to write one answer.
const WRITE_DEADLINE: Duration = Duration::from_secs(5);

/// Connections the listener closed without an answer, by why.
#[derive(Debug, Default)]
pub struct Stats {
    /// The whole request did not arrive within [`REQUEST_DEADLINE`].
    pub deadline: AtomicU64,
    /// Closed to make room: [`MAX_CONNECTIONS`] were open with their requests incomplete.
    pub evicted: AtomicU64,
    /// Answered `503`: every worker was busy and the queue full.
    pub busy: AtomicU64,
}

/// Renders the exposition text.
pub(super) type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Binds `addr` and starts the poll thread and the workers; returns the bound address.
pub(super) fn serve(addr: &str, render: Render, stats: Arc<Stats>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let (jobs, queue) = sync_channel::<Job>(QUEUE);
    let queue = Arc::new(Mutex::new(queue));
    for i in 0..WORKERS {
        let queue = Arc::clone(&queue);
        let render = Arc::clone(&render);
        side::spawn_background(format!("oomguard-metrics-w{i}"), move || {
            worker(&queue, &*render)
        })?;
    }
    let mut server = Server {
        listener,
        conns: Vec::with_capacity(MAX_CONNECTIONS),
        jobs,
        stats,
    };
    side::spawn_background("oomguard-metrics", move || server.run())?;
    Ok(local)
}

/// A connection whose request is still coming.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    accepted: Instant,
}

/// A complete `/metrics` request for a worker.
struct Job {
    stream: TcpStream,
    head_only: bool,
}

struct Server {
    listener: TcpListener,
    /// Oldest first (accept order).
    conns: Vec<Conn>,
    jobs: SyncSender<Job>,
    stats: Arc<Stats>,
}

/// What a connection's request came to after a read.
enum Progress {
    /// Still coming: keep the connection.
    Pending(Conn),
    /// Answered, handed to a worker, or closed.
    Done,
}

impl Server {
    fn run(&mut self) {
        loop {
            let now = Instant::now();
            self.expire(now);
            let timeout = self
                .conns
                .first()
                .map(|c| (c.accepted + REQUEST_DEADLINE).saturating_duration_since(now))
                .map(|d| Timespec {
                    tv_sec: d.as_secs() as i64,
                    tv_nsec: d.subsec_nanos() as i64,
                });
            let mut fds = Vec::with_capacity(self.conns.len() + 1);
            fds.push(PollFd::new(&self.listener, PollFlags::IN));
            for c in &self.conns {
                fds.push(PollFd::new(&c.stream, PollFlags::IN));
            }
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    log::warn!("metrics: poll failed: {e}; retrying");
                    drop(fds);
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            }
            let incoming = !fds[0].revents().is_empty();
            let ready: Vec<bool> = fds[1..].iter().map(|f| !f.revents().is_empty()).collect();
            drop(fds);
            let conns = std::mem::take(&mut self.conns);
            for (c, r) in conns.into_iter().zip(ready) {
                let p = if r {
                    self.read(c)
                } else {
                    Progress::Pending(c)
                };
                if let Progress::Pending(c) = p {
                    self.conns.push(c);
                }
            }
            if incoming {
                self.accept_all();
            }
        }
    }

    /// Closes the connections whose request deadline has passed (the oldest come first).
    fn expire(&mut self, now: Instant) {
        let late = self
            .conns
            .iter()
            .take_while(|c| now >= c.accepted + REQUEST_DEADLINE)
            .count();
        if late > 0 {
            // Counted before the close: a client that sees its connection end finds it counted.
            self.stats
                .deadline
                .fetch_add(late as u64, Ordering::Relaxed);
            self.conns.drain(..late);
            log::debug!("metrics: closed {late} connection(s) whose request did not come in time");
        }
    }

    /// Accepts every waiting connection; each reads what it already sent, and one that must
    /// wait takes a place in the table (closing the oldest when the table is full).
    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let c = Conn {
                        stream,
                        buf: Vec::new(),
                        accepted: Instant::now(),
                    };
                    if let Progress::Pending(c) = self.read(c) {
                        if self.conns.len() >= MAX_CONNECTIONS {
                            self.stats.evicted.fetch_add(1, Ordering::Relaxed);
                            self.conns.remove(0);
                        }
                        self.conns.push(c);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // Out of file descriptors or memory: free one place and let the next poll
                    // retry, without spinning on a listener that stays readable.
                    log::debug!("metrics: accept failed: {e}");
                    if !self.conns.is_empty() {
                        self.stats.evicted.fetch_add(1, Ordering::Relaxed);
                        self.conns.remove(0);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                    return;
                }
            }
        }
    }

    /// Reads what the connection has sent so far, without blocking; answers or hands it on
    /// once the request is complete.
    fn read(&self, mut c: Conn) -> Progress {
        let mut chunk = [0u8; 2048];
        loop {
            let want = chunk.len().min(MAX_REQUEST + 1 - c.buf.len());
            match c.stream.read(&mut chunk[..want]) {
                Ok(0) => {
                    // The client closed its side: answer what came, if anything did.
                    if !c.buf.is_empty() {
                        self.dispatch(c.stream, &c.buf);
                    }
                    return Progress::Done;
                }
                Ok(n) => {
                    let from = c.buf.len().saturating_sub(3);
                    c.buf.extend_from_slice(&chunk[..n]);
                    if memchr::memmem::find(&c.buf[from..], b"\r\n\r\n").is_some() {
                        self.dispatch(c.stream, &c.buf);
                        return Progress::Done;
                    }
                    if c.buf.len() > MAX_REQUEST {
                        answer_now(
                            c.stream,
                            &response(
                                "431 Request Header Fields Too Large",
                                TEXT,
                                "request head too large\n",
                                false,
                            ),
                        );
                        return Progress::Done;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Progress::Pending(c),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Progress::Done,
            }
        }
    }

    /// Answers a complete request here, or hands a `/metrics` one to a worker.
    fn dispatch(&self, stream: TcpStream, req: &[u8]) {
        match route(req) {
            Route::Metrics { head_only } => match self.jobs.try_send(Job { stream, head_only }) {
                Ok(()) => {}
                Err(TrySendError::Full(j) | TrySendError::Disconnected(j)) => {
                    self.stats.busy.fetch_add(1, Ordering::Relaxed);
                    answer_now(
                        j.stream,
                        &response(
                            "503 Service Unavailable",
                            TEXT,
                            "busy; try again\n",
                            head_only,
                        ),
                    );
                }
            },
            Route::Fixed {
                status,
                ctype,
                body,
                head_only,
            } => answer_now(stream, &response(status, ctype, body, head_only)),
        }
    }
}

/// Writes a short answer without blocking and closes the connection. A few hundred bytes fit
/// in a fresh socket's send buffer; a client that cannot take them loses the answer.
fn answer_now(mut stream: TcpStream, bytes: &[u8]) {
    let mut sent = 0;
    while sent < bytes.len() {
        match stream.write(&bytes[sent..]) {
            Ok(0) => break,
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// A worker: renders and writes `/metrics` answers from the queue until the poll thread ends.
fn worker(queue: &Mutex<Receiver<Job>>, render: &(dyn Fn() -> String + Send + Sync)) {
    loop {
        let job = match queue.lock().unwrap_or_else(|p| p.into_inner()).recv() {
            Ok(j) => j,
            Err(_) => return,
        };
        let body = render();
        let bytes = response("200 OK", CONTENT_TYPE, &body, job.head_only);
        if let Err(e) = write_by(job.stream, &bytes, Instant::now() + WRITE_DEADLINE) {
            log::debug!("metrics: a scrape failed: {e}");
        }
    }
}

/// Writes `bytes` in blocking mode, giving up at `deadline` (for the whole answer, not per
/// write), then closes the connection.
fn write_by(mut stream: TcpStream, bytes: &[u8], deadline: Instant) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    let mut sent = 0;
    while sent < bytes.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                ErrorKind::TimedOut,
                "the client did not take the answer in time",
            ));
        }
        stream.set_write_timeout(Some(left))?;
        match stream.write(&bytes[sent..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    stream.shutdown(std::net::Shutdown::Write)
}

const TEXT: &str = "text/plain; charset=utf-8";

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// The exposition: rendered by a worker.
    Metrics { head_only: bool },
    /// A fixed answer the poll thread writes itself.
    Fixed {
        status: &'static str,
        ctype: &'static str,
        body: &'static str,
        head_only: bool,
    },
}

/// Picks the answer for a raw request: `/metrics` → the exposition, `/healthz` → `ok` (no
/// lock, no rendering: liveness and readiness probes stay cheap), `/` → a pointer to it.
fn route(req: &[u8]) -> Route {
    let line = req
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(b"");
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or(b"");
    let target = parts.next().unwrap_or(b"");
    let path = target.split(|&b| b == b'?').next().unwrap_or(b"");
    let head_only = method == b"HEAD";
    let fixed = |status, ctype, body| Route::Fixed {
        status,
        ctype,
        body,
        head_only,
    };
    if method != b"GET" && !head_only {
        return fixed("405 Method Not Allowed", TEXT, "only GET\n");
    }
    match path {
        b"/metrics" => Route::Metrics { head_only },
        b"/healthz" => fixed("200 OK", TEXT, "ok\n"),
        b"/" => fixed(
            "200 OK",
            "text/html; charset=utf-8",
            "<html><body><a href=\"/metrics\">oomguard metrics</a></body></html>\n",
        ),
        _ => fixed("404 Not Found", TEXT, "not found; try /metrics\n"),
    }
}

/// An HTTP/1.1 answer that closes the connection.
fn response(status: &str, ctype: &str, body: &str, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed_status(r: Route) -> &'static str {
        match r {
            Route::Fixed { status, .. } => status,
            Route::Metrics { .. } => "metrics",
        }
    }

    #[test]
    fn routes_requests() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics { head_only: false }
        );
        assert_eq!(
            route(b"HEAD /metrics HTTP/1.1\r\n\r\n"),
            Route::Metrics { head_only: true }
        );
        assert_eq!(
            route(b"GET /healthz HTTP/1.1\r\n\r\n"),
            Route::Fixed {
                status: "200 OK",
                ctype: TEXT,
                body: "ok\n",
                head_only: false
            }
        );
        assert_eq!(
            fixed_status(route(b"GET /x HTTP/1.1\r\n\r\n")),
            "404 Not Found"
        );
        assert_eq!(
            fixed_status(route(b"POST /metrics HTTP/1.1\r\n\r\n")),
            "405 Method Not Allowed"
        );
        assert_eq!(
            route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Route::Metrics { head_only: false }
        );
    }

    #[test]
    fn a_head_answer_has_no_body_but_the_length() {
        let r = String::from_utf8(response("200 OK", TEXT, "abc", true)).unwrap();
        assert!(
            r.ends_with("Content-Length: 3\r\nConnection: close\r\n\r\n"),
            "{r}"
        );
        let r = String::from_utf8(response("200 OK", TEXT, "abc", false)).unwrap();
        assert!(r.ends_with("\r\n\r\nabc"), "{r}");
    }

    /// The table cap and the whole-request deadline, on a real loopback listener (the
    /// integration test `metrics_slowloris` drives the daemon's).
    #[test]
    fn a_full_table_closes_the_oldest_and_a_late_request_is_cut() {
        let stats = Arc::new(Stats::default());
        let addr = serve("127.0.0.1:0", Arc::new(|| "m\n".to_string()), stats.clone()).unwrap();
        let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS + 5)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        assert!(
            got.starts_with("HTTP/1.1 200 OK\r\n") && got.ends_with("\r\n\r\nm\n"),
            "{got}"
        );
        // The six oldest idle connections made room (the scrape itself may have taken one).
        let t = Instant::now();
        while stats.evicted.load(Ordering::Relaxed) < 5 && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(stats.evicted.load(Ordering::Relaxed) >= 5);
        let mut first = &idle[0];
        first
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut b = [0u8; 1];
        assert!(
            matches!(first.read(&mut b), Ok(0)),
            "the oldest was not closed"
        );
        // The newest idle one is cut at its deadline.
        let mut last = &idle[MAX_CONNECTIONS + 4];
        last.set_read_timeout(Some(REQUEST_DEADLINE * 4)).unwrap();
        assert!(
            matches!(last.read(&mut b), Ok(0)),
            "not cut at the deadline"
        );
        let t = Instant::now();
        while stats.deadline.load(Ordering::Relaxed) < 1 && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(stats.deadline.load(Ordering::Relaxed) >= 1);
    }
}
