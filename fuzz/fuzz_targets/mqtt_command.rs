//! A payload on the device's `cmd` topic, as the command thread receives it from the broker.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = facecast::publish::commands::parse(data);
});
