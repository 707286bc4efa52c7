//! Envelope throughput, one thread: raw `ring` AES-256-GCM sealing against the envelope's
//! `Write` / `Read` adapters (see docs/PERFORMANCE.md, "Envelope throughput").
//!
//! Run through `scripts/bench-envelope`, which pins it to one core, adds the OpenSSL figure and
//! checks the targets. Directly: `cargo bench -p ransomeye-kernel --bench envelope`; arguments
//! after `--` run only the figures whose names contain one of them (e.g. `-- decrypt_hot`).
//!
//! Environment:
//! - `BENCH_BYTES`: plaintext bytes per repetition of every measurement (default 1 GiB);
//! - `BENCH_REPS`: repetitions per measurement, the best one is reported (default 5);
//! - `BENCH_FILE_BYTES`: plaintext size of the in-memory envelope the decrypt runs read
//!   (default 256 MiB, at most `BENCH_BYTES`).
//!
//! Output: `key=value` lines (throughputs in GB/s = 10^9 bytes/s of plaintext), and `#` lines
//! saying what each figure measures.

use std::env;
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ransomeye_kernel::envelope::{
    derive_file_key, segment_nonce, EnvelopeReader, EnvelopeWriter, Header, Purpose,
    DEFAULT_SEGMENT_SIZE, HEADER_LEN, TAG_LEN,
};
use ransomeye_kernel::keys::{KeyPurpose, SymmetricKey};
use ring::aead;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// Chunk size of the "large writes / large reads" variants.
const BIG_CHUNK: usize = MIB;
/// Plaintext size of the cache-resident envelope of the "hot" decrypt variants.
const HOT_FILE: usize = MIB;
/// Chunk size of `std::io::copy` (its stack buffer) and of the small-writes variant.
const SMALL_CHUNK: usize = 8 * KIB;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Config {
    bytes: usize,
    reps: usize,
    file_bytes: usize,
    /// Substrings of the measurements to run (all of them when empty).
    filters: Vec<String>,
}

impl Config {
    /// Runs `f` `reps` times if `name` is selected and prints the best throughput.
    fn measure(
        &self,
        name: &str,
        what: &str,
        mut f: impl FnMut() -> Result<Run, String>,
    ) -> Result<(), String> {
        if !self.selected(name) {
            return Ok(());
        }
        let mut best: Option<Run> = None;
        for _ in 0..self.reps {
            let run = f()?;
            if best.as_ref().is_none_or(|b| run.gbps() > b.gbps()) {
                best = Some(run);
            }
        }
        let best = best.ok_or_else(|| "no repetitions".to_string())?;
        println!("# {name}: {what}");
        println!("{name}={:.2}", best.gbps());
        Ok(())
    }

    fn selected(&self, name: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| name.contains(f.as_str()))
    }
}

fn env_usize(name: &str, default: usize) -> Result<usize, String> {
    match env::var(name) {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{name}={v:?} is not a positive integer")),
        },
        Err(env::VarError::NotPresent) => Ok(default),
        Err(e) => Err(format!("{name}: {e}")),
    }
}

fn run() -> Result<(), String> {
    let bytes = env_usize("BENCH_BYTES", 1024 * MIB)?;
    let config = Config {
        bytes,
        reps: env_usize("BENCH_REPS", 5)?,
        file_bytes: env_usize("BENCH_FILE_BYTES", 256 * MIB)?.min(bytes),
        // `cargo bench` passes `--bench`; other arguments select measurements by substring.
        filters: env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect(),
    };
    let segment = DEFAULT_SEGMENT_SIZE as usize;
    let key = SymmetricKey::from_bytes(KeyPurpose::Archive, [0x5a; 32]);
    let pattern = pattern(BIG_CHUNK);

    println!(
        "# envelope throughput, single thread, best of {} repetitions",
        config.reps
    );
    println!("# GB/s = 10^9 plaintext bytes per second");
    println!("bench_bytes={}", config.bytes);
    println!("bench_reps={}", config.reps);
    println!("segment_bytes={segment}");
    println!("big_chunk_bytes={BIG_CHUNK}");
    println!("small_chunk_bytes={SMALL_CHUNK}");
    println!("decrypt_file_bytes={}", config.file_bytes);

    config.measure(
        "ring_seal_gbps",
        "raw ring LessSafeKey::seal_in_place_separate_tag, AES-256-GCM, one segment-size buffer \
         sealed in place over and over, 61-byte AAD (the baseline)",
        || ring_seal(config.bytes, segment),
    )?;
    config.measure(
        "ring_open_gbps",
        "raw ring LessSafeKey::open_in_place of one sealed segment-size segment (only the open \
         calls are timed; the segment is re-sealed between them, untimed)",
        || ring_open(config.bytes, segment),
    )?;
    config.measure(
        "envelope_encrypt_gbps",
        "EnvelopeWriter::new + write_all of 1 MiB chunks + finish, into a counting sink",
        || encrypt_write_all(&key, &pattern, config.bytes, BIG_CHUNK),
    )?;
    config.measure(
        "envelope_encrypt_8k_gbps",
        "as envelope_encrypt_gbps, with write_all of 8 KiB chunks",
        || encrypt_write_all(&key, &pattern, config.bytes, SMALL_CHUNK),
    )?;
    config.measure(
        "envelope_encrypt_copy_gbps",
        "std::io::copy (8 KiB stack buffer) from an in-memory reader into EnvelopeWriter",
        || encrypt_copy(&key, &pattern, config.bytes),
    )?;

    // Decryption of an envelope too large for the caches (the ciphertext streams from memory,
    // as from the page cache when reading a file) ...
    let names = [
        "envelope_decrypt_gbps",
        "envelope_decrypt_copy_gbps",
        "ring_open_mem_gbps",
        "source_copy_gbps",
    ];
    if names.iter().any(|n| config.selected(n)) {
        let file = encrypt_file(&key, &pattern, config.file_bytes)?;
        verify_file(&key, &file, &pattern, config.file_bytes)?;
        let rounds = config.bytes.div_ceil(config.file_bytes);
        config.measure(
            names[0],
            "EnvelopeReader::open + read into a 1 MiB buffer until EOF, of an envelope held in \
             memory (decrypt_file_bytes of plaintext), repeated to reach bench_bytes",
            || decrypt_read(&key, &file, config.file_bytes, rounds, BIG_CHUNK),
        )?;
        config.measure(
            names[1],
            "as envelope_decrypt_gbps, with std::io::copy (8 KiB stack buffer) into a counting \
             sink",
            || decrypt_copy(&key, &file, config.file_bytes, rounds),
        )?;
        config.measure(
            names[2],
            "raw ring LessSafeKey::open_in_place of every segment of the same in-memory envelope, \
             in place, no copies (a fresh copy of the envelope is made before each pass, untimed)",
            || ring_open_file(&key, &file, rounds),
        )?;
        config.measure(
            names[3],
            "no crypto: memcpy of the same in-memory envelope, one segment + tag at a time, into \
             one buffer (the cost of fetching the ciphertext from memory, per plaintext byte)",
            || source_copy(&file, config.file_bytes, rounds),
        )?;
    }
    // ... and of one small enough to stay in the cache, like the baseline's buffer.
    let names = [
        "envelope_decrypt_hot_gbps",
        "envelope_decrypt_hot_copy_gbps",
    ];
    if names.iter().any(|n| config.selected(n)) {
        let hot = HOT_FILE.min(config.bytes);
        let file = encrypt_file(&key, &pattern, hot)?;
        verify_file(&key, &file, &pattern, hot)?;
        let rounds = config.bytes.div_ceil(hot);
        config.measure(
            names[0],
            "as envelope_decrypt_gbps, of an envelope of 1 MiB of plaintext (cache-resident), \
             repeated to reach bench_bytes",
            || decrypt_read(&key, &file, hot, rounds, BIG_CHUNK),
        )?;
        config.measure(
            names[1],
            "as envelope_decrypt_hot_gbps, with std::io::copy (8 KiB stack buffer) into a \
             counting sink",
            || decrypt_copy(&key, &file, hot, rounds),
        )?;
    }
    Ok(())
}

/// Plaintext bytes processed and the time it took.
struct Run {
    bytes: u64,
    elapsed: Duration,
}

impl Run {
    fn gbps(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e9
    }
}

/// Non-trivial plaintext (the speed of AES-GCM does not depend on it, but zeros invite
/// surprises).
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn ring_key() -> aead::LessSafeKey {
    let unbound =
        aead::UnboundKey::new(&aead::AES_256_GCM, &[0xa5; 32]).expect("32 bytes is an AES-256 key");
    aead::LessSafeKey::new(unbound)
}

fn nonce(counter: u64) -> aead::Nonce {
    let mut n = [0u8; aead::NONCE_LEN];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    aead::Nonce::assume_unique_for_key(n)
}

fn ring_seal(total: usize, segment: usize) -> Result<Run, String> {
    let key = ring_key();
    let aad = [0x42u8; HEADER_LEN];
    let mut buf = pattern(segment);
    let segments = total.div_ceil(segment) as u64;
    let start = Instant::now();
    for i in 0..segments {
        let tag = key
            .seal_in_place_separate_tag(nonce(i), aead::Aad::from(&aad[..]), &mut buf)
            .map_err(|_| "ring seal failed".to_string())?;
        let _ = black_box(tag);
    }
    black_box(&buf);
    Ok(Run {
        bytes: segments * segment as u64,
        elapsed: start.elapsed(),
    })
}

fn ring_open(total: usize, segment: usize) -> Result<Run, String> {
    let key = ring_key();
    let aad = [0x42u8; HEADER_LEN];
    let mut buf = pattern(segment);
    buf.reserve_exact(TAG_LEN);
    let segments = total.div_ceil(segment) as u64;
    let mut elapsed = Duration::ZERO;
    for i in 0..segments {
        buf.truncate(segment);
        let tag = key
            .seal_in_place_separate_tag(nonce(i), aead::Aad::from(&aad[..]), &mut buf)
            .map_err(|_| "ring seal failed".to_string())?;
        buf.extend_from_slice(tag.as_ref());
        let start = Instant::now();
        let plain = key
            .open_in_place(nonce(i), aead::Aad::from(&aad[..]), &mut buf)
            .map_err(|_| "ring open failed".to_string())?;
        black_box(plain);
        elapsed += start.elapsed();
    }
    Ok(Run {
        bytes: segments * segment as u64,
        elapsed,
    })
}

/// A `Write` that only counts (and keeps the optimiser from discarding what it is given).
#[derive(Default)]
struct CountingSink {
    bytes: u64,
}

impl Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        black_box(buf);
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Envelope size for `plaintext` bytes at the default segment size.
fn envelope_len(plaintext: usize) -> u64 {
    let segment = DEFAULT_SEGMENT_SIZE as usize;
    let segments = plaintext.div_ceil(segment).max(1);
    (HEADER_LEN + plaintext + segments * TAG_LEN) as u64
}

fn io_err(what: &str) -> impl Fn(io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn encrypt_write_all(
    key: &SymmetricKey,
    pattern: &[u8],
    total: usize,
    chunk: usize,
) -> Result<Run, String> {
    let start = Instant::now();
    let mut w = EnvelopeWriter::new(CountingSink::default(), key, Purpose::Archive)
        .map_err(io_err("EnvelopeWriter::new"))?;
    let mut left = total;
    let mut at = 0;
    while left > 0 {
        let n = chunk.min(left);
        if at + n > pattern.len() {
            at = 0;
        }
        w.write_all(&pattern[at..at + n])
            .map_err(io_err("write_all"))?;
        at += n;
        left -= n;
    }
    let sink = w.finish().map_err(io_err("finish"))?;
    let elapsed = start.elapsed();
    check_len("encrypted", sink.bytes, envelope_len(total))?;
    Ok(Run {
        bytes: total as u64,
        elapsed,
    })
}

/// Reads `left` bytes cycling over `pattern`, copying them out like a real source would.
struct PatternReader<'a> {
    pattern: &'a [u8],
    at: usize,
    left: usize,
}

impl Read for PatternReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.pattern.len() {
            self.at = 0;
        }
        let n = out.len().min(self.left).min(self.pattern.len() - self.at);
        out[..n].copy_from_slice(&self.pattern[self.at..self.at + n]);
        self.at += n;
        self.left -= n;
        Ok(n)
    }
}

fn encrypt_copy(key: &SymmetricKey, pattern: &[u8], total: usize) -> Result<Run, String> {
    let start = Instant::now();
    let mut w = EnvelopeWriter::new(CountingSink::default(), key, Purpose::Archive)
        .map_err(io_err("EnvelopeWriter::new"))?;
    let mut src = PatternReader {
        pattern,
        at: 0,
        left: total,
    };
    let copied = io::copy(&mut src, &mut w).map_err(io_err("io::copy"))?;
    let sink = w.finish().map_err(io_err("finish"))?;
    let elapsed = start.elapsed();
    check_len("copied", copied, total as u64)?;
    check_len("encrypted", sink.bytes, envelope_len(total))?;
    Ok(Run {
        bytes: total as u64,
        elapsed,
    })
}

fn encrypt_file(key: &SymmetricKey, pattern: &[u8], plaintext: usize) -> Result<Vec<u8>, String> {
    let out = Vec::with_capacity(envelope_len(plaintext) as usize);
    let mut w =
        EnvelopeWriter::new(out, key, Purpose::Archive).map_err(io_err("EnvelopeWriter::new"))?;
    let mut left = plaintext;
    while left > 0 {
        let n = pattern.len().min(left);
        w.write_all(&pattern[..n]).map_err(io_err("write_all"))?;
        left -= n;
    }
    let file = w.finish().map_err(io_err("finish"))?;
    check_len("encrypted file", file.len() as u64, envelope_len(plaintext))?;
    Ok(file)
}

/// Decrypts the test file once, untimed, and compares it with what was encrypted.
fn verify_file(
    key: &SymmetricKey,
    file: &[u8],
    pattern: &[u8],
    plaintext: usize,
) -> Result<(), String> {
    let mut r = EnvelopeReader::open(file, key).map_err(io_err("EnvelopeReader::open"))?;
    let mut buf = vec![0u8; pattern.len()];
    let mut left = plaintext;
    while left > 0 {
        let n = pattern.len().min(left);
        r.read_exact(&mut buf[..n]).map_err(io_err("read_exact"))?;
        if buf[..n] != pattern[..n] {
            return Err("decrypted plaintext differs from what was encrypted".to_string());
        }
        left -= n;
    }
    match r.read(&mut buf).map_err(io_err("read at end"))? {
        0 => Ok(()),
        _ => Err("decrypted plaintext is longer than what was encrypted".to_string()),
    }
}

fn decrypt_read(
    key: &SymmetricKey,
    file: &[u8],
    plaintext: usize,
    rounds: usize,
    chunk: usize,
) -> Result<Run, String> {
    let mut buf = vec![0u8; chunk];
    let mut bytes = 0u64;
    let start = Instant::now();
    for _ in 0..rounds {
        let mut r = EnvelopeReader::open(file, key).map_err(io_err("EnvelopeReader::open"))?;
        loop {
            let n = r.read(&mut buf).map_err(io_err("read"))?;
            if n == 0 {
                break;
            }
            black_box(&buf[..n]);
            bytes += n as u64;
        }
    }
    let elapsed = start.elapsed();
    check_len("decrypted", bytes, (rounds * plaintext) as u64)?;
    Ok(Run { bytes, elapsed })
}

fn decrypt_copy(
    key: &SymmetricKey,
    file: &[u8],
    plaintext: usize,
    rounds: usize,
) -> Result<Run, String> {
    let mut sink = CountingSink::default();
    let start = Instant::now();
    for _ in 0..rounds {
        let mut r = EnvelopeReader::open(file, key).map_err(io_err("EnvelopeReader::open"))?;
        io::copy(&mut r, &mut sink).map_err(io_err("io::copy"))?;
    }
    let elapsed = start.elapsed();
    check_len("decrypted", sink.bytes, (rounds * plaintext) as u64)?;
    Ok(Run {
        bytes: sink.bytes,
        elapsed,
    })
}

fn ring_open_file(key: &SymmetricKey, file: &[u8], rounds: usize) -> Result<Run, String> {
    let header = Header::read_from(&mut &file[..]).map_err(io_err("Header::read_from"))?;
    let file_key = derive_file_key(key, header.purpose, &header.salt);
    let mut bytes = 0u64;
    let mut elapsed = Duration::ZERO;
    for _ in 0..rounds {
        let mut copy = file.to_vec();
        let (aad, segments) = copy.split_at_mut(HEADER_LEN);
        let count = segments
            .len()
            .div_ceil(DEFAULT_SEGMENT_SIZE as usize + TAG_LEN);
        let start = Instant::now();
        for (i, segment) in segments
            .chunks_mut(DEFAULT_SEGMENT_SIZE as usize + TAG_LEN)
            .enumerate()
        {
            let counter = u32::try_from(i).map_err(|_| "too many segments".to_string())?;
            let nonce = segment_nonce(&header.nonce_prefix, counter, i + 1 == count);
            let plain = file_key
                .open_in_place(nonce, aead::Aad::from(&aad[..]), segment)
                .map_err(|_| format!("ring open of segment {i} failed"))?;
            bytes += black_box(plain).len() as u64;
        }
        elapsed += start.elapsed();
    }
    Ok(Run { bytes, elapsed })
}

fn source_copy(file: &[u8], plaintext: usize, rounds: usize) -> Result<Run, String> {
    let piece = DEFAULT_SEGMENT_SIZE as usize + TAG_LEN;
    let mut buf = vec![0u8; piece];
    let start = Instant::now();
    for _ in 0..rounds {
        for chunk in file.chunks(piece) {
            buf[..chunk.len()].copy_from_slice(chunk);
            black_box(&mut buf);
        }
    }
    let elapsed = start.elapsed();
    Ok(Run {
        bytes: (rounds * plaintext) as u64,
        elapsed,
    })
}

fn check_len(what: &str, got: u64, want: u64) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: {got} bytes, expected {want}"))
    }
}
