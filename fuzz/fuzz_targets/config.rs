//! The configuration file: TOML text parsed strictly, then range-checked, as `Config::load` does.
#![no_main]

use std::path::Path;

use facecast::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Config::load reads the file with read_to_string, so non-UTF-8 never reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::parse(text, Path::new("fuzz.toml")) {
        let _ = config.validate("fuzz.toml");
    }
});
