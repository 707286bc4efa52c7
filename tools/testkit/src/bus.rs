//! The bus harness: [`OwnBus`], a nats-server of the test's own, for the tests that stop the bus
//! or must see a fresh stream (the shared one on `NATS_URL` is never stopped); and reading what
//! JetStream stored.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::net::closed_port;
use crate::runtime::block_on;

/// A nats-server of the test's own (JetStream on, a free loopback port, its own store).
/// Killed on drop.
pub struct OwnBus {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
}

impl OwnBus {
    /// Starts the server; returns once JetStream answers.
    pub fn start() -> OwnBus {
        let mut bus = OwnBus {
            child: None,
            port: closed_port(),
            store: tempfile::tempdir().expect("tempdir"),
        };
        bus.restart();
        bus
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same port and store) and waits until JetStream answers.
    pub fn restart(&mut self) {
        let child = Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server (is it installed?)");
        self.child = Some(child);
        let url = self.url();
        let ready = Instant::now() + Duration::from_secs(30);
        block_on(async {
            loop {
                let answer = match async_nats::connect(&url).await {
                    Ok(c) => c.request("$JS.API.INFO", "".into()).await.is_ok(),
                    Err(_) => false,
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
        api(&self.url(), subject, body)
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

/// A JetStream API request to the bus at `url` (any bus, the shared one too), its JSON reply.
pub fn api(url: &str, subject: &str, body: Value) -> Value {
    block_on(async move {
        let client = async_nats::connect(url).await.expect("nats");
        let reply = client
            .request(subject.to_string(), body.to_string().into())
            .await
            .expect("JetStream API");
        serde_json::from_slice(&reply.payload).expect("JSON reply")
    })
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
