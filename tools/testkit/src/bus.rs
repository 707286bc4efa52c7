//! The bus harness: [`OwnBus`], a nats-server of the test's own, for the tests that stop the bus
//! or must see a fresh stream (the shared one on `NATS_URL` is never stopped); and reading what
//! JetStream stored.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::net::closed_port;
use crate::runtime::block_on;
use crate::tls::Issued;

/// A nats-server of the test's own (JetStream on, a free loopback port, its own store).
/// Killed on drop.
pub struct OwnBus {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
    tls: Option<BusTls>,
}

/// Mutual TLS for an [`OwnBus`]: the server's certificate, the CA its clients' certificates
/// must chain to (`verify: true`), and a client certificate the harness itself connects with.
#[derive(Debug, Clone)]
pub struct BusTls {
    /// CA certificate (PEM) of both sides.
    pub ca: PathBuf,
    /// The server's certificate and key.
    pub server: Issued,
    /// A client certificate the harness uses to see that the server is up.
    pub client: Issued,
}

impl OwnBus {
    /// Starts the server; returns once JetStream answers.
    pub fn start() -> OwnBus {
        Self::start_with(None)
    }

    /// Starts a server that requires TLS and verifies its clients' certificates.
    pub fn start_tls(tls: BusTls) -> OwnBus {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<BusTls>) -> OwnBus {
        let mut bus = OwnBus {
            child: None,
            port: closed_port(),
            store: tempfile::tempdir().expect("tempdir"),
            tls,
        };
        bus.restart();
        bus
    }

    /// Connect options of a client the server accepts (its TLS files, if any).
    pub fn client_options(&self) -> async_nats::ConnectOptions {
        let options = async_nats::ConnectOptions::new();
        match &self.tls {
            Some(tls) => options
                .add_root_certificates(tls.ca.clone())
                .add_client_certificate(tls.client.cert.clone(), tls.client.key.clone())
                .require_tls(true),
            None => options,
        }
    }

    /// The configuration file of a TLS server.
    fn tls_config(&self, tls: &BusTls) -> PathBuf {
        let conf = self.store.path().join("nats.conf");
        let text = format!(
            "listen: \"127.0.0.1:{port}\"\njetstream {{ store_dir: {store:?} }}\n\
             tls {{\n  cert_file: {cert:?}\n  key_file: {key:?}\n  ca_file: {ca:?}\n  verify: true\n  timeout: 5\n}}\n",
            port = self.port,
            store = self.store.path().join("js").display().to_string(),
            cert = tls.server.cert.display().to_string(),
            key = tls.server.key.display().to_string(),
            ca = tls.ca.display().to_string(),
        );
        std::fs::write(&conf, text).expect("write nats.conf");
        conf
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same port and store) and waits until JetStream answers.
    pub fn restart(&mut self) {
        let mut cmd = Command::new("nats-server");
        match &self.tls {
            Some(tls) => {
                let conf = self.tls_config(tls);
                cmd.arg("-c").arg(conf);
            }
            None => {
                cmd.args([
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-js",
                    "-sd",
                ])
                .arg(self.store.path());
            }
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server (is it installed?)");
        self.child = Some(child);
        let url = self.url();
        let ready = Instant::now() + Duration::from_secs(30);
        block_on(async {
            loop {
                let answer = if self.tls.is_some() {
                    // A TLS server may be one whose certificate a test made wrong on purpose:
                    // up is when it greets (nats-server sends INFO before the handshake).
                    greets(self.port).await
                } else {
                    match self.client_options().connect(&url).await {
                        Ok(c) => c.request("$JS.API.INFO", "".into()).await.is_ok(),
                        Err(_) => false,
                    }
                };
                if answer {
                    return;
                }
                assert!(Instant::now() < ready, "nats-server on {url} did not start");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }

    /// SIGKILLs the server.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A JetStream API request, its JSON reply.
    pub fn api(&self, subject: &str, body: Value) -> Value {
        let (url, options) = (self.url(), self.client_options());
        block_on(async move {
            let client = options.connect(&url).await.expect("nats");
            request(&client, subject, body).await
        })
    }

    /// Whether the trust stream exists.
    pub fn stream_exists(&self) -> bool {
        self.api("$JS.API.STREAM.INFO.RANSOMEYE_TRUST", Value::Null)
            .get("error")
            .is_none()
    }

    /// The last message stored on `broadcast.updates`, parsed.
    pub fn last_update(&self) -> Value {
        let reply = self.api(
            "$JS.API.STREAM.MSG.GET.RANSOMEYE_TRUST",
            serde_json::json!({ "last_by_subj": "broadcast.updates" }),
        );
        stored_message(&reply)
    }
}

impl Drop for OwnBus {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a NATS server on `port` accepts a connection and sends its INFO line.
async fn greets(port: u16) -> bool {
    use tokio::io::AsyncReadExt;
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let mut first = [0u8; 4];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut first)).await,
        Ok(Ok(_)) if &first == b"INFO"
    )
}

/// A JetStream API request to the bus at `url` (any bus, the shared one too), its JSON reply.
pub fn api(url: &str, subject: &str, body: Value) -> Value {
    block_on(async move {
        let client = async_nats::connect(url).await.expect("nats");
        request(&client, subject, body).await
    })
}

async fn request(client: &async_nats::Client, subject: &str, body: Value) -> Value {
    let reply = client
        .request(subject.to_string(), body.to_string().into())
        .await
        .expect("JetStream API");
    serde_json::from_slice(&reply.payload).expect("JSON reply")
}

/// The JSON message in a `STREAM.MSG.GET` reply.
pub fn stored_message(reply: &Value) -> Value {
    let data = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        reply["message"]["data"]
            .as_str()
            .unwrap_or_else(|| panic!("no stored message: {reply}")),
    )
    .expect("base64");
    serde_json::from_slice(&data).expect("stored JSON")
}
