//! A connection to a syslog collector over one transport, and what "accepted" means on each
//! (docs/ALERTS.md, "Delivery guarantees"):
//!
//! - `udp`: sent (one datagram per message). Nothing comes back: lossy by design.
//! - `tcp`: written and flushed to the kernel, RFC 6587 octet counting. A collector that dies
//!   with the data in its buffers loses it unnoticed.
//! - `tls`: as `tcp`, inside TLS (RFC 5425), with rustls (ring) and the configured CA.
//! - `relp`: the collector answered `rsp 200` for the message.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::{TcpStream, UdpSocket};

use super::format::octet_counted;
use super::relp;

/// A transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// UDP datagrams: lossy, for old collectors only.
    Udp,
    /// TCP with octet counting (RFC 6587).
    Tcp,
    /// TLS with octet counting (RFC 5425).
    Tls,
    /// RELP: every message acknowledged by the collector.
    Relp,
}

impl Transport {
    /// Its name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Relp => "relp",
        }
    }
}

type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

enum Conn {
    Udp(UdpSocket),
    Tcp(BufWriter<TcpStream>),
    Tls(Box<BufWriter<TlsStream>>),
    Relp(relp::Session),
}

/// An open connection to the collector.
pub struct Sink {
    conn: Conn,
    timeout: Duration,
}

fn timed_out(what: &str, timeout: Duration) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what}: no answer within {} s", timeout.as_secs_f64()),
    )
}

async fn bounded<T>(
    what: &str,
    timeout: Duration,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(timeout, f)
        .await
        .unwrap_or_else(|_| Err(timed_out(what, timeout)))
}

impl Sink {
    /// Connects to `target` (`host:port`); every step bounded by `timeout`. `tls` is required
    /// for [`Transport::Tls`].
    pub async fn connect(
        transport: Transport,
        target: &str,
        tls: Option<&Arc<rustls::ClientConfig>>,
        timeout: Duration,
    ) -> std::io::Result<Sink> {
        let conn = match transport {
            Transport::Udp => {
                let addr = bounded("resolving", timeout, tokio::net::lookup_host(target))
                    .await?
                    .next()
                    .ok_or_else(|| std::io::Error::other(format!("{target}: no address")))?;
                let local = if addr.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let socket = UdpSocket::bind(local).await?;
                socket.connect(addr).await?;
                Conn::Udp(socket)
            }
            Transport::Tcp => {
                let stream = bounded("connecting", timeout, TcpStream::connect(target)).await?;
                stream.set_nodelay(true)?;
                Conn::Tcp(BufWriter::with_capacity(64 << 10, stream))
            }
            Transport::Tls => {
                let config = tls.ok_or_else(|| std::io::Error::other("no TLS configuration"))?;
                let host = target
                    .rsplit_once(':')
                    .map_or(target, |(h, _)| h)
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| std::io::Error::other(format!("{host}: {e}")))?;
                let stream = bounded("connecting", timeout, TcpStream::connect(target)).await?;
                stream.set_nodelay(true)?;
                let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
                let tls =
                    bounded("TLS handshake", timeout, connector.connect(name, stream)).await?;
                Conn::Tls(Box::new(BufWriter::with_capacity(64 << 10, tls)))
            }
            Transport::Relp => {
                let stream = bounded("connecting", timeout, TcpStream::connect(target)).await?;
                stream.set_nodelay(true)?;
                Conn::Relp(relp::Session::open(stream, timeout).await?)
            }
        };
        Ok(Sink { conn, timeout })
    }

    /// Delivers `messages` in order. Returns how many, from the first, the collector accepted
    /// (in the sense of the transport, see the module comment) and, when not all, why.
    pub async fn deliver(&mut self, messages: &[Vec<u8>]) -> (usize, Option<std::io::Error>) {
        let timeout = self.timeout;
        match &mut self.conn {
            Conn::Udp(socket) => {
                for (i, m) in messages.iter().enumerate() {
                    if let Err(e) = bounded("sending", timeout, socket.send(m)).await {
                        return (i, Some(e));
                    }
                }
                (messages.len(), None)
            }
            Conn::Tcp(w) => stream_out(w, messages, timeout).await,
            Conn::Tls(w) => stream_out(w.as_mut(), messages, timeout).await,
            Conn::Relp(session) => session.deliver(messages).await,
        }
    }

    /// Closes the connection (best effort, bounded).
    pub async fn close(self) {
        let timeout = self.timeout;
        match self.conn {
            Conn::Udp(_) => {}
            Conn::Tcp(mut w) => {
                let _ = bounded("closing", timeout, w.shutdown()).await;
            }
            Conn::Tls(mut w) => {
                let _ = bounded("closing", timeout, w.shutdown()).await;
            }
            Conn::Relp(session) => {
                let _ = tokio::time::timeout(timeout, session.close()).await;
            }
        }
    }
}

/// Writes every message octet-counted and flushes: all accepted, or none (a failed write may
/// have delivered any prefix; the caller sends them all again, duplicates rather than losses).
async fn stream_out<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    messages: &[Vec<u8>],
    timeout: Duration,
) -> (usize, Option<std::io::Error>) {
    let write = async {
        for m in messages {
            w.write_all(&octet_counted(m)).await?;
        }
        w.flush().await
    };
    match bounded("writing", timeout, write).await {
        Ok(()) => (messages.len(), None),
        Err(e) => (0, Some(e)),
    }
}

/// The TLS client configuration: the CA certificates of `ca` (PEM) as the only roots, and a
/// client certificate and key when both are given. TLS 1.2 and 1.3, ring's provider.
pub fn tls_config(
    ca: &std::path::Path,
    client: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .map_err(|e| format!("{}: {e}", ca.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", ca.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", ca.display()));
    }
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("{}: {e}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: {e}", cert.display()))?;
            let key_der =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| format!("{}: {e}", cert.display()))?
        }
    };
    Ok(Arc::new(config))
}
