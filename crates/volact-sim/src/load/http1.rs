//! The load tool's HTTP/1.1 client: one keep-alive TCP connection per load task, one
//! request in flight on it, answers read by `Content-Length` from a buffer the
//! connection keeps.
//!
//! It exists because the tool shares the machine it measures: every microsecond it
//! spends per request is taken from the host. Measured on a 2-core machine shared with the
//! host, hyper's client cost about 24 µs of CPU per request, this one about 15 µs. It gets
//! there by doing only what the host's answers need: each request goes out in one
//! `write`, there is no pool, no body streaming and no header map, and the answer head is
//! parsed in place by `httparse` (the parser hyper itself uses) for the three things the
//! tool reads: status, `Content-Length` and whether the connection stays open.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// How connections to an `https://` target are made: the rustls connector (HTTP/1.1 by
/// ALPN, since this client speaks nothing else) and the name sent in the handshake.
#[derive(Clone)]
pub(super) struct TlsConnect {
    pub(super) connector: tokio_rustls::TlsConnector,
    pub(super) name: rustls_pki_types::ServerName<'static>,
}

/// A connection's stream: plain TCP (no indirection on that path) or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An answer head longer than this is not one the host would send.
const MAX_HEAD: usize = 16 * 1024;
/// An answer larger than this is not one the host would send; refusing it bounds the
/// buffer each connection keeps.
const MAX_ANSWER: usize = 1024 * 1024;
/// Header lines an answer may carry; the host sends a handful.
const MAX_HEADERS: usize = 32;

/// One keep-alive connection and the bytes read from it but not yet consumed.
pub(super) struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// Where an answer lies in the connection's buffer.
pub(super) struct Answer {
    pub(super) status: u16,
    body_start: usize,
    body_end: usize,
    pub(super) close: bool,
}

/// Sends one request, connecting first if needed, and reads its answer.
pub(super) async fn exchange(
    conn: &mut Option<Conn>,
    addr: SocketAddr,
    tls: Option<&TlsConnect>,
    request: &[u8],
) -> Result<Answer, &'static str> {
    let c = match conn {
        Some(c) => c,
        None => {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|_| "cannot connect")?;
            let _ = tcp.set_nodelay(true);
            let stream = match tls {
                None => Stream::Plain(tcp),
                Some(t) => Stream::Tls(Box::new(
                    t.connector
                        .connect(t.name.clone(), tcp)
                        .await
                        .map_err(|_| "TLS handshake failed")?,
                )),
            };
            conn.insert(Conn {
                stream,
                // Room for an activation answer (about 2 KiB) several times over.
                buf: vec![0; 8 * 1024],
                start: 0,
                end: 0,
            })
        }
    };
    c.stream
        .write_all(request)
        .await
        .map_err(|_| "cannot send")?;
    if matches!(c.stream, Stream::Tls(_)) {
        // rustls buffers what is written until flushed.
        c.stream.flush().await.map_err(|_| "cannot send")?;
    }
    c.answer().await
}

impl Conn {
    /// Reads more bytes, making room so that `want` bytes from `start` fit.
    async fn fill(&mut self, want: usize) -> Result<(), &'static str> {
        if want > MAX_ANSWER {
            return Err("answer too large");
        }
        if self.start + want > self.buf.len() || self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if want > self.buf.len() {
                self.buf
                    .resize(want.max(self.buf.len() * 2).min(MAX_ANSWER), 0);
            }
        }
        let n = self
            .stream
            .read(&mut self.buf[self.end..])
            .await
            .map_err(|_| "cannot read")?;
        if n == 0 {
            return Err("the host closed the connection");
        }
        self.end += n;
        Ok(())
    }

    /// Reads the next complete answer (skipping interim 1xx ones).
    async fn answer(&mut self) -> Result<Answer, &'static str> {
        loop {
            let head = loop {
                if let Some(head) = parse_head(&self.buf[self.start..self.end])? {
                    break head;
                }
                self.fill(self.end - self.start + 1).await?;
            };
            let whole = head.len + head.content_length;
            while self.end - self.start < whole {
                self.fill(whole).await?;
            }
            if head.status < 200 {
                self.start += whole;
                continue;
            }
            return Ok(Answer {
                status: head.status,
                body_start: self.start + head.len,
                body_end: self.start + whole,
                close: head.close,
            });
        }
    }

    /// The answer's body; its bytes count as consumed from here on.
    pub(super) fn take(&mut self, answer: &Answer) -> &[u8] {
        self.start = answer.body_end;
        if self.start == self.end {
            // Nothing is pipelined, so this is the usual case: the next answer starts at
            // the front of the buffer and never needs moving.
            (self.start, self.end) = (0, 0);
        }
        self.buf
            .get(answer.body_start..answer.body_end)
            .unwrap_or_default()
    }
}

/// The parts of an answer head the tool needs.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    /// Bytes of the head, blank line included.
    len: usize,
    status: u16,
    content_length: usize,
    /// The host will close the connection after this answer.
    close: bool,
}

/// Parses an HTTP/1.1 answer head, or `None` if `bytes` does not hold all of it yet. Only
/// `Content-Length` bodies are read: the host sends nothing else, and a chunked answer is
/// refused rather than misread.
fn parse_head(bytes: &[u8]) -> Result<Option<Head>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Partial) if bytes.len() <= MAX_HEAD => return Ok(None),
        Ok(_) => return Err("answer head too large"),
        Err(httparse::Error::Version) => return Err("not an HTTP/1.1 answer"),
        Err(httparse::Error::Status) => return Err("bad status line"),
        Err(httparse::Error::TooManyHeaders) => return Err("too many header lines"),
        Err(_) => return Err("bad header line"),
    };
    let status = response
        .code
        .filter(|s| (100..600).contains(s))
        .ok_or("bad status line")?;
    // HTTP/1.0 closes after each answer unless it says otherwise; HTTP/1.1 keeps the
    // connection unless it says otherwise.
    let mut close = response.version == Some(0);
    let mut content_length = None;
    for header in response.headers.iter() {
        let value = header.value.trim_ascii();
        if header.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or("bad content-length")?;
            if content_length.is_some_and(|c| c != n) {
                return Err("conflicting content-length");
            }
            content_length = Some(n);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("chunked answers are not supported");
        } else if header.name.eq_ignore_ascii_case("connection") {
            let has = |token: &[u8]| {
                value
                    .split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
            };
            if has(b"close") {
                close = true;
            } else if has(b"keep-alive") {
                close = false;
            }
        }
    }
    let content_length = match content_length {
        Some(n) => n,
        None if status < 200 || status == 204 || status == 304 => 0,
        None => return Err("answer without content-length"),
    };
    Ok(Some(Head {
        len,
        status,
        content_length,
        close,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn answer_heads() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\ndate: x\r\n\r\n{\"result\":1}";
        let parsed = parse_head(head).unwrap().unwrap();
        assert_eq!(
            parsed,
            Head {
                len: head.len() - 12,
                status: 200,
                content_length: 12,
                close: false
            }
        );
        for cut in 0..head.len() - 12 {
            assert_eq!(parse_head(&head[..cut]).unwrap(), None, "cut at {cut}");
        }
        let close =
            parse_head(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(
            (close.status, close.content_length, close.close),
            (503, 0, true)
        );
        let old = parse_head(b"HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(old.close);
        let old =
            parse_head(b"HTTP/1.0 200 OK\r\ncontent-length: 3\r\nconnection: Keep-Alive\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(!old.close);
        let interim = parse_head(b"HTTP/1.1 100 Continue\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((interim.status, interim.content_length), (100, 0));
        for bad in [
            &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 2x0 OK\r\ncontent-length: 1\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\ncontent-length: 1\r\n\r\n",
            b"HTTP/2 200\r\ncontent-length: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        ] {
            assert!(parse_head(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(parse_head(&vec![b'a'; MAX_HEAD + 1]).is_err());
        let mut long = b"HTTP/1.1 200 OK\r\nx: ".to_vec();
        long.resize(MAX_HEAD + 1, b'a');
        assert!(parse_head(&long).is_err());
        long.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
        assert!(parse_head(&long).is_err());
        let mut many = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n".to_vec();
        for _ in 0..MAX_HEADERS {
            many.extend_from_slice(b"x: y\r\n");
        }
        many.extend_from_slice(b"\r\n");
        assert!(parse_head(&many).is_err());
    }
}
