//! One tunnelled connection to the relay: a TCP connection (`tcp://`, and the local end
//! of `kubectl port-forward`), or an `ssh -W` process whose standard input and output
//! carry the bytes. Each ssh tunnel is its own process (one per connection): nothing is
//! shared between connections, and ssh's own `ControlMaster`/`ControlPersist` options
//! (through `HUBBLE_SSH_COMMAND` or `--ssh-option`) make the later ones cheap.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::target::{RelayAddress, Target};

/// How long one check of the tunnel waits for the relay's first bytes (ssh connecting
/// and authenticating included).
pub const TUNNEL_CHECK_TIMEOUT: Duration = Duration::from_secs(20);
/// How much of a tunnel process's standard error is kept for the error message.
const STDERR_KEPT_BYTES: usize = 4096;
/// How many of its last lines an error message shows.
const STDERR_LINES_SHOWN: usize = 3;
/// How long a tunnel process may take to exit once its output has ended.
const EXIT_WAIT: Duration = Duration::from_secs(5);
/// How long the relay's side of a connection may go on once the client has stopped
/// sending, so that a tunnel whose far end never closes does not hold its slot forever.
const LINGER: Duration = Duration::from_secs(30);

/// The first bytes an HTTP/2 client sends: the connection preface and an empty SETTINGS
/// frame. A gRPC server answers with its own SETTINGS; a TLS server answers with an
/// alert. Either way an answer proves the tunnel reaches a listening relay.
const HTTP2_PREFACE: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Opens tunnels to the relay, one per connection.
#[derive(Debug)]
pub enum Dialer {
    Tcp {
        host: String,
        port: u16,
    },
    Ssh {
        program: SshProgram,
        args: Vec<String>,
    },
}

/// The ssh client to run: `ssh`, or a command line given by the user that `sh` runs
/// with the arguments appended, as git runs `GIT_SSH_COMMAND`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshProgram {
    Ssh,
    Shell(String),
}

impl SshProgram {
    /// `HUBBLE_SSH_COMMAND` when set and not empty, else `ssh`.
    pub fn from_env_value(value: Option<String>) -> Self {
        match value {
            Some(v) if !v.trim().is_empty() => SshProgram::Shell(v),
            _ => SshProgram::Ssh,
        }
    }

    fn command(&self, args: &[String]) -> Command {
        match self {
            SshProgram::Ssh => {
                let mut cmd = Command::new("ssh");
                cmd.args(args);
                cmd
            }
            SshProgram::Shell(line) => {
                let mut cmd = Command::new("sh");
                cmd.arg("-c")
                    .arg(format!("{line} \"$@\""))
                    .arg("ssh")
                    .args(args);
                cmd
            }
        }
    }
}

/// The arguments after `ssh` that tunnel standard input and output to `relay`.
pub fn ssh_args(target: &Target, relay: &RelayAddress, options: &[String]) -> Vec<String> {
    let mut args = Vec::new();
    for option in options {
        args.push("-o".to_string());
        args.push(option.clone());
    }
    if let Target::Ssh { user, host, port } = target {
        if let Some(port) = port {
            args.push("-p".to_string());
            args.push(port.to_string());
        }
        if let Some(user) = user {
            args.push("-l".to_string());
            args.push(user.clone());
        }
        args.push("-W".to_string());
        args.push(relay.to_string());
        args.push("--".to_string());
        args.push(host.clone());
    }
    args
}

impl Dialer {
    /// Opens one tunnel.
    pub async fn dial(&self) -> Result<Tunnel, String> {
        match self {
            Dialer::Tcp { host, port } => {
                let tcp = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| format!("connecting to {}: {e}", join_host_port(host, *port)))?;
                let _ = tcp.set_nodelay(true);
                let (reader, writer) = tcp.into_split();
                Ok(Tunnel {
                    reader: Box::new(reader),
                    writer: Box::new(writer),
                    process: None,
                })
            }
            Dialer::Ssh { program, args } => {
                let mut child = program
                    .command(args)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| match program {
                        SshProgram::Ssh => format!("cannot run ssh: {e}"),
                        SshProgram::Shell(line) => format!("cannot run {line:?}: {e}"),
                    })?;
                let (Some(stdin), Some(stdout), Some(stderr)) =
                    (child.stdin.take(), child.stdout.take(), child.stderr.take())
                else {
                    return Err("ssh started without its pipes".to_string());
                };
                let process = TunnelProcess::new(child, stderr);
                Ok(Tunnel {
                    reader: Box::new(stdout),
                    writer: Box::new(stdin),
                    process: Some(process),
                })
            }
        }
    }
}

pub fn join_host_port(host: &str, port: u16) -> String {
    RelayAddress {
        host: host.to_string(),
        port,
    }
    .to_string()
}

/// A process that carries a tunnel, with the tail of its standard error.
pub struct TunnelProcess {
    child: Child,
    stderr: Arc<Mutex<String>>,
    stderr_task: JoinHandle<()>,
}

impl TunnelProcess {
    pub fn new(child: Child, mut stderr: impl AsyncRead + Unpin + Send + 'static) -> Self {
        let kept = Arc::new(Mutex::new(String::new()));
        let sink = kept.clone();
        let stderr_task = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if let Ok(mut kept) = sink.lock() {
                    kept.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if kept.len() > STDERR_KEPT_BYTES {
                        let cut = kept.len() - STDERR_KEPT_BYTES;
                        let cut = (cut..kept.len())
                            .find(|i| kept.is_char_boundary(*i))
                            .unwrap_or(kept.len());
                        kept.drain(..cut);
                    }
                }
            }
        });
        Self {
            child,
            stderr: kept,
            stderr_task,
        }
    }

    /// Why the process ended: its exit status and what it said on standard error.
    /// Kills it if it does not exit on its own.
    pub async fn failure(&mut self, program: &str) -> String {
        let status = match tokio::time::timeout(EXIT_WAIT, self.child.wait()).await {
            Ok(Ok(status)) => format!("{program} exited with {status}"),
            Ok(Err(e)) => format!("{program} could not be waited for: {e}"),
            Err(_) => {
                let _ = self.child.kill().await;
                format!("{program} stopped answering")
            }
        };
        let _ = tokio::time::timeout(EXIT_WAIT, &mut self.stderr_task).await;
        let said = self.stderr_text();
        if said.is_empty() {
            status
        } else {
            format!("{status}: {said}")
        }
    }

    /// The last lines of the kept standard error (where ssh and kubectl say what went
    /// wrong), on one line.
    pub fn stderr_text(&self) -> String {
        let text = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        lines[lines.len().saturating_sub(STDERR_LINES_SHOWN)..].join("; ")
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
        self.stderr_task.abort();
    }
}

/// Both directions of one tunnelled connection.
pub struct Tunnel {
    reader: Box<dyn AsyncRead + Unpin + Send>,
    writer: Box<dyn AsyncWrite + Unpin + Send>,
    process: Option<TunnelProcess>,
}

impl Tunnel {
    /// Checks that the far end answers: sends the HTTP/2 preface and waits for the first
    /// byte back. Returns why not otherwise.
    pub async fn check(mut self) -> Result<(), String> {
        let answered = async {
            self.writer
                .write_all(HTTP2_PREFACE)
                .await
                .map_err(|e| format!("sending: {e}"))?;
            self.writer
                .flush()
                .await
                .map_err(|e| format!("sending: {e}"))?;
            let mut byte = [0u8; 1];
            match self.reader.read(&mut byte).await {
                Ok(0) => Err("closed without an answer".to_string()),
                Ok(_) => Ok(()),
                Err(e) => Err(format!("receiving: {e}")),
            }
        };
        let result = match tokio::time::timeout(TUNNEL_CHECK_TIMEOUT, answered).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "no answer from the relay within {}s",
                TUNNEL_CHECK_TIMEOUT.as_secs()
            )),
        };
        match (result, self.process.take()) {
            (Ok(()), Some(process)) => {
                process.stop().await;
                Ok(())
            }
            (Ok(()), None) => Ok(()),
            (Err(reason), Some(mut process)) => {
                drop(self.writer);
                let said = process.failure("ssh").await;
                Err(format!("{said} ({reason})"))
            }
            (Err(reason), None) => Err(reason),
        }
    }

    /// Copies bytes both ways between `client` and the tunnel until both sides are done
    /// (the answer direction gets [`LINGER`] once the client has finished sending), then
    /// ends the tunnel's process.
    pub async fn pump(self, client: TcpStream) -> Pumped {
        let Tunnel {
            mut reader,
            mut writer,
            process,
        } = self;
        let (mut client_reader, mut client_writer) = client.into_split();
        let client_done = tokio::sync::Notify::new();
        let up = async {
            let n = tokio::io::copy(&mut client_reader, &mut writer)
                .await
                .unwrap_or(0);
            // Dropping closes a pipe (shutdown alone does not), so ssh sees the end.
            let _ = writer.shutdown().await;
            drop(writer);
            client_done.notify_one();
            n
        };
        let down = async {
            let linger = async {
                client_done.notified().await;
                tokio::time::sleep(LINGER).await;
            };
            let n = tokio::select! {
                n = tokio::io::copy(&mut reader, &mut client_writer) => n.unwrap_or(0),
                _ = linger => 0,
            };
            let _ = client_writer.shutdown().await;
            n
        };
        let (sent, received) = tokio::join!(up, down);
        let failure = match process {
            // Nothing came back: say what the process said about it.
            Some(mut process) if received == 0 => {
                let said = process.failure("ssh").await;
                process.stop().await;
                Some(said)
            }
            Some(process) => {
                process.stop().await;
                None
            }
            None => None,
        };
        Pumped {
            sent,
            received,
            failure,
        }
    }
}

/// What one tunnelled connection carried.
#[derive(Debug)]
pub struct Pumped {
    pub sent: u64,
    pub received: u64,
    /// Why the tunnel's process ended, when nothing came back through it.
    pub failure: Option<String>,
}
