//! The command line (clap derive) and the small parsers of its values.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  error (API, network, local file)
  2  usage (bad arguments; `purge` without --yes)
  3  not found (404)
  4  conflict or precondition failed (409, 412)
  5  integrity failure (SHA-256 mismatch)

Environment:
  ARTIFACT_API_URL     the API's base URL (instead of --api)
  ARTIFACT_STATE_DIR   where resumable multipart uploads are remembered
                       (default: $XDG_CACHE_HOME/artifact or ~/.cache/artifact)
  AWS_*                credentials and region for SigV4 (env, profile, SSO, web identity)
  CI                   when set, no progress bars";

/// Push, pull, publish and promote versioned artifacts through the
/// versioned-artifacts HTTP API.
#[derive(Debug, Parser)]
#[command(name = "artifact", version, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// The API's base URL, e.g. https://abc123.execute-api.us-east-1.amazonaws.com
    #[arg(long, env = "ARTIFACT_API_URL", global = true)]
    pub api: Option<String>,
    /// Never sign requests (automatic for localhost and loopback addresses).
    #[arg(long, global = true, conflicts_with = "sign")]
    pub no_sign: bool,
    /// Sign requests with SigV4 even to a loopback address.
    #[arg(long, global = true)]
    pub sign: bool,
    /// AWS region for signing (default: from an execute-api host, else the AWS config).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Print exactly one JSON document on stdout (errors too).
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Retries of a request after a connection error, 429 or 5xx.
    #[arg(long, global = true, default_value_t = 5)]
    pub retries: u32,
    /// Seconds an API call or a download may wait for a byte before the
    /// connection counts as broken (and the request is retried).
    #[arg(long, env = "ARTIFACT_READ_TIMEOUT", global = true, default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub read_timeout: u64,
    /// Act as this principal ARN on the local server (its x-artifact-caller
    /// header); a deployed API ignores it and uses your SigV4 identity.
    #[arg(long, env = "ARTIFACT_CALLER", global = true)]
    pub caller: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upload FILE as the new LATEST of NAME (optionally publish it and move an alias).
    Push(Push),
    /// Publish LATEST as the next immutable version.
    Publish {
        name: String,
        /// Publish even when LATEST equals the newest version.
        #[arg(long)]
        force: bool,
    },
    /// Download NAME, NAME@VERSION or NAME:ALIAS, verifying its SHA-256.
    Pull(Pull),
    /// List artifact names, or the versions of NAME.
    Ls { name: Option<String> },
    /// List the versions of NAME (LATEST first).
    Versions { name: String },
    /// Show one version (NAME or NAME@VERSION) with its download URL.
    Show { reference: String },
    /// Aliases: set, get, ls, rm.
    #[command(subcommand)]
    Alias(AliasCommand),
    /// Undo an alias's last change, or go back to a revision.
    Rollback {
        name: String,
        alias: String,
        #[arg(long)]
        to_revision: Option<u64>,
        /// Only if the alias is at this revision.
        #[arg(long)]
        if_revision: Option<u64>,
        #[arg(long, short)]
        message: Option<String>,
    },
    /// An alias's changes, newest first.
    History { name: String, alias: String },
    /// Progressive rollouts: start, status, pause, resume, abort, promote.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Pick a version by the alias's weights (sticky per --key).
    Resolve {
        name: String,
        alias: String,
        #[arg(long)]
        key: Option<String>,
    },
    /// Soft-delete a version.
    Rm { name: String, version: String },
    /// Permission targets (who may do what to which names): show them,
    /// replace them from a JSON file, or list their changes.
    #[command(subcommand)]
    Access(AccessCommand),
    /// Versions across artifacts by content (--sha256 FILE or DIGEST), by
    /// metadata (--meta k=v, repeatable, ANDed), or by a query (--query
    /// "meta.team='ml' AND (name='fraud' OR meta.tier IN ('a','b'))").
    Search {
        /// A file (hashed here) or a SHA-256 in hexadecimal.
        #[arg(long, conflicts_with_all = ["meta", "query"])]
        sha256: Option<String>,
        #[arg(long = "meta", value_parser = parse_key_value, conflicts_with = "query")]
        meta: Vec<(String, String)>,
        /// Terms name='…', sha256='…', meta.KEY='…', FIELD IN ('…',…),
        /// combined with AND, OR and parentheses.
        #[arg(long)]
        query: Option<String>,
    },
    /// Mark NAME@VERSION deprecated (it still resolves, with a warning).
    Deprecate {
        reference: String,
        #[arg(long, short)]
        message: Option<String>,
    },
    /// Mark NAME@VERSION archived (no new alias may point at it).
    Archive {
        reference: String,
        #[arg(long, short)]
        message: Option<String>,
    },
    /// Mark NAME@VERSION active again.
    Reactivate {
        reference: String,
        #[arg(long, short)]
        message: Option<String>,
    },
    /// Apply retention to NAME now.
    Retention {
        name: String,
        /// Keep the newest N numbered versions.
        #[arg(long)]
        keep: Option<u32>,
        /// Only versions older than this (e.g. 30d, 12h, 90m, 3600).
        #[arg(long, value_parser = parse_duration_secs)]
        older_than: Option<u64>,
        /// Report what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Purge NAME: every version, alias, history entry and byte.
    Purge {
        name: String,
        /// Required: purging cannot be undone.
        #[arg(long)]
        yes: bool,
    },
    /// Check a deployment: a scratch artifact pushed, published, downloaded
    /// and purged, and the 404s, checksums and permissions each step assumes.
    Doctor {
        /// The scratch artifact (must not exist; default doctor-<random>).
        #[arg(long)]
        name: Option<String>,
        /// Leave the scratch artifact in place (no purge).
        #[arg(long)]
        keep: bool,
    },
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Args)]
pub struct Push {
    pub name: String,
    pub file: PathBuf,
    /// Content type recorded with the bytes (default application/octet-stream).
    #[arg(long)]
    pub content_type: Option<String>,
    /// User metadata, repeatable: --meta git-sha=abc123
    #[arg(long = "meta", value_parser = parse_key_value)]
    pub meta: Vec<(String, String)>,
    /// Publish the pushed LATEST as a new version.
    #[arg(long)]
    pub publish: bool,
    /// Point this alias at the new version (implies --publish).
    #[arg(long)]
    pub alias: Option<String>,
    /// Move the alias only if it is at this revision.
    #[arg(long, requires = "alias")]
    pub if_revision: Option<u64>,
    /// A canary: the alias keeps its version and sends this percent (0-99)
    /// to the new one.
    #[arg(long, requires = "alias", value_parser = clap::value_parser!(u8).range(0..=99))]
    pub weight: Option<u8>,
    /// Parts uploaded in parallel (multipart).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,
    /// Files larger than this are uploaded in parts (e.g. 100MiB).
    #[arg(long, default_value = "100MiB", value_parser = parse_size)]
    pub multipart_threshold: u64,
    /// Size of each part of a multipart upload (at least 5MiB).
    #[arg(long, default_value = "16MiB", value_parser = parse_size)]
    pub part_size: u64,
}

#[derive(Debug, Args)]
pub struct Pull {
    /// NAME (LATEST), NAME@VERSION or NAME:ALIAS
    pub reference: String,
    /// Where to write (default: NAME in the current directory; NAME inside
    /// a directory; - for stdout).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Sticky key for resolving a canary alias.
    #[arg(long)]
    pub key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Create or move an alias.
    Set {
        name: String,
        alias: String,
        version: String,
        /// Secondary version receiving --weight percent of resolves.
        #[arg(long, requires = "weight")]
        canary: Option<String>,
        #[arg(long, requires = "canary", value_parser = clap::value_parser!(u8).range(0..=99))]
        weight: Option<u8>,
        /// Only if the alias is at this revision.
        #[arg(long)]
        if_revision: Option<u64>,
        #[arg(long, short)]
        message: Option<String>,
    },
    /// Show an alias (as it was at --at, an RFC 3339 time).
    Get {
        name: String,
        alias: String,
        #[arg(long)]
        at: Option<String>,
    },
    /// List the aliases of NAME.
    Ls { name: String },
    /// Delete an alias.
    Rm {
        name: String,
        alias: String,
        #[arg(long)]
        if_revision: Option<u64>,
        #[arg(long, short)]
        message: Option<String>,
    },
}

/// `artifact rollout …` (SPEC 10.1). Without ID, the alias's rollout in
/// progress (active or paused).
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Move ALIAS of NAME to VERSION in steps, aborting on any --alarm in ALARM.
    Start {
        name: String,
        alias: String,
        version: String,
        /// Steps as WEIGHT%:HOLD, e.g. 10%:5m,50%:10m,100% (holds 1s to 7d).
        #[arg(long, conflicts_with = "preset", required_unless_present = "preset")]
        steps: Option<String>,
        /// canary-<percent>-<hold>, linear-<percent>-every-<hold>, all-at-once.
        #[arg(long)]
        preset: Option<String>,
        /// A CloudWatch alarm (ARN or name) that aborts the rollout; repeatable.
        #[arg(long = "alarm")]
        alarms: Vec<String>,
        #[arg(long, short)]
        message: Option<String>,
        /// Follow it to the end: exit 0 when completed, 4 when aborted.
        #[arg(long)]
        wait: bool,
    },
    /// Show a rollout (with --wait, follow it to the end).
    Status {
        name: String,
        alias: String,
        id: Option<String>,
        #[arg(long)]
        wait: bool,
    },
    /// Hold the current step (alarms still abort it).
    Pause(RolloutAction),
    /// Go on (the current step's hold starts again).
    Resume(RolloutAction),
    /// Take the alias back to where it was.
    Abort(RolloutAction),
    /// Jump to 100 %: the new version alone.
    Promote(RolloutAction),
}

#[derive(Debug, Args)]
pub struct RolloutAction {
    pub name: String,
    pub alias: String,
    pub id: Option<String>,
    #[arg(long, short)]
    pub message: Option<String>,
}

/// `10%:5m,50%:10m,100%` as the API's steps.
pub fn parse_steps(text: &str) -> Result<serde_json::Value, String> {
    let steps = text
        .split(',')
        .map(|step| {
            let (weight, hold) = match step.trim().split_once(':') {
                Some((w, h)) => (w, Some(h)),
                None => (step.trim(), None),
            };
            let weight: u8 = weight
                .trim_end_matches('%')
                .parse()
                .map_err(|_| format!("step {step:?} is not WEIGHT%[:HOLD], e.g. 10%:5m"))?;
            Ok(match hold {
                Some(hold) => serde_json::json!({"weight": weight, "hold": hold}),
                None => serde_json::json!({"weight": weight}),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(serde_json::Value::Array(steps))
}

/// What `pull` and `show` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Version(String, String),
    Alias(String, String),
}

impl Reference {
    pub fn name(&self) -> &str {
        match self {
            Self::Version(n, _) | Self::Alias(n, _) => n,
        }
    }
}

/// `NAME`, `NAME@VERSION` or `NAME:ALIAS` (artifact names hold neither `@`
/// nor `:`).
pub fn parse_reference(s: &str) -> Result<Reference, String> {
    let reference = if let Some((name, version)) = s.split_once('@') {
        Reference::Version(name.to_owned(), parse_version(version)?)
    } else if let Some((name, alias)) = s.split_once(':') {
        if alias.is_empty() {
            return Err(format!("{s:?}: the alias after ':' is empty"));
        }
        Reference::Alias(name.to_owned(), alias.to_owned())
    } else {
        Reference::Version(s.to_owned(), "LATEST".to_owned())
    };
    if reference.name().is_empty() {
        return Err(format!("{s:?}: the artifact name is empty"));
    }
    Ok(reference)
}

/// `LATEST` (any case) or a version number 1..=999999, as the API spells it.
pub fn parse_version(s: &str) -> Result<String, String> {
    if s.eq_ignore_ascii_case("latest") {
        return Ok("LATEST".into());
    }
    match s.parse::<u32>() {
        Ok(n) if (1..=999_999).contains(&n) => Ok(n.to_string()),
        _ => Err(format!(
            "{s:?} is not a version (LATEST or a number 1..=999999)"
        )),
    }
}

pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not key=value")),
    }
}

/// `30d`, `12h`, `90m`, `45s`, `2w` or plain seconds.
pub fn parse_duration_secs(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30d, 12h, 90m or 3600"))?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (s, m, h, d, w)")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// `1048576`, `512KiB`, `16MiB`, `2GiB` (also `K`, `M`, `G`, `KB`, `MB`,
/// `GB`, all binary).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 16MiB"))?;
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (KiB, MiB, GiB)")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_latest_a_version_or_an_alias() {
        assert_eq!(
            parse_reference("app"),
            Ok(Reference::Version("app".into(), "LATEST".into()))
        );
        assert_eq!(
            parse_reference("app@7"),
            Ok(Reference::Version("app".into(), "7".into()))
        );
        assert_eq!(
            parse_reference("app@latest"),
            Ok(Reference::Version("app".into(), "LATEST".into()))
        );
        assert_eq!(
            parse_reference("app:prod"),
            Ok(Reference::Alias("app".into(), "prod".into()))
        );
        for bad in ["app@", "app@0", "app@x", "app:", "@3", ":prod"] {
            assert!(parse_reference(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_and_sizes_have_units() {
        assert_eq!(parse_duration_secs("30d"), Ok(30 * 86_400));
        assert_eq!(parse_duration_secs("3600"), Ok(3600));
        assert_eq!(parse_duration_secs("2w"), Ok(14 * 86_400));
        assert!(parse_duration_secs("3 days").is_err());
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("5m"), Ok(5 << 20));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert!(parse_size("1.5GiB").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// The permission targets and their revision.
    #[command(visible_alias = "ls")]
    Get,
    /// Add a target: PRINCIPAL (ARN pattern) may do ACTIONs on NAME
    /// patterns (promote: on --alias patterns only, when given).
    Grant {
        #[arg(long)]
        principal: String,
        #[arg(long = "action", required = true, value_parser = ["read", "write", "delete", "promote", "admin"])]
        actions: Vec<String>,
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        #[arg(long = "exclude")]
        exclude: Vec<String>,
        #[arg(long = "alias")]
        aliases: Vec<String>,
    },
    /// Remove the targets of PRINCIPAL (exactly as granted), or only those
    /// on --name patterns.
    Revoke {
        #[arg(long)]
        principal: String,
        #[arg(long = "name")]
        names: Vec<String>,
    },
    /// Replace them with FILE's document (`{"targets": [...]}`), only if they
    /// are still at --if-revision when given.
    Set {
        file: std::path::PathBuf,
        #[arg(long)]
        if_revision: Option<u64>,
    },
    /// Every change of the targets, newest first.
    History,
    /// Whether the targets let PRINCIPAL do ACTION on NAME (and ALIAS), as
    /// every route decides. Exit 0: allowed; 1 (AccessDenied, the reason):
    /// denied.
    Test {
        #[arg(long)]
        principal: String,
        #[arg(long, value_parser = ["read", "write", "delete", "promote", "admin"])]
        action: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        alias: Option<String>,
    },
}
