//! Policy documents that would once hold the repository lock for a minute,
//! cost hundreds of MiB or end in a broken pipe, sent through the admin
//! socket: each is refused with a message naming the limit (and the line),
//! and `policy get` answers while a big document is being parsed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent::admin::{
    bind_admin_socket, execute_admin_command, serve_admin, AdminCommand, AdminError, AdminStats,
    PolicyCommand, MAX_REQUEST_BYTES,
};
use agent::identity::LocalIdentityAllocator;
use agent::labels::DEFAULT_CLUSTER_NAME;
use agent::policy::MAX_POLICY_BYTES;
use agent::state::AgentState;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// An admin server over an empty agent state, stopped on drop.
struct Agent {
    dir: tempfile::TempDir,
    socket: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Agent {
    fn start() -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("agent.sock");
        let state = AgentState::new(
            Arc::new(LocalIdentityAllocator::new()),
            DEFAULT_CLUSTER_NAME,
        );
        let listener = bind_admin_socket(&socket).expect("bind");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve_admin(
            listener,
            state,
            Arc::new(AdminStats::default()),
            async {
                let _ = stopped.await;
            },
        ));
        Agent {
            dir,
            socket,
            stop: Some(stop),
        }
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write policy file");
        path
    }

    async fn import(&self, file: &Path) -> Result<String, AdminError> {
        let command = AdminCommand::Policy(PolicyCommand::Import {
            file: file.to_path_buf(),
        });
        execute_admin_command(&command, &self.socket)
            .await
            .map(|output| output.stdout)
    }

    async fn get(&self) -> String {
        execute_admin_command(&AdminCommand::Policy(PolicyCommand::Get), &self.socket)
            .await
            .expect("policy get")
            .stdout
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn agent_error(result: Result<String, AdminError>) -> String {
    match result {
        Err(AdminError::Agent(message)) => message,
        other => panic!("expected the agent's refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn deep_nesting_is_refused_with_its_line() {
    let agent = Agent::start();
    // 200,000 `[`: libyaml alone took 52 s to reject this.
    let text = format!(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nspec:\n  endpointSelector: {}\n",
        "[".repeat(200_000)
    );
    let file = agent.file("deep.yaml", &text);
    assert_eq!(
        agent_error(agent.import(&file).await),
        "line 4: the document nests deeper than 64 levels"
    );
    assert!(agent.get().await.ends_with("Revision: 1\n"));
}

#[tokio::test]
async fn an_alias_bomb_is_refused_with_its_line() {
    let agent = Agent::start();
    // Nine levels of ten aliases each: 10^9 nodes from about 400 bytes.
    let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for pair in names.windows(2) {
        let [prev, next] = pair else { continue };
        let refs = vec![format!("*{prev}"); 10].join(", ");
        text.push_str(&format!("{next}: &{next} [{refs}]\n"));
    }
    let file = agent.file("bomb.yaml", &text);
    assert_eq!(
        agent_error(agent.import(&file).await),
        "line 4: aliases expand to more than 10000 nodes"
    );
}

#[tokio::test]
async fn an_oversized_file_is_refused_before_sending() {
    let agent = Agent::start();
    let file = agent.file("big.yaml", &"#".repeat(MAX_POLICY_BYTES + 1));
    match agent.import(&file).await {
        Err(AdminError::Usage(message)) => assert_eq!(
            message,
            format!(
                "{}: {} bytes; the agent accepts policy documents up to 4194304 bytes",
                file.display(),
                MAX_POLICY_BYTES + 1
            )
        ),
        other => panic!("expected a refusal before sending, got {other:?}"),
    }

    // Under the document limit but over the request limit once encoded:
    // every `"` becomes `\"`.
    let quotes = agent.file("quotes.yaml", &"\"".repeat(MAX_POLICY_BYTES / 2 + 100));
    match agent.import(&quotes).await {
        Err(AdminError::Usage(message)) => assert!(
            message.starts_with("the request is ")
                && message.ends_with(
                    "bytes once encoded; the agent accepts requests up to 4194304 bytes"
                ),
            "{message}"
        ),
        other => panic!("expected a refusal before sending, got {other:?}"),
    }
}

#[tokio::test]
async fn a_client_that_sends_too_much_reads_the_refusal() {
    // What an older client (or another program) sends: a whole request over
    // the limit. The agent answers and reads the rest, so the writer sees
    // the message instead of a broken pipe.
    let agent = Agent::start();
    let stream = tokio::net::UnixStream::connect(&agent.socket)
        .await
        .expect("connect");
    let (read_half, mut write_half) = stream.into_split();
    let mut line = b"{\"command\":\"policy_import\",\"text\":\"".to_vec();
    line.resize(MAX_REQUEST_BYTES + 1024, b'x');
    line.extend_from_slice(b"\"}\n");
    write_half
        .write_all(&line)
        .await
        .expect("the whole request is read");
    write_half.shutdown().await.expect("shutdown");
    let mut answer = String::new();
    BufReader::new(read_half)
        .read_line(&mut answer)
        .await
        .expect("read");
    assert_eq!(
        answer,
        "{\"result\":\"error\",\"message\":\"request larger than 4194304 bytes\"}\n"
    );
}

/// A valid document of many rules, close to the size limit (9/10 of it:
/// the newlines take two bytes each once encoded).
fn big_policy() -> String {
    let mut text = String::new();
    let mut i = 0;
    while text.len() < MAX_POLICY_BYTES / 10 * 9 {
        text.push_str(&format!(
            "- endpointSelector: {{matchLabels: {{app: a{i}}}}}\n  ingress: [{{fromEndpoints: [{{matchLabels: {{app: b}}}}]}}]\n"
        ));
        i += 1;
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_get_answers_while_a_big_document_is_parsed() {
    let agent = Agent::start();
    let file = agent.file("big.yaml", &big_policy());
    let import = {
        let socket = agent.socket.clone();
        tokio::spawn(async move {
            let command = AdminCommand::Policy(PolicyCommand::Import { file });
            execute_admin_command(&command, &socket).await
        })
    };
    // Let the import's request reach the agent; the parse that follows
    // takes far longer than this (seconds for 4 MiB).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!import.is_finished(), "the import should still be parsing");
    // Were the document parsed under the repository lock, `policy get`
    // would wait for the import and print its revision (2).
    let during = agent.get().await;
    assert!(during.ends_with("Revision: 1\n"), "{during}");
    assert!(!import.is_finished(), "get answered after the import");
    let imported = import.await.expect("join").expect("import");
    assert_eq!(imported.stdout, "Revision: 2\n");
}
