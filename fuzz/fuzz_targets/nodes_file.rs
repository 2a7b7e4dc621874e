#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peer_service::fuzzing::nodes_file(data));
