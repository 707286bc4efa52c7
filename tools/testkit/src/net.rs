//! Peers that fail: a port nobody listens on, and a listener that accepts and never answers.

use std::net::TcpListener;

/// A loopback port nobody listens on (bound, then released): connecting to it is refused.
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A TCP listener on loopback that accepts every connection and never writes a byte, for the
/// life of the test: a database or bus that hangs.
pub struct SilentServer {
    /// Its port.
    pub port: u16,
}

impl SilentServer {
    /// Starts listening on a free loopback port.
    pub fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        // Holds every connection open; the thread ends with the test process.
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => held.push(s),
                    Err(_) => break,
                }
            }
        });
        SilentServer { port }
    }

    /// A PostgreSQL URL naming it.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/ransomeye", self.port)
    }
}
