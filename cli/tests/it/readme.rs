//! The README's quick start runs verbatim (against a local server on a free
//! port instead of 3000) and prints what the README shows, times aside.

use crate::support;

use support::Local;

/// The first fenced block after `heading`, and the next one (the script
/// and what it prints).
fn script_and_output<'a>(readme: &'a str, heading: &str) -> (&'a str, &'a str) {
    let section = readme
        .split_once(heading)
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let mut blocks = section.split("```").skip(1).step_by(2);
    let mut next = || {
        blocks
            .next()
            .map(|b| b.split_once('\n').map_or(b, |(_, body)| body))
            .unwrap_or_else(|| panic!("fewer than two code blocks after {heading:?}"))
    };
    (next(), next())
}

/// Timestamps (`2026-11-22T03:22:22.174233Z`) become `TIME`, digests their
/// first 12 hex digits and `…` (the README shortens them), runs of spaces
/// (table padding follows them) one space.
fn normalized(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            words
                .iter()
                .map(|w| {
                    let stamp = w.len() >= 20
                        && w.as_bytes()[..4].iter().all(u8::is_ascii_digit)
                        && w.as_bytes()[4] == b'-'
                        && w.as_bytes()[10] == b'T';
                    let hex = w.chars().take_while(char::is_ascii_hexdigit).count();
                    let rest = &w[hex..];
                    if stamp {
                        let tail: String = w.chars().skip_while(|c| *c != 'Z').skip(1).collect();
                        format!("TIME{tail}")
                    } else if hex > 12 || (hex >= 12 && rest.starts_with('…')) {
                        let rest = rest.strip_prefix('…').unwrap_or(rest);
                        format!("{}…{rest}", &w[..12])
                    } else {
                        (*w).to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|l| !l.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_readme_quick_start_runs_verbatim_and_prints_what_it_shows() {
    let readme = include_str!("../../../README.md");
    let (script, shown) = script_and_output(
        readme,
        "### Quick start: the pipeline flow with the `artifact` CLI",
    );
    let local = Local::start().await;
    // Everything but installing the binary (the test has built it) and the
    // server's port.
    let script: String = script
        .lines()
        .filter(|l| !l.starts_with("cargo install"))
        .map(|l| l.replace("http://127.0.0.1:3000", &local.api))
        .collect::<Vec<_>>()
        .join("\n");
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_artifact"));
    let path = format!(
        "{}:{}",
        binary.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(format!("exec 2>&1\n{script}"))
        .current_dir(local.dir.path())
        .env("PATH", path)
        .env_remove("CI")
        .output()
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        normalized(&printed),
        normalized(shown),
        "the quick start printed:\n{printed}"
    );
}
