//! The HTTP(S) listener every node serves on.
//!
//! actix-http answers some requests itself, before any handler runs: a head
//! over its 128 KiB buffer or with more than 96 headers (431), a request it
//! cannot parse (400), a head that does not arrive in time (408). Those
//! answers have an empty body. [`EarlyErrors`] sits between the connection
//! and actix-http and rewrites them, on their way out, into the API's
//! envelope with a message that says what to fix; everything else passes
//! through untouched.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::body::MessageBody;
use actix_http::error::DispatchError;
use actix_http::{HttpService, Protocol, Request, Response};
use actix_server::Server;
use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactory, ServiceFactoryExt as _};
use actix_tls::accept::rustls_0_23::{Acceptor, TlsStream};
use actix_web::dev::AppConfig;
use dts_core::ErrorCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Serves what `factory` builds on `listener`, on `workers` threads:
/// HTTPS only (HTTP/2 and HTTP/1.1) with `tls`, plain HTTP/1.1 without.
/// The caller runs the returned server and stops it through its handle.
pub fn serve_on<F, I, S, B>(
    factory: F,
    listener: std::net::TcpListener,
    workers: usize,
    tls: Option<rustls::ServerConfig>,
) -> io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as actix_service::Service<Request>>::Future: 'static,
    B: MessageBody + 'static,
{
    let addr = listener.local_addr()?;
    let builder = Server::build().workers(workers.max(1)).disable_signals().shutdown_timeout(10);
    let builder = match tls {
        None => builder.listen("dts-http", listener, move || {
            fn_service(|io: TcpStream| async move {
                let peer = io.peer_addr().ok();
                // Small answers go out at once rather than after Nagle's delay.
                io.set_nodelay(true)?;
                Ok((EarlyErrors::new(io, true), Protocol::Http1, peer))
            })
            .and_then(http(factory(), addr))
        })?,
        Some(mut config) => {
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            let acceptor = Acceptor::new(config);
            builder.listen("dts-https", listener, move || {
                acceptor
                    .clone()
                    .map_err(|e| {
                        tracing::debug!(error = ?e, "TLS handshake failed");
                        DispatchError::Io(io::Error::other("TLS handshake failed"))
                    })
                    .and_then(fn_service(|io: TlsStream<TcpStream>| async move {
                        let (tcp, session) = io.get_ref();
                        let peer = tcp.peer_addr().ok();
                        let h2 = session.alpn_protocol() == Some(b"h2");
                        let proto = if h2 { Protocol::Http2 } else { Protocol::Http1 };
                        Ok((EarlyErrors::new(io, !h2), proto, peer))
                    }))
                    .and_then(http(factory(), addr))
            })?
        }
    };
    Ok(builder.run())
}

/// actix-http's service over connections of type `T`, running the app.
fn http<T, I, S, B>(
    app: I,
    addr: SocketAddr,
) -> impl ServiceFactory<(T, Protocol, Option<SocketAddr>), Config = (), Response = (), Error = DispatchError, InitError = ()>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as actix_service::Service<Request>>::Future: 'static,
    B: MessageBody + 'static,
{
    let app = app.into_factory().map_err(|e| e.into().error_response());
    // The app takes the host from each request (Host, forwarded headers or
    // an HTTP/2 authority); this config's placeholder name is used only for
    // a request that names none, which the app treats as cross-site.
    HttpService::build()
        .client_request_timeout(Duration::from_secs(5))
        .client_disconnect_timeout(Duration::from_secs(1))
        .local_addr(addr)
        .finish(map_config(app, |()| AppConfig::default()))
}

/// A connection whose HTTP/1 answers from actix-http itself (an empty 400,
/// 408 or 431) are rewritten into the API's envelope.
#[derive(Debug)]
pub struct EarlyErrors<T> {
    io: T,
    http1: bool,
    /// A rewritten answer being written: its bytes, how many went out, and
    /// how many of the caller's bytes it stands for.
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<T> EarlyErrors<T> {
    pub fn new(io: T, http1: bool) -> Self {
        Self { io, http1, pending: None }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for EarlyErrors<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for EarlyErrors<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.is_none() && this.http1 {
            this.pending = rewrite(buf).map(|(stands_for, answer)| (answer, 0, stands_for));
        }
        let Some((answer, written, stands_for)) = &mut this.pending else {
            return Pin::new(&mut this.io).poll_write(cx, buf);
        };
        // A caller that got Pending writes the same bytes again, so the
        // rewritten answer is finished before it is told they went out.
        while *written < answer.len() {
            match Pin::new(&mut this.io).poll_write(cx, &answer[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let done = *stands_for;
        this.pending = None;
        Poll::Ready(Ok(done))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// When `out` starts with one of actix-http's own empty error answers:
/// how many bytes it spans, and the enveloped answer to send instead.
/// The API's own answers always carry a body, so an empty 400/408/431 can
/// only come from the HTTP layer.
fn rewrite(out: &[u8]) -> Option<(usize, Vec<u8>)> {
    let status: u16 = match out.get(..13)? {
        b"HTTP/1.1 400 " | b"HTTP/1.0 400 " => 400,
        b"HTTP/1.1 408 " | b"HTTP/1.0 408 " => 408,
        b"HTTP/1.1 431 " | b"HTTP/1.0 431 " => 431,
        _ => return None,
    };
    let head_len = out.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&out[..head_len]).to_ascii_lowercase();
    if !head.contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    let (code, reason, message) = match status {
        400 => (
            ErrorCode::MalformedRequest,
            "Bad Request",
            "the request is not valid HTTP/1.1: check its request line, headers and chunked body",
        ),
        408 => (
            ErrorCode::RequestTimeout,
            "Request Timeout",
            "the request's head did not arrive within 5 seconds; send it whole, then the body",
        ),
        _ => (
            ErrorCode::HeadTooLarge,
            "Request Header Fields Too Large",
            "the request's head is over 128 KiB or has more than 96 headers; send fewer or shorter headers",
        ),
    };
    let body = serde_json::json!({"code": code.number(), "message": message, "ttl": 1, "data": null}).to_string();
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    Some((head_len, answer.into_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn only_the_http_layers_empty_errors_are_rewritten() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        let (len, answer) = rewrite(bare).unwrap();
        assert_eq!(len, bare.len());
        let text = String::from_utf8(answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 ") && head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!((v["code"].as_i64(), v["ttl"].as_i64()), (Some(43100), Some(1)));
        // Only the error's own bytes are replaced; what follows is written next.
        let head = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(rewrite(&[&head[..], b"HTTP/1.1 200"].concat()).unwrap().0, head.len());
        for kept in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 71\r\n\r\n{\"code\":40001}"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-len",
            b"HTTP/1.1 43",
            b"",
        ] {
            assert!(rewrite(kept).is_none(), "{}", String::from_utf8_lossy(kept));
        }
    }

    #[tokio::test]
    async fn a_rewritten_answer_goes_out_whole_through_a_slow_connection() {
        // A pipe of 7 bytes: every write is partial or pending.
        let (near, mut far) = tokio::io::duplex(7);
        let mut conn = EarlyErrors::new(near, true);
        let bare = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n";
        let writer = tokio::spawn(async move {
            conn.write_all(bare).await.unwrap();
            conn.shutdown().await.unwrap();
        });
        let mut got = String::new();
        far.read_to_string(&mut got).await.unwrap();
        writer.await.unwrap();
        let (head, body) = got.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{got}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["code"], 40800, "{got}");
    }
}
