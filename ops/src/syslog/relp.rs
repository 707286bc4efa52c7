//! The client side of RELP, rsyslog's Reliable Event Logging Protocol (docs/ALERTS.md,
//! "RELP"), as rsyslog's `imrelp` (librelp) speaks it.
//!
//! A frame is `TXNR SP COMMAND SP DATALEN [SP DATA] LF`. The client opens the session
//! (`open`, offering `relp_version=0` and `commands=syslog`), sends each message as a `syslog`
//! command with its own transaction number, and the server answers every one with
//! `TXNR rsp LEN 200 OK` once it has taken the message (with a `Direct` queue, once the action
//! wrote it). `close` ends the session; the server may send `serverclose` (txnr 0) at any time.
//! Several commands may be outstanding (a window); answers come back in order.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;

/// The largest response accepted: open's offers are under 200 bytes, rsp to syslog a few.
const MAX_RESPONSE: usize = 64 << 10;

/// An I/O error of kind `InvalidData` saying `what`.
fn protocol(what: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.into())
}

/// One frame read from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Transaction number (0 for unsolicited `serverclose`).
    pub txnr: u64,
    /// `rsp`, `serverclose`, …
    pub command: String,
    /// DATA (may be empty).
    pub data: Vec<u8>,
}

impl Frame {
    /// The status code of an `rsp` (`200 OK` → 200).
    pub fn status(&self) -> Option<u16> {
        let end = self
            .data
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(self.data.len());
        std::str::from_utf8(&self.data[..end]).ok()?.parse().ok()
    }
}

/// One frame to send.
pub fn encode(txnr: u64, command: &str, data: &[u8]) -> Vec<u8> {
    let mut out = format!("{txnr} {command} {}", data.len()).into_bytes();
    if !data.is_empty() {
        out.push(b' ');
        out.extend_from_slice(data);
    }
    out.push(b'\n');
    out
}

/// Reads one frame.
pub async fn read_frame<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Frame> {
    async fn token<R: tokio::io::AsyncBufRead + Unpin>(
        r: &mut R,
        what: &str,
    ) -> std::io::Result<(Vec<u8>, u8)> {
        let mut buf = Vec::new();
        loop {
            let mut b = [0u8; 1];
            if r.read(&mut b).await? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the RELP server closed the connection",
                ));
            }
            if b[0] == b' ' || b[0] == b'\n' {
                return Ok((buf, b[0]));
            }
            buf.push(b[0]);
            if buf.len() > 32 {
                return Err(protocol(format!("RELP {what} longer than 32 bytes")));
            }
        }
    }
    let number = |t: &[u8], what: &str| -> std::io::Result<u64> {
        std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| protocol(format!("RELP {what} is not a number")))
    };
    let (txnr, sep) = token(r, "transaction number").await?;
    if sep != b' ' {
        return Err(protocol("RELP frame ends after its transaction number"));
    }
    let txnr = number(&txnr, "transaction number")?;
    let (command, sep) = token(r, "command").await?;
    if sep != b' ' {
        return Err(protocol("RELP frame ends after its command"));
    }
    let command = String::from_utf8_lossy(&command).into_owned();
    let (len, sep) = token(r, "data length").await?;
    let len = usize::try_from(number(&len, "data length")?)
        .map_err(|_| protocol("RELP data length too large"))?;
    if len > MAX_RESPONSE {
        return Err(protocol(format!("RELP response of {len} bytes")));
    }
    let mut data = vec![0u8; len];
    if len > 0 {
        if sep != b' ' {
            return Err(protocol("RELP frame lacks the space before its data"));
        }
        r.read_exact(&mut data).await?;
        let mut trailer = [0u8; 1];
        r.read_exact(&mut trailer).await?;
        if trailer[0] != b'\n' {
            return Err(protocol("RELP frame does not end in LF"));
        }
    } else if sep != b'\n' {
        // `0 ` then LF: tolerate a space before the trailer.
        let mut trailer = [0u8; 1];
        r.read_exact(&mut trailer).await?;
        if trailer[0] != b'\n' {
            return Err(protocol("RELP frame does not end in LF"));
        }
    }
    Ok(Frame {
        txnr,
        command,
        data,
    })
}

/// An open RELP session.
pub struct Session {
    reader: BufReader<tokio::io::ReadHalf<TcpStream>>,
    writer: BufWriter<tokio::io::WriteHalf<TcpStream>>,
    next_txnr: u64,
    timeout: Duration,
}

impl Session {
    /// Opens a session on `stream`: sends `open` and waits (at most `timeout`) for `rsp 200`.
    pub async fn open(stream: TcpStream, timeout: Duration) -> std::io::Result<Session> {
        let (r, w) = tokio::io::split(stream);
        let mut session = Session {
            reader: BufReader::new(r),
            writer: BufWriter::new(w),
            next_txnr: 1,
            timeout,
        };
        let offers = format!(
            "relp_version=0\nrelp_software=ransomeye-ops,{}\ncommands=syslog",
            env!("CARGO_PKG_VERSION")
        );
        let txnr = session.send("open", offers.as_bytes()).await?;
        session.flush().await?;
        let answer = session.read().await?;
        if answer.txnr != txnr || answer.command != "rsp" || answer.status() != Some(200) {
            return Err(protocol(format!(
                "the RELP server refused the session: {} {} {}",
                answer.txnr,
                answer.command,
                String::from_utf8_lossy(&answer.data)
            )));
        }
        let offered = String::from_utf8_lossy(&answer.data);
        if !offered
            .lines()
            .any(|l| l.starts_with("commands=") && l.contains("syslog"))
        {
            return Err(protocol(
                "the RELP server does not offer the syslog command",
            ));
        }
        Ok(session)
    }

    /// Queues one command; returns its transaction number. Numbers run 1..=999 999 999, then
    /// wrap to 1 (RELP's TXNR is at most 9 digits).
    async fn send(&mut self, command: &str, data: &[u8]) -> std::io::Result<u64> {
        let txnr = self.next_txnr;
        self.next_txnr = if txnr >= 999_999_999 { 1 } else { txnr + 1 };
        self.writer.write_all(&encode(txnr, command, data)).await?;
        Ok(txnr)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match tokio::time::timeout(self.timeout, self.writer.flush()).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the RELP server does not take data",
            )),
        }
    }

    async fn read(&mut self) -> std::io::Result<Frame> {
        match tokio::time::timeout(self.timeout, read_frame(&mut self.reader)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no RELP response within {} s", self.timeout.as_secs_f64()),
            )),
        }
    }

    /// Sends `messages` as one window and reads the answers. Returns how many, from the first,
    /// the server answered with 200 (those are accepted) and, when that is not all, why not.
    pub async fn deliver(&mut self, messages: &[Vec<u8>]) -> (usize, Option<std::io::Error>) {
        let mut txnrs = Vec::with_capacity(messages.len());
        for m in messages {
            match self.send("syslog", m).await {
                Ok(t) => txnrs.push(t),
                Err(e) => return (0, Some(e)),
            }
        }
        if let Err(e) = self.flush().await {
            return (0, Some(e));
        }
        let mut accepted = 0;
        for txnr in txnrs {
            let frame = match self.read().await {
                Ok(f) => f,
                Err(e) => return (accepted, Some(e)),
            };
            if frame.command == "serverclose" {
                return (
                    accepted,
                    Some(protocol("the RELP server closed the session")),
                );
            }
            if frame.txnr != txnr || frame.command != "rsp" {
                return (
                    accepted,
                    Some(protocol(format!(
                        "RELP answer {} {} where rsp to {txnr} was expected",
                        frame.txnr, frame.command
                    ))),
                );
            }
            if frame.status() != Some(200) {
                return (
                    accepted,
                    Some(protocol(format!(
                        "the RELP server refused message {txnr}: {}",
                        String::from_utf8_lossy(&frame.data)
                    ))),
                );
            }
            accepted += 1;
        }
        (accepted, None)
    }

    /// Ends the session politely (best effort, bounded by the timeout).
    pub async fn close(mut self) {
        if self.send("close", b"").await.is_ok() && self.flush().await.is_ok() {
            let _ = self.read().await;
        }
        let _ = self.writer.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(bytes: &[u8]) -> Vec<std::io::Result<Frame>> {
        let mut r = tokio::io::BufReader::new(bytes);
        let mut out = Vec::new();
        loop {
            let f = read_frame(&mut r).await;
            let end = f.is_err();
            out.push(f);
            if end {
                return out;
            }
        }
    }

    #[test]
    fn frames_encode_as_librelp_expects() {
        assert_eq!(encode(3, "close", b""), b"3 close 0\n");
        assert_eq!(encode(2, "syslog", b"<13>1 x"), b"2 syslog 7 <13>1 x\n");
    }

    #[test]
    fn responses_parse_with_and_without_data() {
        let rt = tokio::runtime::Builder::new_current_thread().build();
        let rt = rt.expect("a runtime");
        let got = rt.block_on(frames(
            b"1 rsp 6 200 OK\n3 rsp 0\n0 serverclose 0\n2 rsp 5 20",
        ));
        let ok: Vec<&Frame> = got.iter().filter_map(|f| f.as_ref().ok()).collect();
        assert_eq!(ok.len(), 3);
        assert_eq!(ok[0].status(), Some(200));
        assert_eq!((ok[1].txnr, ok[1].data.len()), (3, 0));
        assert_eq!(ok[2].command, "serverclose");
        assert!(
            got.last().is_some_and(|f| f.is_err()),
            "a cut frame is an error"
        );
    }
}
