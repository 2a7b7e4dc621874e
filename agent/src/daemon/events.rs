//! Endpoint files -> control plane state, with agent events for `hubble observe
//! --type agent`-style consumers (GetAgentEvents).

use std::sync::Arc;

use observer::IngestHandle;
use proto::flow::{
    agent_event::Notification, AgentEvent, AgentEventType, EndpointUpdateNotification,
};
use tokio::sync::mpsc;

use super::hooks::FlowHooks;
use crate::endpoints::EndpointEvent;
use crate::state::AgentState;

/// Applies endpoint watcher events to the state until the watcher stops.
pub async fn apply_endpoint_events(
    state: Arc<AgentState>,
    mut events: mpsc::Receiver<EndpointEvent>,
    ingest: IngestHandle,
    hooks: FlowHooks,
) {
    while let Some(event) = events.recv().await {
        let notice = match &event {
            EndpointEvent::Added(w) => {
                Some((AgentEventType::EndpointCreated, w.clone(), String::new()))
            }
            EndpointEvent::Updated { current, .. } => Some((
                AgentEventType::EndpointRegenerateSuccess,
                current.clone(),
                String::new(),
            )),
            EndpointEvent::Removed(w) => {
                hooks.on_endpoint_deleted(&w.spec.namespace, &w.spec.name);
                Some((AgentEventType::EndpointDeleted, w.clone(), String::new()))
            }
            EndpointEvent::Rejected { path, error } => {
                tracing::warn!("ignoring endpoint file {}: {error}", path.display());
                None
            }
        };
        if let Err(e) = state.apply_endpoint_event(event).await {
            tracing::error!("applying an endpoint change: {e}");
            continue;
        }
        if let Some((kind, watched, error)) = notice {
            let labels =
                crate::endpoints::security_labels(&watched.spec, state.cluster()).to_strings();
            tracing::info!(
                endpoint = watched.id,
                pod = %format!("{}/{}", watched.spec.namespace, watched.spec.name),
                "{}",
                kind.as_str_name()
            );
            ingest.push_agent_event(AgentEvent {
                r#type: kind as i32,
                notification: Some(Notification::EndpointUpdate(EndpointUpdateNotification {
                    id: u64::from(watched.id),
                    labels,
                    error,
                    pod_name: watched.spec.name.clone(),
                    namespace: watched.spec.namespace.clone(),
                })),
            });
        }
    }
}
