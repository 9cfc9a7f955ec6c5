//! `artifact rollout start|status|pause|resume|abort|promote [--wait]`
//! (SPEC 10.1): one API call each; `--wait` follows the rollout to its end
//! with a progress line on stderr, exit 0 when completed, 4 when aborted.

use std::io::IsTerminal;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::args::{RolloutAction, RolloutCommand, parse_steps};
use crate::client::Api;
use crate::error::{Error, Result};
use crate::output::{Rendered, field};

/// How often `--wait` looks (the deployed driver moves once a minute).
const WAIT_PERIOD: Duration = Duration::from_secs(2);

pub async fn run(api: &Api, quiet: bool, command: &RolloutCommand) -> Result<Rendered> {
    let (rollout, wait) = match command {
        RolloutCommand::Start {
            name,
            alias,
            version,
            steps,
            preset,
            alarms,
            message,
            wait,
        } => {
            let mut body = json!({"version": version, "alarms": alarms});
            match (steps, preset) {
                (Some(steps), _) => body["steps"] = parse_steps(steps).map_err(Error::Usage)?,
                (None, Some(preset)) => body["preset"] = json!(preset),
                (None, None) => return Err(Error::Usage("give --steps or --preset".into())),
            }
            if let Some(m) = message {
                body["message"] = json!(m);
            }
            let answer = api
                .call(
                    Method::POST,
                    &["artifacts", name, "aliases", alias, "rollouts"],
                    &[],
                    Some(&body),
                    &[],
                )
                .await?;
            (answer.body, *wait)
        }
        RolloutCommand::Status {
            name,
            alias,
            id,
            wait,
        } => {
            let id = rollout_id(api, name, alias, id.as_deref()).await?;
            let answer = api
                .get(&["artifacts", name, "aliases", alias, "rollouts", &id], &[])
                .await?;
            (answer.body, *wait)
        }
        RolloutCommand::Pause(a) => (act(api, a, "pause").await?, false),
        RolloutCommand::Resume(a) => (act(api, a, "resume").await?, false),
        RolloutCommand::Abort(a) => (act(api, a, "abort").await?, false),
        RolloutCommand::Promote(a) => (act(api, a, "promote").await?, false),
    };
    let rollout = if wait {
        follow(api, rollout, quiet).await?
    } else {
        rollout
    };
    let text = describe(&rollout);
    Ok(Rendered::new(rollout, text))
}

async fn act(api: &Api, a: &RolloutAction, action: &str) -> Result<Value> {
    let id = rollout_id(api, &a.name, &a.alias, a.id.as_deref()).await?;
    let body = match &a.message {
        Some(m) => json!({"message": m}),
        None => json!({}),
    };
    let answer = api
        .call(
            Method::POST,
            &[
                "artifacts",
                &a.name,
                "aliases",
                &a.alias,
                "rollouts",
                &id,
                action,
            ],
            &[],
            Some(&body),
            &[],
        )
        .await?;
    Ok(answer.body)
}

/// The id given, or the alias's rollout in progress (the newest active or
/// paused one).
async fn rollout_id(api: &Api, name: &str, alias: &str, id: Option<&str>) -> Result<String> {
    if let Some(id) = id {
        return Ok(id.to_owned());
    }
    let page = api
        .get(
            &["artifacts", name, "aliases", alias, "rollouts"],
            &[("limit", "50")],
        )
        .await?;
    page.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| matches!(r["state"].as_str(), Some("active" | "paused")))
        .and_then(|r| r["id"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| Error::Api {
            status: 404,
            code: "RolloutNotFound".into(),
            message: format!("alias {alias} of {name} has no rollout in progress; give its id"),
        })
}

/// Polls until the rollout ends; a line on stderr whenever it moves.
/// Aborted is an error (exit 4) naming the reason.
async fn follow(api: &Api, mut rollout: Value, quiet: bool) -> Result<Value> {
    let show = !quiet;
    let tty = std::io::stderr().is_terminal();
    let mut last = String::new();
    loop {
        let line = describe(&rollout);
        if show && line != last {
            if tty {
                eprint!("\r\x1b[2K{line}");
            } else {
                eprintln!("{line}");
            }
            last = line;
        }
        match rollout["state"].as_str() {
            Some("completed") => break,
            Some("aborted") => {
                if show && tty {
                    eprintln!();
                }
                return Err(Error::Api {
                    status: 409,
                    code: "RolloutAborted".into(),
                    message: format!(
                        "rollout {} aborted: {}",
                        field(&rollout, "id"),
                        field(&rollout, "reason")
                    ),
                });
            }
            _ => {}
        }
        tokio::time::sleep(WAIT_PERIOD).await;
        let (name, alias, id) = (
            field(&rollout, "name"),
            field(&rollout, "alias"),
            field(&rollout, "id"),
        );
        rollout = api
            .get(
                &["artifacts", &name, "aliases", &alias, "rollouts", &id],
                &[],
            )
            .await?
            .body;
    }
    if show && tty {
        eprintln!();
    }
    Ok(rollout)
}

/// `rollout 0193… prod → 2: active, step 2/3 (50%), next step at …`.
fn describe(r: &Value) -> String {
    let steps = r["steps"].as_array().map_or(0, Vec::len);
    let mut line = format!(
        "rollout {} {} → {}: {}, step {}/{steps} ({}%)",
        field(r, "id"),
        field(r, "alias"),
        field(r, "version"),
        field(r, "state"),
        field(r, "step"),
        field(r, "weight"),
    );
    if let Some(at) = r["next_step_at"].as_str() {
        line.push_str(&format!(", next step at {at}"));
    }
    if let Some(reason) = r["reason"].as_str() {
        line.push_str(&format!(", {reason}"));
    }
    line
}

#[cfg(test)]
mod tests {
    #[test]
    fn steps_read_as_weight_and_hold() {
        assert_eq!(
            crate::args::parse_steps("10%:5m, 50%:10m,100%").unwrap(),
            serde_json::json!([
                {"weight": 10, "hold": "5m"},
                {"weight": 50, "hold": "10m"},
                {"weight": 100}
            ])
        );
        assert!(crate::args::parse_steps("ten%:5m").is_err());
    }
}
