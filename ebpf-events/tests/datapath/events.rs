//! Collects decoded records and finds the ones a test expects.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use ebpf_events::loader::EventReader;
use ebpf_events::{decode, DatapathEvent, EventHeader, PolicyVerdictInfo};

/// How long a test waits for an expected record.
const WAIT: Duration = Duration::from_secs(3);

/// A decoded record with the L4 fields a test matches on.
#[derive(Clone, Debug)]
pub struct Seen {
    pub msg_type: u8,
    pub header: EventHeader,
    pub verdict: Option<PolicyVerdictInfo>,
    pub protocol: u8,
    pub sport: u16,
    pub dport: u16,
    pub icmp_type: Option<u8>,
}

/// Reads records and keeps every one of them for later assertions.
pub struct Collector {
    reader: EventReader,
    seen: Vec<Seen>,
}

impl Collector {
    pub fn new(reader: EventReader) -> Self {
        Self {
            reader,
            seen: Vec::new(),
        }
    }

    pub fn into_reader(self) -> EventReader {
        self.reader
    }

    pub fn seen(&mut self) -> &[Seen] {
        self.poll();
        &self.seen
    }

    fn poll(&mut self) {
        let seen = &mut self.seen;
        self.reader
            .drain(usize::MAX, |record| match decode(record) {
                Ok(event) => seen.push(summarize(&event)),
                Err(error) => panic!("undecodable record from the datapath: {error}"),
            });
    }

    /// Waits until a record matching `predicate` arrived and returns it.
    pub fn wait_for(&mut self, what: &str, predicate: impl Fn(&Seen) -> bool) -> Result<Seen> {
        let deadline = Instant::now() + WAIT;
        loop {
            self.poll();
            if let Some(found) = self.seen.iter().find(|e| predicate(e)) {
                return Ok(found.clone());
            }
            if Instant::now() > deadline {
                let dump: Vec<String> = self.seen.iter().map(|e| format!("{e:?}")).collect();
                bail!(
                    "no record for {what}; saw {} records:\n{}",
                    dump.len(),
                    dump.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn summarize(event: &DatapathEvent<'_>) -> Seen {
    let header = *event.header();
    let verdict = match event {
        DatapathEvent::PolicyVerdict(v) => Some(v.verdict),
        _ => None,
    };
    let (protocol, l4) = l4_of(event.packet(), header.is_ipv6());
    let port = |at: usize| {
        l4.and_then(|l4| l4.get(at..at + 2))
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    };
    let icmp_type = match protocol {
        1 | 58 => l4.and_then(|l4| l4.first().copied()),
        _ => None,
    };
    let (sport, dport) = match protocol {
        6 | 17 => (port(0), port(2)),
        _ => (0, 0),
    };
    Seen {
        msg_type: header.msg_type,
        header,
        verdict,
        protocol,
        sport,
        dport,
        icmp_type,
    }
}

/// Protocol and L4 bytes of an Ethernet frame (no IPv6 extension headers).
fn l4_of(packet: &[u8], ipv6: bool) -> (u8, Option<&[u8]>) {
    if ipv6 {
        let protocol = packet.get(14 + 6).copied().unwrap_or(0);
        (protocol, packet.get(54..))
    } else {
        let ihl = usize::from(packet.get(14).copied().unwrap_or(0) & 0x0f) * 4;
        let protocol = packet.get(14 + 9).copied().unwrap_or(0);
        (protocol, packet.get(14 + ihl..))
    }
}
