//! The `artifact` command-line client (SPEC 8): every command over the HTTP
//! API, bytes only through the presigned URLs the API hands out.
//!
//! `main` only calls [`run`]; the modules are public so tests can reach the
//! pieces that are checked on their own (SigV4 signing with a fixed time,
//! part planning, digests, resume sets).

pub mod args;
pub mod client;
pub mod commands;
pub mod doctor;
pub mod error;
pub mod multipart;
pub mod output;
pub mod progress;
pub mod pull;
pub mod push;
pub mod retry;
pub mod rollout;
pub mod sign;
pub mod transfer;

use std::ffi::OsString;
use std::io::Write;
use std::time::Duration;

use clap::{CommandFactory, Parser};

use crate::args::{Cli, Command};
use crate::client::{Api, Settings};
use crate::error::{Error, exit};
use crate::output::Rendered;
use crate::progress::Progress;

/// Parses `args`, runs the command, prints its result or error, and returns
/// the process exit code.
pub async fn run(args: Vec<OsString>) -> i32 {
    let wants_json = args.iter().skip(1).any(|a| a == "--json");
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e, wants_json),
    };
    if let Command::Completions { shell } = cli.command {
        if cli.global.json {
            let message = "completions print a shell script, not JSON: drop --json".to_owned();
            return report(&Error::Usage(message), true);
        }
        let mut command = Cli::command();
        clap_complete::generate(shell, &mut command, "artifact", &mut std::io::stdout());
        return exit::OK;
    }
    match execute(&cli).await {
        Ok((rendered, healthy)) => {
            let mut stdout = std::io::stdout();
            let printed = if cli.global.json {
                writeln!(stdout, "{}", rendered.json)
            } else if rendered.text.is_empty() {
                Ok(())
            } else {
                writeln!(stdout, "{}", rendered.text)
            };
            if printed.is_err() || !healthy {
                return exit::ERROR;
            }
            exit::OK
        }
        Err(e) => report(&e, cli.global.json),
    }
}

/// The command's output, and whether it succeeded (`doctor` prints its
/// report and fails when a check failed).
async fn execute(cli: &Cli) -> Result<(Rendered, bool), Error> {
    let g = &cli.global;
    let Some(api_url) = g.api.clone() else {
        return Err(Error::Usage(
            "no API: pass --api URL or set ARTIFACT_API_URL".into(),
        ));
    };
    let settings = Settings {
        api: api_url.clone(),
        sign: if g.no_sign {
            Some(false)
        } else if g.sign {
            Some(true)
        } else {
            None
        },
        region: g.region.clone(),
        retries: g.retries,
        read_timeout: Duration::from_secs(g.read_timeout),
        caller: g.caller.clone(),
    };
    let api = Api::new(&settings).await?;
    let progress = Progress::new(g.quiet);
    let rendered = match &cli.command {
        Command::Push(p) => push::push(&api, &api_url, progress, p).await,
        Command::Pull(p) => pull::pull(&api, progress, g.json, p).await,
        Command::Doctor { name, keep } => {
            let name = name
                .clone()
                .unwrap_or_else(|| format!("doctor-{:016x}", fastrand::u64(..)));
            return doctor::doctor(&api, &name, *keep).await;
        }
        Command::Rollout(r) => rollout::run(&api, g.quiet, r).await,
        other => commands::run(&api, other, progress).await,
    }?;
    Ok((rendered, true))
}

/// `error: <code>: <message>` on stderr; with `--json` also the error
/// document on stdout.
fn report(e: &Error, json: bool) -> i32 {
    eprintln!("error: {e}");
    if json {
        println!("{}", e.to_json());
    }
    e.exit_code()
}

/// clap's verdict: help and version print and succeed; anything else is a
/// usage error (exit 2) reported like every other error, on one line.
fn usage_error(e: clap::Error, json: bool) -> i32 {
    use clap::error::ErrorKind;
    // With `--json`, stdout holds one JSON document, help and version too.
    let shown = match e.kind() {
        ErrorKind::DisplayHelp => Some("help"),
        ErrorKind::DisplayVersion => Some("version"),
        _ => None,
    };
    if let Some(shown) = shown {
        if json {
            let text = e.render().to_string();
            println!("{}", serde_json::json!({ shown: text.trim_end() }));
        } else {
            let _ = e.print();
        }
        return exit::OK;
    }
    // clap's first paragraph ("error: …" and its indented details), on one line.
    let rendered = e.render().to_string();
    let first: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect();
    let first = first.join(" ");
    let first = first.strip_prefix("error: ").unwrap_or(&first);
    let message = format!("{first} (see artifact --help)");
    report(&Error::Usage(message), json)
}
