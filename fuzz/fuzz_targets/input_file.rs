#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hubble_cli::fuzzing::input_file(data));
