//! The experiment parser takes any text without panicking: a file is an experiment or an error.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = chaos::cli::experiment::Experiment::parse(Path::new("fuzz.toml"), text, None);
    }
});
