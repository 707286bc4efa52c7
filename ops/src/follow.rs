//! Reading a file back while another thread is still writing it.
//!
//! `backup` verifies its new dump by reading the file it writes, byte for byte, right behind the
//! writer: the read-back (decrypt, decompress, `pg_restore --list`) then overlaps the dump instead of
//! following it. The writer wraps its file in a [`Published`], which announces every byte that
//! reached the file; a [`Following`] reader reads the same file (its own descriptor, positioned
//! reads) up to what was announced, waits when it has caught up, and sees end-of-file only once
//! the writer declared the file complete. A writer that fails (or is dropped unfinished) makes
//! the reader fail rather than wait forever, and rather than take a short file for a whole one.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// What the writer announced so far.
#[derive(Debug, Default)]
struct State {
    written: u64,
    end: Option<End>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Complete,
    Abandoned,
}

/// Shared between one writer and one reader.
#[derive(Debug, Default)]
struct Progress {
    state: Mutex<State>,
    changed: Condvar,
}

impl Progress {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means the other side panicked; the counters are still sound.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }
}

/// A writer that announces every byte written through it to a [`Following`] reader.
#[derive(Debug)]
pub struct Published<W> {
    inner: Option<W>,
    progress: Arc<Progress>,
}

impl<W> Published<W> {
    /// Wraps `inner` with nobody following it.
    pub fn alone(inner: W) -> Published<W> {
        Published {
            inner: Some(inner),
            progress: Arc::new(Progress::default()),
        }
    }
}

impl<W: Write> Published<W> {
    /// Declares the file complete (the reader will see its end) and returns the inner writer.
    /// If the final flush fails, the file is abandoned instead (the reader fails).
    pub fn complete(mut self) -> io::Result<W> {
        let mut inner = self.inner.take().ok_or_else(closed)?;
        if let Err(e) = inner.flush() {
            self.progress.update(|s| s.end = Some(End::Abandoned));
            return Err(e);
        }
        self.progress.update(|s| s.end = Some(End::Complete));
        Ok(inner)
    }
}

fn closed() -> io::Error {
    io::Error::other("published writer already completed")
}

impl<W: Write> Write for Published<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.as_mut().ok_or_else(closed)?.write(buf)?;
        self.progress.update(|s| s.written += n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.as_mut().ok_or_else(closed)?.flush()
    }
}

impl<W> Drop for Published<W> {
    fn drop(&mut self) {
        if self.inner.is_some() {
            self.progress.update(|s| s.end = Some(End::Abandoned));
        }
    }
}

/// Reads the file a [`Published`] writer is writing, never past what it announced.
#[derive(Debug)]
pub struct Following {
    file: File,
    pos: u64,
    progress: Arc<Progress>,
}

/// What a [`Following`] reader can do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Read up to this many bytes.
    Read(u64),
    /// Wait for the writer.
    Wait,
    /// The file is complete and fully read.
    End,
    /// The writer gave up: the file is not complete.
    Abandoned,
}

impl Following {
    fn step(&self, state: &State) -> Step {
        if state.written > self.pos {
            return Step::Read(state.written - self.pos);
        }
        match state.end {
            Some(End::Complete) => Step::End,
            Some(End::Abandoned) => Step::Abandoned,
            None => Step::Wait,
        }
    }
}

impl Read for Following {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let available = {
            let mut state = self.progress.lock();
            loop {
                match self.step(&state) {
                    Step::Read(n) => break n,
                    Step::End => return Ok(0),
                    Step::Abandoned => {
                        return Err(io::Error::other(
                            "the writer stopped before the file was complete",
                        ))
                    }
                    Step::Wait => {
                        state = self
                            .progress
                            .changed
                            .wait(state)
                            .unwrap_or_else(|p| p.into_inner())
                    }
                }
            }
        };
        let want = buf
            .len()
            .min(usize::try_from(available).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file is shorter than what was written to it",
            ));
        }
        if crate::failpoint::armed(DAMAGE_FAILPOINT) {
            damage_for_test(&mut buf[..n], self.pos);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Failpoint: the reader sees byte 200 of the file flipped (a disk that returns other bytes than
/// it was given).
const DAMAGE_FAILPOINT: &str = "follow-read-differs";

/// Flips byte 200 of the file if `buf`, read at `pos`, holds it.
fn damage_for_test(buf: &mut [u8], pos: u64) {
    if let Some(b) = 200u64
        .checked_sub(pos)
        .and_then(|i| usize::try_from(i).ok())
        .and_then(|i| buf.get_mut(i))
    {
        *b ^= 0x01;
    }
}

/// Wraps `inner`, which writes the file at `path` from its start, and opens `path` a second time
/// for the reader that follows it.
pub fn follow<W: Write>(inner: W, path: &Path) -> io::Result<(Published<W>, Following)> {
    let file = File::open(path)?;
    let progress = Arc::new(Progress::default());
    Ok((
        Published {
            inner: Some(inner),
            progress: Arc::clone(&progress),
        },
        Following {
            file,
            pos: 0,
            progress,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (tempfile::TempDir, Published<File>, Following) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let file = File::create(&path).expect("create");
        let (w, r) = follow(file, &path).expect("follow");
        (dir, w, r)
    }

    #[test]
    fn the_reader_gets_every_byte_in_order_and_then_the_end() {
        let (_dir, mut w, mut r) = pair();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let expected = data.clone();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            r.read_to_end(&mut got).map(|_| got)
        });
        for chunk in data.chunks(4093) {
            w.write_all(chunk).expect("write");
        }
        w.complete().expect("complete");
        let got = reader.join().expect("join").expect("read");
        assert_eq!(got, expected);
    }

    #[test]
    fn a_reader_that_caught_up_waits_and_sees_the_end_only_once_the_writer_completes() {
        let (_dir, mut w, mut r) = pair();
        w.write_all(b"abc").expect("write");
        let mut buf = [0u8; 16];
        assert_eq!(r.step(&r.progress.lock()), Step::Read(3));
        assert_eq!(r.read(&mut buf).expect("read"), 3);
        assert_eq!(&buf[..3], b"abc");
        // Caught up, file not complete: wait (a reader that took this for the end would verify
        // a truncated file).
        assert_eq!(r.step(&r.progress.lock()), Step::Wait);
        w.write_all(b"def").expect("write");
        assert_eq!(r.step(&r.progress.lock()), Step::Read(3));
        assert_eq!(r.read(&mut buf).expect("read"), 3);
        assert_eq!(r.step(&r.progress.lock()), Step::Wait);
        w.complete().expect("complete");
        assert_eq!(r.step(&r.progress.lock()), Step::End);
        assert_eq!(r.read(&mut buf).expect("read"), 0);
    }

    #[test]
    fn a_writer_dropped_unfinished_fails_the_reader_instead_of_ending_the_file() {
        let (_dir, mut w, mut r) = pair();
        w.write_all(b"partial").expect("write");
        drop(w);
        let mut got = Vec::new();
        let err = r
            .read_to_end(&mut got)
            .expect_err("a short file must not look whole");
        assert!(err.to_string().contains("stopped before"), "{err}");
        assert_eq!(got, b"partial");
    }

    /// A file whose final flush fails.
    struct FlushFails(File);

    impl Write for FlushFails {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.write(buf)
        }

        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::other("flush failed"))
        }
    }

    #[test]
    fn a_failed_completion_abandons_the_file_instead_of_leaving_the_reader_waiting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let file = File::create(&path).expect("create");
        let (mut w, mut r) = follow(FlushFails(file), &path).expect("follow");
        w.write_all(b"abc").expect("write");
        assert!(w.complete().is_err());
        let mut buf = [0u8; 8];
        assert_eq!(r.read(&mut buf).expect("the written bytes"), 3);
        assert_eq!(r.step(&r.progress.lock()), Step::Abandoned);
        assert!(r.read(&mut buf).is_err());
    }

    #[test]
    fn a_file_shorter_than_announced_is_an_error() {
        let (dir, mut w, mut r) = pair();
        w.write_all(b"0123456789").expect("write");
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("f"))
            .and_then(|f| f.set_len(4))
            .expect("truncate");
        w.complete().expect("complete");
        let mut got = Vec::new();
        let err = r
            .read_to_end(&mut got)
            .expect_err("truncated under the reader");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
