//! The experiment and monkey parsers take any text without panicking: a file is an experiment
//! (or a monkey's file) or an error.
#![no_main]

use std::path::Path;

use chaos::cli::experiment::{Experiment, monkey::MonkeyFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Experiment::parse(Path::new("fuzz.toml"), text, None);
        let _ = MonkeyFile::parse(Path::new("fuzz.toml"), text);
    }
});
