//! `hubble-ui` against an in-process scripted Observer server: the map, filtered flows,
//! bad filters, live updates, slow browsers and a server restart.

mod support;

use std::time::{Duration, Instant};

use proto::flow::Verdict;
use serde_json::Value;
use support::flows::{self, DEATHSTAR_1, TIEFIGHTER, XWING};
use support::http::{get, get_json, EventReader};
use support::server::{Feed, ScriptedServer};
use support::{eventually, RunningUi};

const WAIT: Duration = Duration::from_secs(15);

fn edge<'a>(map: &'a Value, source: &str, destination: &str) -> Option<&'a Value> {
    map["edges"]
        .as_array()?
        .iter()
        .find(|e| e["source"] == source && e["destination"] == destination && e["port"] == 80)
}

async fn start() -> (std::sync::Arc<Feed>, ScriptedServer, RunningUi) {
    let feed = Feed::new();
    let server = ScriptedServer::start(feed.clone(), "127.0.0.1:0".parse().expect("addr")).await;
    let ui = RunningUi::start(server.addr).await;
    (feed, server, ui)
}

#[tokio::test]
async fn map_edges_turn_dropped_and_flows_filter_on_the_server() {
    let (feed, server, ui) = start().await;
    for flow in flows::before_policy() {
        feed.push(flow);
    }
    let map = eventually("xwing -> deathstar on the map", WAIT, || async {
        let map = get_json(ui.addr, "/api/map").await;
        edge(&map, "default/xwing", "default/deathstar")
            .is_some()
            .then_some(map)
    })
    .await;
    let names: Vec<&str> = map["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    for name in ["deathstar", "tiefighter", "xwing", "coredns"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let tie = edge(&map, "default/tiefighter", "default/deathstar").expect("tiefighter edge");
    assert_eq!(tie["verdicts"]["FORWARDED"], 3, "{tie}");
    let xwing = edge(&map, "default/xwing", "default/deathstar").expect("xwing edge");
    assert_eq!(xwing["verdicts"]["FORWARDED"], 2, "{xwing}");
    assert_eq!(xwing["last_verdict"], "FORWARDED");

    // The policy step: xwing's SYNs are now denied.
    for flow in flows::after_policy() {
        feed.push(flow);
    }
    let map = eventually("xwing edge dropped", WAIT, || async {
        let map = get_json(ui.addr, "/api/map").await;
        let e = edge(&map, "default/xwing", "default/deathstar")?;
        (e["verdicts"]["DROPPED"] == 3).then_some(map)
    })
    .await;
    let xwing = edge(&map, "default/xwing", "default/deathstar").expect("xwing edge");
    assert_eq!(xwing["last_verdict"], "DROPPED", "{xwing}");
    assert_eq!(xwing["verdicts"]["FORWARDED"], 2, "{xwing}");
    let tie = edge(&map, "default/tiefighter", "default/deathstar").expect("tiefighter edge");
    assert_eq!(tie["verdicts"]["FORWARDED"], 4, "{tie}");
    assert!(tie["verdicts"].get("DROPPED").is_none(), "{tie}");

    let all = get_json(ui.addr, "/api/flows").await;
    assert_eq!(all["flows"].as_array().expect("flows").len(), 11);
    let dropped = get_json(ui.addr, "/api/flows?verdict=DROPPED").await;
    let dropped = dropped["flows"].as_array().expect("flows");
    assert_eq!(dropped.len(), 3);
    for f in dropped {
        assert_eq!(f["verdict"], "DROPPED");
        assert_eq!(f["source"]["pod_name"], "xwing");
        assert_eq!(f["drop_reason_desc"], "POLICY_DENIED");
        assert_eq!(f["l4"]["TCP"]["destination_port"], 80);
    }
    let narrowed =
        get_json(ui.addr, "/api/flows?from_pod=default/tiefighter&to_pod=default/deathstar&port=80&protocol=tcp&limit=2").await;
    let narrowed = narrowed["flows"].as_array().expect("flows");
    assert_eq!(narrowed.len(), 2, "limit applies");
    assert!(narrowed
        .iter()
        .all(|f| f["source"]["pod_name"] == "tiefighter"));
    let http = get_json(ui.addr, "/api/flows?http_method=POST&http_path=^/v1/").await;
    assert_eq!(http["flows"].as_array().expect("flows").len(), 1, "{http}");
    let dns = get_json(
        ui.addr,
        "/api/flows?namespace=kube-system&label=k8s-app=kube-dns",
    )
    .await;
    assert_eq!(dns["flows"].as_array().expect("flows").len(), 2, "{dns}");

    let status = get_json(ui.addr, "/api/status").await;
    assert_eq!(status["connected"], true, "{status}");
    assert_eq!(status["flows_received"], 11, "{status}");
    let status = eventually("server status polled", WAIT, || async {
        let status = get_json(ui.addr, "/api/status").await;
        (status["server_version"] == "scripted").then_some(status)
    })
    .await;
    assert_eq!(status["connected_nodes"], 1, "{status}");
    assert_eq!(
        status["nodes"][support::server::NODE_NAME],
        "NODE_CONNECTED"
    );

    ui.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_service_is_drawn_between_its_clients_and_backends() {
    let (feed, server, ui) = start().await;
    let service_flows = flows::via_service();
    let total = service_flows.len();
    for flow in service_flows {
        feed.push(flow);
    }
    let map = eventually("all service flows on the map", WAIT, || async {
        let status = get_json(ui.addr, "/api/status").await;
        (status["flows_received"] == total).then_some(())?;
        Some(get_json(ui.addr, "/api/map").await)
    })
    .await;
    let service = map["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["kind"] == "service")
        .expect("a service node");
    assert_eq!(service["id"], "service:default/deathstar", "{service}");
    assert_eq!(service["name"], "deathstar", "{service}");
    assert_eq!(service["namespace"], "default", "{service}");
    assert_eq!(service["filter_kind"], "service", "{service}");
    assert_eq!(service["filter_value"], "default/deathstar", "{service}");
    let svc = "service:default/deathstar";
    let tie = edge(&map, "default/tiefighter", svc).expect("tiefighter -> service");
    assert_eq!(
        tie["verdicts"],
        serde_json::json!({"FORWARDED": 1, "TRACED": 1, "TRANSLATED": 1}),
        "{tie}"
    );
    let xwing = edge(&map, "default/xwing", svc).expect("xwing -> service");
    assert_eq!(
        xwing["verdicts"],
        serde_json::json!({"DROPPED": 1, "TRACED": 1, "TRANSLATED": 1}),
        "{xwing}"
    );
    let backends = edge(&map, svc, "default/deathstar").expect("service -> deathstar");
    assert_eq!(
        backends["verdicts"],
        serde_json::json!({"DROPPED": 1, "FORWARDED": 1, "TRANSLATED": 2}),
        "{backends}"
    );
    assert!(
        edge(&map, "default/xwing", "default/deathstar").is_none(),
        "{map}"
    );
    assert!(
        !map["nodes"].to_string().contains("reserved:world"),
        "the service address is the service, not world: {map}"
    );
    // Clicking the service box filters on it; the page sends `to_service`.
    let to_service = get_json(ui.addr, "/api/flows?to_service=default/deathstar").await;
    assert_eq!(to_service["flows"].as_array().expect("flows").len(), total);
    let xwing_only = get_json(
        ui.addr,
        "/api/flows?from_pod=default/xwing&to_service=default/deathstar",
    )
    .await;
    assert_eq!(xwing_only["flows"].as_array().expect("flows").len(), 3);
    ui.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn multicast_noise_stays_off_the_map_and_denials_show_both_events() {
    let (feed, server, ui) = start().await;
    for flow in flows::before_policy_as_observed()
        .into_iter()
        .chain(flows::after_policy_as_observed())
    {
        feed.push(flow);
    }
    let total = flows::before_policy_as_observed().len() + flows::after_policy_as_observed().len();
    let map = eventually("all flows stored", WAIT, || async {
        let status = get_json(ui.addr, "/api/status").await;
        (status["flows_received"] == total).then_some(())?;
        Some(get_json(ui.addr, "/api/map").await)
    })
    .await;
    let mut ids: Vec<&str> = map["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        [
            "default/deathstar",
            "default/tiefighter",
            "default/xwing",
            "kube-system/coredns",
            "reserved:world"
        ],
        "{map}"
    );
    let tie = edge(&map, "default/tiefighter", "default/deathstar").expect("tiefighter edge");
    assert_eq!(tie["verdicts"]["FORWARDED"], 4, "{tie}");
    let denied = get_json(ui.addr, "/api/flows?verdict=DROPPED").await;
    let types: Vec<i64> = denied["flows"]
        .as_array()
        .expect("flows")
        .iter()
        .filter_map(|f| f["event_type"]["type"].as_i64())
        .collect();
    assert_eq!(
        types,
        [5, 1, 5, 1, 5, 1],
        "policy verdict, then drop: {denied}"
    );
    ui.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn bad_filters_are_rejected_naming_the_value() {
    let (_feed, server, ui) = start().await;
    for (path, named) in [
        ("/api/flows?verdict=BOGUS", "BOGUS"),
        ("/api/flows?port=eighty", "eighty"),
        ("/api/flows?ip=10.0.0.999", "10.0.0.999"),
        ("/api/flows?protocol=pigeon", "pigeon"),
        ("/api/flows?limit=-1", "-1"),
        ("/api/flows?colour=red", "colour"),
        ("/api/events?http_path=(%5B", "(["),
    ] {
        let (status, body) = get(ui.addr, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let body: Value = serde_json::from_str(&body).expect("JSON error");
        let message = body["error"].as_str().expect("error message");
        assert!(message.contains(named), "{path}: {message}");
    }
    ui.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn events_deliver_updates_with_the_subscriber_filter() {
    let (feed, server, ui) = start().await;
    feed.push(flows::tcp_syn(
        TIEFIGHTER,
        DEATHSTAR_1,
        80,
        Verdict::Forwarded,
    ));
    eventually("first flow stored", WAIT, || async {
        let status = get_json(ui.addr, "/api/status").await;
        (status["flows_received"] == 1).then_some(())
    })
    .await;

    let mut all = EventReader::connect(ui.addr, "/api/events").await;
    let mut drops = EventReader::connect(ui.addr, "/api/events?verdict=DROPPED").await;
    let first = all.next(WAIT).await.expect("initial update");
    assert_eq!(first["reset"], true);
    assert_eq!(first["flows"].as_array().expect("flows").len(), 1);
    assert!(first["map"]["edges"]
        .as_array()
        .is_some_and(|e| e.len() == 1));
    assert!(first["status"]["connected"].is_boolean());
    assert_eq!(first["flows_received"], 1);
    let first = drops.next(WAIT).await.expect("initial update");
    assert_eq!(first["flows"].as_array().expect("flows").len(), 0);

    feed.push(flows::tcp_syn(XWING, DEATHSTAR_1, 80, Verdict::Dropped));
    feed.push(flows::tcp_syn(
        TIEFIGHTER,
        DEATHSTAR_1,
        80,
        Verdict::Forwarded,
    ));
    let mut seen_all = Vec::new();
    while seen_all.len() < 2 {
        let update = all.next(WAIT).await.expect("live update");
        assert_eq!(update["reset"], false);
        seen_all.extend(update["flows"].as_array().expect("flows").iter().cloned());
    }
    assert_eq!(seen_all[0]["verdict"], "DROPPED");
    assert_eq!(seen_all[1]["verdict"], "FORWARDED");
    let mut seen_drops = Vec::new();
    let mut received = 0;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Some(update) = drops.next(Duration::from_millis(500)).await {
            seen_drops.extend(update["flows"].as_array().expect("flows").iter().cloned());
            received = received.max(update["flows_received"].as_u64().expect("flows_received"));
        }
    }
    assert_eq!(seen_drops.len(), 1, "{seen_drops:?}");
    // The count of flows received reaches a filtered page too, matching or not.
    assert_eq!(received, 3);
    assert_eq!(seen_drops[0]["source"]["pod_name"], "xwing");

    ui.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_slow_browser_does_not_hold_back_the_others() {
    let (feed, server, ui) = start().await;
    // A browser that never reads, with a small receive buffer.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut slow = socket.connect(ui.addr).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(
        &mut slow,
        format!("GET /api/events HTTP/1.1\r\nHost: {}\r\n\r\n", ui.addr).as_bytes(),
    )
    .await
    .expect("request");
    let mut fast = EventReader::connect(ui.addr, "/api/events").await;
    fast.next(WAIT).await.expect("initial update");

    // About 6000 flows/s of 2.5 kB each for 1.5 s: some 20 MB of updates, far more
    // than the slow browser's socket buffers hold.
    const TOTAL: usize = 8_000;
    let long_path = format!("/v1/{}", "x".repeat(2000));
    let pusher = {
        let feed = feed.clone();
        tokio::spawn(async move {
            for i in 0..TOTAL {
                let mut flow = flows::http_request(TIEFIGHTER, DEATHSTAR_1, "GET", &long_path, 200);
                flow.uuid = format!("load-{i}");
                feed.push(flow);
                if i % 300 == 299 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        })
    };
    let started = Instant::now();
    let mut received = 0usize;
    let mut last_uuid = String::new();
    let mut fast_skipped = 0;
    while last_uuid != format!("load-{}", TOTAL - 1) {
        let update = fast
            .next(WAIT)
            .await
            .expect("the fast browser keeps getting updates");
        let flows = update["flows"].as_array().expect("flows");
        received += flows.len();
        if let Some(last) = flows.last() {
            last_uuid = last["uuid"].as_str().unwrap_or_default().to_string();
        }
        assert_eq!(
            update["missed_updates"], 0,
            "the fast browser missed nothing"
        );
        fast_skipped = update["skipped_flows"].as_u64().unwrap_or(0) as usize;
    }
    // Every flow reached the fast browser, or was counted as skipped for it.
    assert_eq!(received + fast_skipped, TOTAL);
    pusher.await.expect("pusher");
    println!("fast browser: {TOTAL} flows in {:?}", started.elapsed());
    let status = eventually("the slow browser's misses counted", WAIT, || async {
        let status = get_json(ui.addr, "/api/status").await;
        (status["delivery"]["missed_updates"].as_u64() > Some(0)).then_some(status)
    })
    .await;
    // An update the slow browser missed may have carried status only, so what is
    // checked is that its misses are counted, not how many flows they held.
    assert_eq!(status["delivery"]["subscribers"], 2, "{status}");
    drop(slow);
    ui.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn reconnects_after_the_server_restarts() {
    let (feed, server, ui) = start().await;
    for flow in flows::before_policy() {
        feed.push(flow);
    }
    eventually("flows stored", WAIT, || async {
        let status = get_json(ui.addr, "/api/status").await;
        (status["flows_received"] == 7).then_some(())
    })
    .await;
    let addr = server.addr;
    server.stop().await;
    let status = eventually("disconnected shown", WAIT, || async {
        let status = get_json(ui.addr, "/api/status").await;
        (status["connected"] == false).then_some(status)
    })
    .await;
    assert!(status["last_error"].is_string(), "{status}");
    // Still serves what it has while the server is away.
    let kept = get_json(ui.addr, "/api/flows").await;
    assert_eq!(kept["flows"].as_array().expect("flows").len(), 7);

    let server = ScriptedServer::start(feed.clone(), addr).await;
    for flow in flows::after_policy() {
        feed.push(flow);
    }
    let status = eventually("reconnected with the new flows", WAIT, || async {
        let status = get_json(ui.addr, "/api/status").await;
        (status["connected"] == true && status["flows_received"] == 11).then_some(status)
    })
    .await;
    assert_eq!(status["connections"], 2, "{status}");
    // The restarted server's backlog was not stored twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = get_json(ui.addr, "/api/flows").await;
    assert_eq!(all["flows"].as_array().expect("flows").len(), 11);
    let map = get_json(ui.addr, "/api/map").await;
    let xwing = edge(&map, "default/xwing", "default/deathstar").expect("xwing edge");
    assert_eq!(xwing["last_verdict"], "DROPPED", "{xwing}");
    ui.stop().await;
    server.stop().await;
}
