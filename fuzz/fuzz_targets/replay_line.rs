#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| observer::fuzzing::replay_line(data));
