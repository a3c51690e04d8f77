//! The gallery file, as `Gallery::open` reads it from disk.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = facecast::gallery::validate_file(data);
});
