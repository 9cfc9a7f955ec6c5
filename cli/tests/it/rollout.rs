//! `artifact rollout` against the local server and its driver: a rollout
//! followed with `--wait` exits 0 when it completes and 4 when an alarm
//! aborts it; status, pause, resume and promote find the rollout in
//! progress without an id.

use crate::support;

use std::time::Duration;

use shared::rollout_driver::Driver;
use support::Local;

async fn release(local: &Local) {
    for (i, content) in [&b"one"[..], b"two"].into_iter().enumerate() {
        let file = local.file(&format!("v{i}"), content);
        local
            .run(&["push", "app", file.to_str().unwrap(), "--publish"])
            .await
            .ok();
    }
    local.run(&["alias", "set", "app", "prod", "1"]).await.ok();
    let driver = Driver::new(local.store.another_repository(), &local.store.sdk);
    tokio::spawn(driver.run(Duration::from_millis(200)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollout_start_wait_exits_0_when_completed_and_4_when_aborted() {
    let local = Local::start().await;
    release(&local).await;
    local.store.alarm("cli-errors", "OK").await;
    let done = local
        .run(&[
            "--json",
            "rollout",
            "start",
            "app",
            "prod",
            "2",
            "--steps",
            "10%:1s,100%",
            "--alarm",
            "cli-errors",
            "-m",
            "release 2",
            "--wait",
        ])
        .await;
    assert_eq!(done.code, 0, "{}", done.stderr);
    assert_eq!(done.json()["state"], "completed");

    // Back to 1, then a rollout the alarm aborts.
    local
        .run(&["alias", "set", "app", "prod", "1", "-m", "again"])
        .await
        .ok();
    let started = local
        .run(&[
            "--json",
            "rollout",
            "start",
            "app",
            "prod",
            "2",
            "--preset",
            "canary-20-1h",
            "--alarm",
            "cli-errors",
        ])
        .await
        .ok()
        .json();
    assert_eq!(started["weight"], 20);
    let status = local
        .run(&["--json", "rollout", "status", "app", "prod"])
        .await
        .ok()
        .json();
    assert_eq!(status["id"], started["id"]);
    for action in ["pause", "resume"] {
        let r = local
            .run(&["--json", "rollout", action, "app", "prod"])
            .await
            .ok()
            .json();
        assert_eq!(
            r["state"],
            if action == "pause" {
                "paused"
            } else {
                "active"
            }
        );
    }
    local.store.alarm("cli-errors", "ALARM").await;
    let aborted = local
        .run(&[
            "rollout",
            "status",
            "app",
            "prod",
            started["id"].as_str().unwrap(),
            "--wait",
        ])
        .await;
    assert_eq!(aborted.code, 4, "{}", aborted.stderr);
    assert!(aborted.stderr.contains("cli-errors"), "{}", aborted.stderr);
    // Nothing in progress: status without an id is a 404 (exit 3).
    assert_eq!(
        local.run(&["rollout", "status", "app", "prod"]).await.code,
        3
    );
    // A bad --steps is a usage error.
    assert_eq!(
        local
            .run(&["rollout", "start", "app", "prod", "2", "--steps", "ten%:5m"])
            .await
            .code,
        2
    );
}
