//! Fuzz target: arbitrary bytes through the intel graph's parsers, as `restore` and `verify`
//! meet them in a backup: a whole export ([`check`]), one record ([`Record::from_json`]) and
//! JSON properties ([`Properties::from_json`]).
//!
//! None may panic. What they accept must read back the same from its canonical form.
//! The property tests in core/intel/tests/properties.rs check the same on every `scripts/test`.
//!
//! Run (from the repository root):
//!
//! ```sh
//! mkdir -p fuzz/corpus/intel_json
//! cp core/intel/tests/vectors/*.jsonl fuzz/corpus/intel_json/
//! cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run intel_json -- -max_total_time=60
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;
use ransomeye_intel::{check, Properties, Record};

fuzz_target!(|data: &[u8]| {
    let _ = check(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(record) = Record::from_json(text) {
        assert_eq!(Record::from_json(&record.to_line()).as_ref(), Ok(&record));
    }
    if let Ok(properties) = Properties::from_json(text) {
        assert_eq!(
            Properties::from_json(properties.as_str()).as_ref(),
            Ok(&properties)
        );
    }
});
