//! From a laptop: a network namespace that reaches the lab only through ssh to one
//! address (Debian's `openssh-server`, started here with keys generated here) runs
//! `hubble -P status` and `hubble observe -P` and sees every node of a two-node lab
//! whose relay listens on loopback. Needs root and openssh; prints a SKIP line otherwise
//! (fails under CI=true).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tests::{bin, eventually, require_root, run_ok, run_with_timeout, skip::require_file, Lab};

const T: Duration = Duration::from_secs(60);
/// The lab's nodes and the laptop's link: /24s no other test uses.
const NODE_SUBNET: &str = "10.117.0.0/24";
const SSH_ADDRESS: &str = "10.118.0.1";
const LAPTOP_ADDRESS: &str = "10.118.0.2";

/// The laptop: a network namespace joined to the root namespace by one veth pair;
/// removed on drop, even when the test fails.
struct Laptop {
    netns: String,
    host_link: String,
}

impl Laptop {
    fn create(tag: &str) -> Result<Self> {
        let laptop = Laptop {
            netns: format!("{tag}lap"),
            host_link: format!("{tag}h"),
        };
        let peer = format!("{tag}l");
        let ip = |args: &[&str]| run_ok(Command::new("ip").args(args), T);
        ip(&["netns", "add", &laptop.netns])?;
        ip(&[
            "link",
            "add",
            &laptop.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "netns",
            &laptop.netns,
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("{SSH_ADDRESS}/24"),
            "dev",
            &laptop.host_link,
        ])?;
        ip(&["link", "set", &laptop.host_link, "up"])?;
        let ns = &laptop.netns;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{LAPTOP_ADDRESS}/24"),
            "dev",
            &peer,
        ])?;
        ip(&["-n", ns, "link", "set", &peer, "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        Ok(laptop)
    }

    /// `hubble` inside the laptop.
    fn hubble(&self, env: &[(&str, String)], args: &[&str]) -> Result<Command> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns])
            .arg(bin("hubble")?)
            .args(args)
            .env("HOME", std::env::temp_dir())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("HUBBLE_SERVER");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Ok(cmd)
    }
}

impl Drop for Laptop {
    fn drop(&mut self) {
        let _ = run_with_timeout(Command::new("ip").args(["link", "del", &self.host_link]), T);
        let _ = run_with_timeout(Command::new("ip").args(["netns", "del", &self.netns]), T);
    }
}

/// An sshd of the test's own: its config, keys and pid file in `dir`, listening only on
/// the laptop link; stopped by its PID on drop.
struct Sshd {
    dir: PathBuf,
    port: u16,
    child: Child,
    made_privsep_dir: bool,
}

impl Sshd {
    fn start(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let keygen = |file: &str| {
            let path = dir.join(file);
            run_ok(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-C", "hubble-test", "-f"])
                    .arg(&path),
                T,
            )
            .map(|_| path)
        };
        let host_key = keygen("host_ed25519")?;
        let client_key = keygen("client_ed25519")?;
        std::fs::copy(
            client_key.with_extension("pub"),
            dir.join("authorized_keys"),
        )?;
        // A free port on the link address.
        let port = std::net::TcpListener::bind((SSH_ADDRESS, 0))?
            .local_addr()?
            .port();
        let host_pub = std::fs::read_to_string(host_key.with_extension("pub"))?;
        std::fs::write(
            dir.join("known_hosts"),
            format!("[{SSH_ADDRESS}]:{port} {host_pub}"),
        )?;
        let config = format!(
            "ListenAddress {SSH_ADDRESS}:{port}\n\
             HostKey {host}\n\
             PidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\n\
             StrictModes no\n\
             UsePAM no\n\
             PermitRootLogin prohibit-password\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             AllowTcpForwarding yes\n\
             LogLevel VERBOSE\n",
            host = host_key.display(),
            dir = dir.display(),
        );
        std::fs::write(dir.join("sshd_config"), config)?;
        // Debian's sshd needs its privilege separation directory, which its service
        // unit normally creates.
        let privsep = Path::new("/run/sshd");
        let made_privsep_dir = !privsep.exists();
        if made_privsep_dir {
            std::fs::create_dir_all(privsep)?;
        }
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-f")
            .arg(dir.join("sshd_config"))
            .arg("-E")
            .arg(dir.join("sshd.log"))
            .stdin(Stdio::null())
            .spawn()
            .context("starting /usr/sbin/sshd")?;
        let mut sshd = Sshd {
            dir: dir.to_path_buf(),
            port,
            child,
            made_privsep_dir,
        };
        let addr: std::net::SocketAddr = format!("{SSH_ADDRESS}:{port}").parse()?;
        let ready = eventually(Duration::from_secs(20), || {
            if let Some(status) = sshd.child.try_wait()? {
                bail!("sshd exited with {status}: {}", sshd.log());
            }
            Ok(
                std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                    .is_ok()
                    .then_some(()),
            )
        });
        if let Err(e) = ready {
            bail!("sshd did not start: {e:#}; log: {}", sshd.log());
        }
        Ok(sshd)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    fn target(&self) -> String {
        format!("ssh://root@{SSH_ADDRESS}:{}", self.port)
    }

    /// The ssh command line: only this test's key and known_hosts (OpenSSH reads
    /// `~/.ssh` of the passwd home, so everything is given explicitly).
    fn ssh_command(&self) -> String {
        format!(
            "ssh -F /dev/null -i {dir}/client_ed25519 -o IdentitiesOnly=yes \
             -o UserKnownHostsFile={dir}/known_hosts -o GlobalKnownHostsFile=/dev/null \
             -o StrictHostKeyChecking=yes -o BatchMode=yes",
            dir = self.dir.display()
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.made_privsep_dir {
            let _ = std::fs::remove_dir(Path::new("/run/sshd"));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn node_names(out: &str) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for line in out.lines() {
        let v: Value = serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?;
        if let Some(name) = v["flow"]["node_name"].as_str() {
            names.insert(name.to_string());
        }
    }
    Ok(names)
}

#[test]
fn a_laptop_reaches_the_relay_over_ssh() -> Result<()> {
    let test = "a_laptop_reaches_the_relay_over_ssh";
    if !require_root(test)
        || !require_file(test, "/usr/sbin/sshd", "openssh-server")
        || !require_file(test, "/usr/bin/ssh", "openssh-client")
    {
        return Ok(());
    }
    let tag = format!("pf{}", std::process::id() % 10000);
    let lab = Lab::reserve("pf", NODE_SUBNET)?;
    run_ok(
        lab.cmd().args([
            "up",
            "--nodes",
            "2",
            "--node-subnet",
            NODE_SUBNET,
            "--relay-address",
            &lab.relay,
        ]),
        Duration::from_secs(120),
    )?;
    let laptop = Laptop::create(&tag)?;
    let sshd = Sshd::start(&lab.run_dir.join("sshd"))?;

    // From the root namespace the relay sees both nodes; give it flows of both.
    let root_hubble = |args: &[&str]| {
        let mut cmd = Command::new(bin("hubble")?);
        cmd.args(args).args(["--server", &lab.relay]);
        run_ok(&mut cmd, T)
    };
    eventually(T, || {
        Ok(root_hubble(&["status"])?
            .contains("Connected Nodes: 2/2")
            .then_some(()))
    })?;
    eventually(T, || {
        run_ok(lab.cmd().arg("traffic"), T)?;
        let names = node_names(&root_hubble(&["observe", "-o", "json", "--last", "5"])?)?;
        Ok((names.len() == 2).then_some(()))
    })?;

    // The laptop has no route to the relay.
    let out = run_with_timeout(
        &mut laptop.hubble(&[], &["status", "--server", &lab.relay, "--timeout", "3s"])?,
        T,
    )?;
    assert!(
        !out.status.success(),
        "the laptop must not reach {} directly: {}",
        lab.relay,
        String::from_utf8_lossy(&out.stdout)
    );

    // Through ssh with -P: the target and ssh options from the environment.
    let env = [
        ("HUBBLE_PORT_FORWARD_TARGET", sshd.target()),
        ("HUBBLE_PORT_FORWARD_RELAY_ADDRESS", lab.relay.clone()),
        ("HUBBLE_SSH_COMMAND", sshd.ssh_command()),
    ];
    let status = run_ok(&mut laptop.hubble(&env, &["-P", "status"])?, T)
        .with_context(|| format!("sshd log: {}", sshd.log()))?;
    println!("{status}");
    assert!(status.contains("Connected Nodes: 2/2"), "{status}");
    let out = run_ok(
        &mut laptop.hubble(&env, &["observe", "-P", "--last", "5", "-o", "json"])?,
        T,
    )?;
    let names = node_names(&out)?;
    assert_eq!(names.len(), 2, "flows of every node: {names:?}\n{out}");
    let text = run_ok(
        &mut laptop.hubble(&env, &["observe", "-P", "--last", "5", "--print-node-name"])?,
        T,
    )?;
    for name in &names {
        assert!(text.contains(name.as_str()), "{name} in:\n{text}");
    }

    // `hubble port-forward` with the options as flags, used by a plain `--server`.
    let mut forward = laptop.hubble(
        &[],
        &[
            "port-forward",
            &sshd.target(),
            "--local-port",
            "0",
            "--relay-address",
            &lab.relay,
            "--ssh-option",
            "BatchMode=yes",
        ],
    )?;
    let key = format!("IdentityFile={}/client_ed25519", sshd.dir.display());
    let known = format!("UserKnownHostsFile={}/known_hosts", sshd.dir.display());
    forward.args(["--ssh-option", &key, "--ssh-option", &known]);
    forward.args(["--ssh-option", "StrictHostKeyChecking=yes"]);
    let mut child = forward
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        BufReader::new(stdout).read_line(&mut line)?;
    }
    let local = line
        .trim()
        .strip_prefix("ℹ️  Hubble Relay is available at ")
        .map(str::to_string);
    let status = match &local {
        Some(local) => run_ok(&mut laptop.hubble(&[], &["status", "--server", local])?, T),
        None => Err(anyhow::anyhow!("unexpected first line {line:?}")),
    };
    let _ = child.kill();
    let _ = child.wait();
    let status = status?;
    assert!(status.contains("Connected Nodes: 2/2"), "{status}");

    drop(sshd);
    drop(laptop);
    drop(lab);
    Ok(())
}
