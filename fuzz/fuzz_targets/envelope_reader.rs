//! Fuzz target: arbitrary bytes through the envelope header parser and the streaming reader.
//!
//! Neither may panic, whatever the input; every malformed input must come back as an error.
//! The key is docs/FORMAT.md's vector key (bytes 00 01 .. 1f, archive purpose), so mutations of
//! the known-good vector files get past the key-id check and exercise segment decryption.
//!
//! Run (from the repository root):
//!
//! ```sh
//! mkdir -p fuzz/corpus/envelope_reader
//! cp core/kernel/tests/vectors/*.env fuzz/corpus/envelope_reader/
//! cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run envelope_reader -- -max_total_time=60
//! ```
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use ransomeye_kernel::envelope::{EnvelopeReader, Header};
use ransomeye_kernel::keys::{KeyPurpose, SymmetricKey};

fuzz_target!(|data: &[u8]| {
    let mut key_bytes = [0u8; 32];
    for (i, b) in key_bytes.iter_mut().enumerate() {
        *b = i as u8;
    }
    let key = SymmetricKey::from_bytes(KeyPurpose::Archive, key_bytes);

    let _ = Header::read_from(&mut &data[..]);

    if let Ok(mut reader) = EnvelopeReader::open(data, &key) {
        let mut plaintext = Vec::new();
        let result = reader.read_to_end(&mut plaintext);
        // After an error the reader must keep failing and never report a clean end of stream.
        if result.is_err() {
            let mut more = [0u8; 64];
            assert!(
                reader.read(&mut more).is_err(),
                "reader recovered after an error"
            );
        }
    }
});
