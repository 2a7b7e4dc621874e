#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| proxy::fuzzing::dns_message(data));
