//! The TLS listener: caps on connections and pending handshakes (in total
//! and per source address), the handshake timeout, a cap on connections per
//! certificate identity, and connections that can be closed from outside.
//!
//! Every accepted TCP connection is admitted or closed at once:
//!
//! - a connection that would exceed `max_pending_handshakes` (total) or
//!   `max_pending_handshakes_per_address`, or `max_connections` /
//!   `max_connections_per_address` (pending handshakes count as
//!   connections), is closed before any TLS byte is read, so a flood of
//!   silent sockets costs the coordinator at most those many descriptors;
//! - a handshake not finished within `handshake_timeout_ms` is dropped;
//! - a handshake whose certificate identity already holds
//!   `max_connections_per_identity` connections is dropped.
//!
//! Each live connection is a [`Conn`], found by its peer address. Closing it
//! ([`Conn::close`]) makes the transport fail at its next read or write,
//! which ends the HTTP/2 connection and drops every stream on it: the one way
//! to reclaim an HTTP/2 stream whose peer stopped reading (its response body
//! is no longer polled). The coordinator closes connections of identities
//! that flood refused calls and of downloads past their deadline.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use fedsec_proto::tls::PeerIdentity;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::metrics::Metrics;

/// Connection-level limits (from `[limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnLimits {
    /// Connections open or handshaking, in total.
    pub max_connections: usize,
    /// Connections open or handshaking from one source address.
    pub max_connections_per_address: usize,
    /// Handshakes in progress, in total.
    pub max_pending_handshakes: usize,
    /// Handshakes in progress from one source address.
    pub max_pending_handshakes_per_address: usize,
    /// Open connections of one certificate identity.
    pub max_connections_per_identity: usize,
    /// Time a peer gets to complete its TLS handshake.
    pub handshake_timeout: Duration,
}

impl From<&crate::config::LimitsConfig> for ConnLimits {
    fn from(l: &crate::config::LimitsConfig) -> Self {
        Self {
            max_connections: l.max_connections,
            max_connections_per_address: l.max_connections_per_address,
            max_pending_handshakes: l.max_pending_handshakes,
            max_pending_handshakes_per_address: l.max_pending_handshakes_per_address,
            max_connections_per_identity: l.max_connections_per_identity,
            handshake_timeout: Duration::from_millis(l.handshake_timeout_ms),
        }
    }
}

/// Why a connection was refused or closed (the `reason` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `max_connections` reached.
    Connections,
    /// `max_connections_per_address` reached.
    ConnectionsPerAddress,
    /// `max_pending_handshakes` reached.
    PendingHandshakes,
    /// `max_pending_handshakes_per_address` reached.
    PendingHandshakesPerAddress,
    /// `max_connections_per_identity` reached.
    ConnectionsPerIdentity,
    /// The handshake timed out.
    HandshakeTimeout,
    /// The handshake failed (no or bad certificate, TLS 1.2, garbage).
    HandshakeFailed,
}

impl Refusal {
    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Connections => "max_connections",
            Self::ConnectionsPerAddress => "max_connections_per_address",
            Self::PendingHandshakes => "max_pending_handshakes",
            Self::PendingHandshakesPerAddress => "max_pending_handshakes_per_address",
            Self::ConnectionsPerIdentity => "max_connections_per_identity",
            Self::HandshakeTimeout => "handshake_timeout",
            Self::HandshakeFailed => "handshake_failed",
        }
    }
}

/// The rate-limit and share key of a peer identity: `tenant/client` or
/// `admin:name` (the keys [`crate::ratelimit`] uses).
pub(crate) fn identity_key(id: &PeerIdentity) -> String {
    match id {
        PeerIdentity::Client(c) => format!("{}/{}", c.tenant_id, c.client_id),
        PeerIdentity::Admin { name } => format!("admin:{name}"),
    }
}

/// One live connection.
#[derive(Debug)]
pub(crate) struct Conn {
    peer: SocketAddr,
    identity: OnceLock<Option<PeerIdentity>>,
    closed: AtomicBool,
    wakers: Mutex<[Option<Waker>; 2]>,
}

impl Conn {
    /// The peer's address.
    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The certificate identity, once the handshake finished (`None` inside
    /// if the certificate carries no fedsec identity).
    pub(crate) fn identity(&self) -> Option<&PeerIdentity> {
        self.identity.get().and_then(Option::as_ref)
    }

    /// Closes the connection: its next read or write fails, which ends the
    /// HTTP/2 connection and every stream on it.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let wakers = std::mem::take(&mut *self.wakers.lock().unwrap_or_else(|p| p.into_inner()));
        for w in wakers.into_iter().flatten() {
            w.wake();
        }
    }

    /// Whether [`Self::close`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn park(&self, slot: usize, cx: &Context<'_>) {
        let mut w = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        match &mut w[slot] {
            Some(old) if old.will_wake(cx.waker()) => {}
            other => *other = Some(cx.waker().clone()),
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct PerAddress {
    pending: usize,
    open: usize,
}

#[derive(Debug, Default)]
struct Table {
    by_peer: HashMap<SocketAddr, Arc<Conn>>,
    per_address: HashMap<IpAddr, PerAddress>,
    per_identity: HashMap<String, usize>,
    pending: usize,
    open: usize,
}

/// Every live connection, with the counters the caps need.
#[derive(Debug)]
pub(crate) struct Connections {
    limits: ConnLimits,
    table: Mutex<Table>,
    metrics: Arc<Metrics>,
    last_warning_ms: AtomicI64,
}

impl Connections {
    /// An empty table.
    pub(crate) fn new(limits: ConnLimits, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            limits,
            table: Mutex::new(Table::default()),
            metrics,
            last_warning_ms: AtomicI64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live connection from `peer`, if any.
    pub(crate) fn get(&self, peer: SocketAddr) -> Option<Arc<Conn>> {
        self.lock().by_peer.get(&peer).cloned()
    }

    /// (handshakes in progress, open connections).
    pub(crate) fn counts(&self) -> (usize, usize) {
        let t = self.lock();
        (t.pending, t.open)
    }

    fn publish(&self, t: &Table) {
        self.metrics.set_connections(t.pending, t.open);
    }

    /// Admits a new TCP connection as a pending handshake, or says why not.
    fn admit(self: &Arc<Self>, tcp: TcpStream, peer: SocketAddr) -> Result<GuardedTcp, Refusal> {
        let l = self.limits;
        let mut t = self.lock();
        let a = t.per_address.get(&peer.ip()).copied().unwrap_or_default();
        let refusal = if t.pending + t.open >= l.max_connections {
            Some(Refusal::Connections)
        } else if a.pending + a.open >= l.max_connections_per_address {
            Some(Refusal::ConnectionsPerAddress)
        } else if t.pending >= l.max_pending_handshakes {
            Some(Refusal::PendingHandshakes)
        } else if a.pending >= l.max_pending_handshakes_per_address {
            Some(Refusal::PendingHandshakesPerAddress)
        } else {
            None
        };
        if let Some(r) = refusal {
            return Err(r);
        }
        let conn = Arc::new(Conn {
            peer,
            identity: OnceLock::new(),
            closed: AtomicBool::new(false),
            wakers: Mutex::new([None, None]),
        });
        t.pending += 1;
        t.per_address.entry(peer.ip()).or_default().pending += 1;
        t.by_peer.insert(peer, conn.clone());
        self.publish(&t);
        Ok(GuardedTcp {
            tcp,
            conn,
            owner: self.clone(),
            established: false,
        })
    }

    /// Moves a connection from handshaking to open under its identity.
    fn establish(
        &self,
        io: &mut GuardedTcp,
        identity: Option<PeerIdentity>,
    ) -> Result<(), Refusal> {
        let mut t = self.lock();
        if let Some(id) = &identity {
            let key = identity_key(id);
            let n = t.per_identity.get(&key).copied().unwrap_or(0);
            if n >= self.limits.max_connections_per_identity {
                return Err(Refusal::ConnectionsPerIdentity);
            }
            t.per_identity.insert(key, n + 1);
        }
        let _ = io.conn.identity.set(identity);
        t.pending -= 1;
        t.open += 1;
        let a = t.per_address.entry(io.conn.peer.ip()).or_default();
        a.pending -= 1;
        a.open += 1;
        io.established = true;
        self.publish(&t);
        Ok(())
    }

    fn release(&self, conn: &Conn, established: bool) {
        let mut t = self.lock();
        if t.by_peer
            .get(&conn.peer)
            .is_some_and(|c| std::ptr::eq(&**c, conn))
        {
            t.by_peer.remove(&conn.peer);
        }
        let ip = conn.peer.ip();
        if let Some(a) = t.per_address.get_mut(&ip) {
            if established {
                a.open = a.open.saturating_sub(1);
            } else {
                a.pending = a.pending.saturating_sub(1);
            }
            if a.open == 0 && a.pending == 0 {
                t.per_address.remove(&ip);
            }
        }
        if established {
            t.open = t.open.saturating_sub(1);
            if let Some(id) = conn.identity() {
                let key = identity_key(id);
                if let Some(n) = t.per_identity.get_mut(&key) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        t.per_identity.remove(&key);
                    }
                }
            }
        } else {
            t.pending = t.pending.saturating_sub(1);
        }
        self.publish(&t);
    }

    fn refused(&self, why: Refusal, peer: SocketAddr) {
        self.metrics.connection_refused(why.label());
        // One warning per 10 s at most: a flood must not flood the log.
        let now = crate::engine::now_unix_ms();
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        if now - last >= 10_000
            && self
                .last_warning_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let (pending, open) = self.counts();
            tracing::warn!(%peer, reason = why.label(), pending, open, "connection refused (further refusals for 10 s are only counted: fedsec_connections_refused_total)");
        }
    }
}

/// A TCP stream tracked by [`Connections`] that can be closed from outside.
#[derive(Debug)]
pub(crate) struct GuardedTcp {
    tcp: TcpStream,
    conn: Arc<Conn>,
    owner: Arc<Connections>,
    established: bool,
}

impl Drop for GuardedTcp {
    fn drop(&mut self) {
        self.owner.release(&self.conn, self.established);
    }
}

fn closed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection closed by the coordinator",
    )
}

impl AsyncRead for GuardedTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.conn.is_closed() {
            return Poll::Ready(Err(closed_error()));
        }
        self.conn.park(0, cx);
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for GuardedTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.conn.is_closed() {
            return Poll::Ready(Err(closed_error()));
        }
        self.conn.park(1, cx);
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.conn.is_closed() {
            return Poll::Ready(Err(closed_error()));
        }
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

impl Connected for GuardedTcp {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.tcp.connect_info()
    }
}

/// Accepts connections on `listener` under `connections`' caps and yields
/// those whose TLS handshake succeeded, for `serve_with_incoming`.
/// Accepting stops when the returned stream is dropped.
pub(crate) fn incoming(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    connections: Arc<Connections>,
) -> ReceiverStream<Result<TlsStream<GuardedTcp>, io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let timeout = connections.limits.handshake_timeout;
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = tx.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let io = match connections.admit(tcp, peer) {
                Ok(io) => io,
                Err(why) => {
                    // Dropping the socket closes it before any TLS byte is read.
                    connections.refused(why, peer);
                    continue;
                }
            };
            let (acceptor, tx, connections) = (acceptor.clone(), tx.clone(), connections.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(timeout, acceptor.accept(io)).await {
                    Ok(Ok(mut stream)) => {
                        let identity = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(|leaf| PeerIdentity::from_cert_der(leaf.as_ref()).ok());
                        let (io, _) = stream.get_mut();
                        if let Err(why) = connections.establish(io, identity) {
                            connections.refused(why, peer);
                            return;
                        }
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => {
                        connections
                            .metrics
                            .connection_refused(Refusal::HandshakeFailed.label());
                        tracing::debug!(%peer, error = %e, "TLS handshake refused");
                    }
                    Err(_) => {
                        connections.refused(Refusal::HandshakeTimeout, peer);
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
