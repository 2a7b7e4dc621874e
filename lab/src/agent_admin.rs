//! Asking a node's agent which endpoints it has programmed, over its admin socket (one
//! JSON request per line, one JSON response per line; `hubble-agent endpoint list`
//! speaks the same).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::error::{LabError, Result};
use crate::paths::RunLayout;
use crate::process::{self, POLL_INTERVAL};
use crate::state::ProcessRecord;
use crate::topology::Topology;

/// How long `up` waits for the agents to program every endpoint.
pub const ENDPOINTS_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The status an agent reports for an endpoint whose identity and policy are in place.
pub const READY: &str = "ready";

#[derive(Deserialize)]
struct EndpointRow {
    namespace: String,
    name: String,
    status: String,
}

#[derive(Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
enum Response {
    Endpoints {
        endpoints: Vec<EndpointRow>,
    },
    Error {
        message: String,
    },
    #[serde(other)]
    Other,
}

/// The status of every endpoint the agent at `socket` knows, by `namespace/name`, or
/// why it could not be asked.
pub fn endpoint_statuses(socket: &Path) -> std::result::Result<BTreeMap<String, String>, String> {
    let mut stream = UnixStream::connect(socket).map_err(|error| error.to_string())?;
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(REQUEST_TIMEOUT)))
        .and_then(|()| stream.write_all(b"{\"command\":\"endpoint_list\"}\n"))
        .and_then(|()| stream.shutdown(std::net::Shutdown::Write))
        .map_err(|error| error.to_string())?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|error| error.to_string())?;
    match serde_json::from_str::<Response>(&line) {
        Ok(Response::Endpoints { endpoints }) => Ok(endpoints
            .into_iter()
            .map(|row| (format!("{}/{}", row.namespace, row.name), row.status))
            .collect()),
        Ok(Response::Error { message }) => Err(message),
        Ok(Response::Other) => Err(format!("unexpected answer {:?}", line.trim())),
        Err(error) => Err(format!("unreadable answer {:?}: {error}", line.trim())),
    }
}

/// The endpoints of `topology` that the agents in `agents` (record, node index) have
/// not yet reported ready, each with what its agent says.
fn pending(layout: &RunLayout, topology: &Topology, agents: &[(ProcessRecord, u8)]) -> Vec<String> {
    let mut pending = Vec::new();
    for (_, index) in agents {
        let pods: Vec<_> = topology
            .pods
            .iter()
            .filter(|pod| pod.node == *index)
            .collect();
        if pods.is_empty() {
            continue;
        }
        let statuses = endpoint_statuses(&layout.admin_socket(*index));
        for pod in pods {
            let key = format!("{}/{}", pod.namespace, pod.name);
            let why = match &statuses {
                Ok(statuses) => match statuses.get(&key) {
                    Some(status) if status == READY => continue,
                    Some(status) => status.clone(),
                    None => "not listed by the agent yet".to_string(),
                },
                Err(error) => format!("agent not answering: {error}"),
            };
            pending.push(format!("{key} on node{index} ({why})"));
        }
    }
    pending
}

/// Waits until every pod of `topology` on the nodes of `agents` is listed `ready` by
/// its agent; fails early when an agent exits, and after `timeout` with the endpoints
/// still not ready.
pub fn wait_for_endpoints(
    layout: &RunLayout,
    topology: &Topology,
    agents: &[(ProcessRecord, u8)],
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let pending = pending(layout, topology, agents);
        if pending.is_empty() {
            return Ok(());
        }
        if let Some((record, _)) = agents.iter().find(|(record, _)| !process::is_alive(record)) {
            return Err(LabError::ExitedEarly {
                role: record.role.clone(),
                log: record.log.clone(),
            });
        }
        if Instant::now() >= deadline {
            let logs = agents
                .iter()
                .map(|(record, _)| record.log.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(LabError::EndpointsNotReady {
                seconds: timeout.as_secs(),
                pending,
                logs,
            });
        }
        thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ProcessKind;
    use crate::topology::TopologyConfig;
    use std::os::unix::net::UnixListener;

    /// An "agent" answering every endpoint list with `answer`.
    fn fake_agent(socket: &Path, answer: &'static str) {
        let listener = UnixListener::bind(socket).expect("bind");
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut request = String::new();
                let mut reader = BufReader::new(&stream);
                let _ = reader.read_line(&mut request);
                assert_eq!(request.trim(), r#"{"command":"endpoint_list"}"#);
                let _ = (&stream).write_all(answer.as_bytes());
            }
        });
    }

    #[test]
    fn names_the_endpoints_that_are_not_ready() {
        let dir = std::env::temp_dir().join(format!("lab-admin-test-{}", std::process::id()));
        let layout = RunLayout::new(&dir);
        std::fs::create_dir_all(layout.node_dir(1)).expect("dir");
        let _ = std::fs::remove_file(layout.admin_socket(1));
        fake_agent(
            &layout.admin_socket(1),
            concat!(
                r#"{"result":"endpoints","endpoints":["#,
                r#"{"namespace":"default","name":"xwing","status":"waiting-for-identity","id":1},"#,
                r#"{"namespace":"default","name":"tiefighter","status":"ready"}]}"#,
                "\n"
            ),
        );
        let topology = Topology::plan(&TopologyConfig {
            nodes: 1,
            prefix: "hl-".to_string(),
            node_subnet: "10.100.0.0/24".parse().expect("subnet"),
        })
        .expect("plan");
        let pid = i32::try_from(std::process::id()).expect("pid");
        let me = ProcessRecord {
            role: "agent node1".to_string(),
            kind: ProcessKind::Agent,
            pid,
            start_time: process::start_time(pid).expect("own start time"),
            netns: None,
            log: layout.agent_log(1),
            command: Vec::new(),
        };
        let error = wait_for_endpoints(&layout, &topology, &[(me, 1)], Duration::ZERO)
            .expect_err("not ready");
        let message = error.to_string();
        assert!(
            message.contains("default/xwing on node1 (waiting-for-identity)"),
            "{message}"
        );
        assert!(
            message.contains("default/deathstar-1 on node1 (not listed by the agent yet)"),
            "{message}"
        );
        assert!(!message.contains("tiefighter"), "{message}");
        assert!(message.contains("agent.log"), "{message}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
