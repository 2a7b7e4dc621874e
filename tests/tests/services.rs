//! Services through the kernel datapath: the lab's `deathstar` ClusterIP balanced over
//! both deathstars by the socket load balancer, flows naming the service, `rule1`
//! applied to the backend after translation, and `hubble-agent service` on the admin
//! socket. Needs root; prints a SKIP line otherwise.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use serde_json::Value;
use tests::{bin, eventually, require_root, run_ok, Lab};

fn agent(lab: &Lab, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new(bin("hubble-agent")?);
    cmd.args(args).arg("--admin-socket").arg(lab.admin());
    run_ok(&mut cmd, Duration::from_secs(30))
}

fn pod_names(flows: &[Value], side: &str) -> BTreeSet<String> {
    flows
        .iter()
        .filter_map(|v| v["flow"][side]["pod_name"].as_str())
        .map(String::from)
        .collect()
}

#[test]
fn the_deathstar_service_on_the_kernel_datapath() -> Result<()> {
    if !require_root("the_deathstar_service_on_the_kernel_datapath") {
        return Ok(());
    }
    let lab = Lab::up("sv", "10.121.0.0/24")?;

    // The lab's services, as `cilium service list` prints them.
    let list = agent(&lab, &["service", "list"])?;
    assert!(list.starts_with("ID   Frontend"), "{list}");
    assert!(list.contains("10.96.60.53:80/TCP   ClusterIP"), "{list}");
    assert!(list.contains("10.96.0.10:53/UDP"), "{list}");
    assert_eq!(list.matches(":80/TCP (active)").count(), 2, "{list}");

    // Through the VIP both ships land, and over a few rounds both deathstars answer.
    lab.wait_until_programmed()?;
    let to_service = eventually(Duration::from_secs(40), || {
        lab.traffic()?;
        let flows = lab.observe_json(&["--to-service", "default/deathstar", "--last", "1000"])?;
        let backends = pod_names(&flows, "destination");
        Ok((backends.contains("deathstar-1") && backends.contains("deathstar-2")).then_some(flows))
    })?;
    for v in &to_service {
        let f = &v["flow"];
        assert_eq!(f["destination_service"]["name"], "deathstar", "{f}");
        assert_eq!(f["destination_service"]["namespace"], "default", "{f}");
    }
    // The compact output names the service where no pod is known (the VIP).
    let compact = lab.observe(&["--to-service", "default/deathstar", "--last", "20"])?;
    assert!(compact.contains("default/deathstar:80 "), "{compact}");

    // rule1 applies to the backend after translation: xwing's SYN is denied at a
    // deathstar, tiefighter's is forwarded.
    let rule1 = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies/rule1.yaml");
    agent(&lab, &["policy", "import", &rule1.display().to_string()])?;
    eventually(Duration::from_secs(30), || {
        let out = lab.traffic()?;
        if out.matches("Ship landed").count() != 1 {
            return Ok(None);
        }
        let denied = lab.observe_json(&[
            "--from-pod",
            "default/xwing",
            "--verdict",
            "DROPPED",
            "--to-port",
            "80",
            "--last",
            "20",
        ])?;
        let forwarded = lab.observe_json(&[
            "--from-pod",
            "default/tiefighter",
            "--verdict",
            "FORWARDED",
            "--to-port",
            "80",
            "--type",
            "trace",
            "--last",
            "20",
        ])?;
        let xwing_denied = denied.iter().any(|v| {
            let f = &v["flow"];
            f["drop_reason_desc"] == "POLICY_DENIED"
                && f["destination"]["pod_name"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("deathstar"))
                && f["l4"]["TCP"]["flags"]["SYN"] == true
        });
        let tiefighter_forwarded = forwarded.iter().any(|v| {
            v["flow"]["destination"]["pod_name"]
                .as_str()
                .is_some_and(|p| p.starts_with("deathstar"))
        });
        Ok((xwing_denied && tiefighter_forwarded).then_some(()))
    })?;

    // service update / delete on the admin socket.
    let created = agent(
        &lab,
        &[
            "service",
            "update",
            "--frontend",
            "10.96.7.7:8080",
            "--backends",
            "10.121.9.9:80",
        ],
    )?;
    assert!(
        created.contains("Creating new service with id"),
        "{created}"
    );
    let list = agent(&lab, &["service", "list"])?;
    assert!(
        list.contains("10.96.7.7:8080/TCP") && list.contains("10.121.9.9:80/TCP (active)"),
        "{list}"
    );
    let json: Value = serde_json::from_str(&agent(&lab, &["service", "list", "-o", "json"])?)?;
    let id = json
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|s| s["spec"]["frontend-address"]["ip"] == "10.96.7.7")
                .and_then(|s| s["spec"]["id"].as_u64())
        })
        .expect("the new frontend is listed with its ID");
    let deleted = agent(&lab, &["service", "delete", &id.to_string()])?;
    assert_eq!(deleted, format!("Service {id} deleted successfully\n"));
    assert!(!agent(&lab, &["service", "list"])?.contains("10.96.7.7"));
    Ok(())
}
