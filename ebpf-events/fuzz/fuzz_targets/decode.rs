//! Feeds arbitrary bytes to the record decoder: it must return an error or
//! an event whose packet lies inside the record, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = ebpf_events::decode(data) {
        let packet = event.packet();
        assert!(packet.len() <= ebpf_events::abi::EVENT_PACKET_CAP);
        assert_eq!(usize::from(event.header().cap_len), packet.len());
        assert!(packet.len() <= data.len());
    }
});
