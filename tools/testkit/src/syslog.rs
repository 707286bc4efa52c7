//! The syslog harness: [`Rsyslog`], a real rsyslogd of the test's own on loopback ports (UDP,
//! TCP, RELP, and TLS when asked), each input writing the raw messages it receives to a file of
//! its own, in a temporary directory with its own configuration and pid file. The RELP and TLS
//! inputs use a ruleset with a `Direct` queue, as docs/ALERTS.md asks of a collector: rsyslog
//! answers a RELP message only once it is written.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::net::closed_port;

/// The inputs, by transport name.
pub const INPUTS: [&str; 4] = ["udp", "tcp", "relp", "tls"];

/// A running rsyslogd; SIGKILLed on drop.
pub struct Rsyslog {
    dir: tempfile::TempDir,
    ports: [u16; 4],
    tls: bool,
    child: Option<Child>,
}

fn need_rsyslogd() {
    let found = Command::new("rsyslogd")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "rsyslogd is not installed: apt-get install rsyslog rsyslog-relp rsyslog-gnutls (scripts/test does)"
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Rsyslog {
    /// Starts rsyslogd with UDP, TCP and RELP inputs; returns once they listen.
    pub fn start() -> Rsyslog {
        Rsyslog::start_with(false)
    }

    /// Starts rsyslogd with UDP, TCP, RELP and TLS inputs (a CA and a certificate for
    /// `localhost` and 127.0.0.1 made with openssl; [`Rsyslog::ca`] is the CA).
    pub fn start_with_tls() -> Rsyslog {
        Rsyslog::start_with(true)
    }

    fn start_with(tls: bool) -> Rsyslog {
        need_rsyslogd();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = Rsyslog {
            dir,
            ports: [closed_port(), closed_port(), closed_port(), closed_port()],
            tls,
            child: None,
        };
        if tls {
            r.make_certificates();
        }
        std::fs::write(r.dir.path().join("rsyslog.conf"), r.config()).expect("write config");
        r.restart();
        r
    }

    fn make_certificates(&self) {
        let d = self.dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=test CA",
        ]);
        openssl(d, &ca);
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl(d, &req);
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .expect("write ext.cnf");
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ],
        );
    }

    fn config(&self) -> String {
        let d = self.dir.path().display();
        let [udp, tcp, relp, tls] = self.ports;
        let mut c = String::new();
        if self.tls {
            c.push_str(&format!(
                "global(workDirectory=\"{d}\" maxMessageSize=\"64k\" \
                 defaultNetstreamDriverCAFile=\"{d}/ca.pem\" \
                 defaultNetstreamDriverCertFile=\"{d}/server.pem\" \
                 defaultNetstreamDriverKeyFile=\"{d}/server.key\")\n"
            ));
        } else {
            c.push_str(&format!(
                "global(workDirectory=\"{d}\" maxMessageSize=\"64k\")\n"
            ));
        }
        c.push_str(
            "module(load=\"imudp\")\nmodule(load=\"imtcp\" maxSessions=\"100\")\nmodule(load=\"imrelp\")\n\
             template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n",
        );
        for name in INPUTS {
            c.push_str(&format!(
                "ruleset(name=\"{name}\" queue.type=\"Direct\") {{\n  \
                 action(type=\"omfile\" file=\"{d}/{name}.log\" template=\"raw\")\n}}\n"
            ));
        }
        c.push_str(&format!(
            "input(type=\"imudp\" address=\"127.0.0.1\" port=\"{udp}\" ruleset=\"udp\")\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{tcp}\" ruleset=\"tcp\")\n\
             input(type=\"imrelp\" address=\"127.0.0.1\" port=\"{relp}\" ruleset=\"relp\")\n"
        ));
        if self.tls {
            c.push_str(&format!(
                "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{tls}\" ruleset=\"tls\" \
                 streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\")\n"
            ));
        }
        c
    }

    fn port(&self, transport: &str) -> u16 {
        let i = INPUTS
            .iter()
            .position(|t| *t == transport)
            .unwrap_or_else(|| panic!("no input {transport}"));
        self.ports[i]
    }

    /// `127.0.0.1:PORT` of the input for `transport` (`udp`, `tcp`, `relp`, `tls`).
    pub fn target(&self, transport: &str) -> String {
        format!("127.0.0.1:{}", self.port(transport))
    }

    /// The CA certificate (PEM) of the TLS input.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The file the input for `transport` writes.
    pub fn file(&self, transport: &str) -> PathBuf {
        self.dir.path().join(format!("{transport}.log"))
    }

    /// The messages received on `transport` so far, one per line.
    pub fn lines(&self, transport: &str) -> Vec<String> {
        match std::fs::read(self.file(transport)) {
            Ok(bytes) => String::from_utf8_lossy(&bytes)
                .lines()
                .map(str::to_string)
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Waits (at most `limit`) until at least `n` messages were received on `transport`.
    #[track_caller]
    pub fn wait_for_lines(&self, transport: &str, n: usize, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        loop {
            let lines = self.lines(transport);
            if lines.len() >= n {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} messages arrived on {transport} within {limit:?}",
                lines.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts rsyslogd (again: same ports, configuration and files) and waits until its TCP,
    /// RELP (and TLS) inputs accept connections.
    pub fn restart(&mut self) {
        let pid_file = self.dir.path().join("rsyslogd.pid");
        let _ = std::fs::remove_file(&pid_file);
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(self.dir.path().join("rsyslog.conf"))
            .arg("-i")
            .arg(&pid_file)
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("rsyslogd.err"))
                    .expect("open rsyslogd.err"),
            ))
            .spawn()
            .expect("start rsyslogd");
        self.child = Some(child);
        let mut ports = vec![self.port("tcp"), self.port("relp")];
        if self.tls {
            ports.push(self.port("tls"));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for port in ports {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                    panic!(
                        "rsyslogd exited ({status}): {}",
                        std::fs::read_to_string(self.dir.path().join("rsyslogd.err"))
                            .unwrap_or_default()
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "rsyslogd did not listen on {port}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.probe_udp();
    }

    /// Waits until the UDP input takes datagrams: sends probes (MSGID `probe`, which
    /// [`Rsyslog::lines`] callers filter out with [`is_probe`]) until one is written.
    fn probe_udp(&self) {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let deadline = Instant::now() + Duration::from_secs(30);
        let before = self.lines("udp").len();
        while self.lines("udp").len() == before {
            let _ = socket.send_to(
                b"<134>1 2026-01-01T00:00:00Z probe probe - probe - probe",
                ("127.0.0.1", self.port("udp")),
            );
            assert!(
                Instant::now() < deadline,
                "rsyslogd's UDP input did not answer"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Freezes rsyslogd (SIGSTOP): connections stay open, nothing is read or answered.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Lets a frozen rsyslogd go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, s: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("rsyslogd is running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, s).expect("signal rsyslogd");
    }

    /// SIGKILLs rsyslogd.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether `line` is one of the harness's UDP readiness probes.
pub fn is_probe(line: &str) -> bool {
    line.contains(" probe probe - probe - ")
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.kill();
    }
}
