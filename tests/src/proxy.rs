//! A TCP proxy a test can steer: point it at another server (a failover
//! behind a virtual IP) or cut a connection in the middle of what it carries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug)]
struct Shared {
    target: Mutex<SocketAddr>,
    /// Bytes server-to-client that may still pass before one connection is
    /// cut; `None` when no cut is armed.
    cut_budget: Mutex<Option<usize>>,
    cuts: AtomicU64,
}

/// Listens on an ephemeral loopback port and forwards each connection to
/// the current target. Dropping it stops accepting and closes every
/// connection.
#[derive(Debug)]
pub struct Proxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    /// Bumped by [`Proxy::switch`]; every connection watches it and closes.
    generation: watch::Sender<u64>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared =
            Arc::new(Shared { target: Mutex::new(target), cut_budget: Mutex::new(None), cuts: AtomicU64::new(0) });
        let (generation, _) = watch::channel(0);
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared), generation.clone()));
        Self { addr, shared, generation, accept }
    }

    /// New connections go to `target`; open ones are closed at once, as when
    /// a virtual IP moves to a replica.
    pub fn switch(&self, target: SocketAddr) {
        *self.shared.target.lock().unwrap() = target;
        self.generation.send_modify(|g| *g += 1);
    }

    /// Arms a one-shot cut: the connection whose server-to-client bytes
    /// exhaust `bytes` (counted over all connections from now) is closed
    /// right there, possibly mid-packet.
    pub fn cut_after(&self, bytes: usize) {
        *self.shared.cut_budget.lock().unwrap() = Some(bytes);
    }

    /// How many connections an armed cut has closed.
    pub fn cuts(&self) -> u64 {
        self.shared.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.generation.send_modify(|g| *g += 1);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, generation: watch::Sender<u64>) {
    while let Ok((client, _)) = listener.accept().await {
        let target = *shared.target.lock().unwrap();
        let shared = Arc::clone(&shared);
        let mut switched = generation.subscribe();
        switched.mark_unchanged();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(target).await else { return };
            tokio::select! {
                () = relay(client, server, &shared) => {}
                _ = switched.changed() => {}
            }
        });
    }
}

/// Copies both ways until either side closes or an armed cut fires.
async fn relay(client: TcpStream, server: TcpStream, shared: &Shared) {
    let (mut client_rd, mut client_wr) = client.into_split();
    let (mut server_rd, mut server_wr) = server.into_split();
    let upstream = async {
        let _ = tokio::io::copy(&mut client_rd, &mut server_wr).await;
    };
    let downstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match server_rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let pass = {
                let mut budget = shared.cut_budget.lock().unwrap();
                match *budget {
                    Some(left) if left <= n => {
                        *budget = None;
                        shared.cuts.fetch_add(1, Ordering::SeqCst);
                        Some(left)
                    }
                    Some(left) => {
                        *budget = Some(left - n);
                        None
                    }
                    None => None,
                }
            };
            match pass {
                Some(left) => {
                    let _ = client_wr.write_all(&buf[..left]).await;
                    return;
                }
                None => {
                    if client_wr.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}
