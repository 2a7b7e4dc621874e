#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| observer::fuzzing::flows_request(data));
