//! `artifact pull`: resolve, download while hashing, and write the file only
//! when its SHA-256 is the recorded one (a temporary file beside the target,
//! renamed into place; removed on a mismatch).

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::args::{self, Reference, parse_reference};
use crate::client::Api;
use crate::error::{Error, Result};
use crate::output::{Rendered, human_size};
use crate::progress::Progress;
use crate::transfer::{Outcome, Sink, download};

/// How often an expired download URL is renewed before giving up.
const RENEWALS: u32 = 3;

/// What a reference resolves to: the version, its digest and where to get it.
struct Resolved {
    name: String,
    version: String,
    sha256: String,
    url: String,
}

async fn resolve(api: &Api, reference: &Reference, key: Option<&str>) -> Result<Resolved> {
    let body = match reference {
        Reference::Version(name, version) => {
            api.get(&["artifacts", name, "versions", version], &[])
                .await?
                .body
        }
        Reference::Alias(name, alias) => {
            let query: Vec<(&str, &str)> = key.map(|k| ("key", k)).into_iter().collect();
            api.get(&["artifacts", name, "aliases", alias, "resolve"], &query)
                .await?
                .body
        }
    };
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| Error::Protocol(format!("the API answered without {k}: {body}")))
    };
    warn_of_status(&body, reference.name());
    Ok(Resolved {
        name: reference.name().to_owned(),
        version: text("version")?,
        sha256: text("sha256")?.to_ascii_lowercase(),
        url: text("download_url")?,
    })
}

pub async fn pull(
    api: &Api,
    progress: Progress,
    json_output: bool,
    o: &args::Pull,
) -> Result<Rendered> {
    let reference = parse_reference(&o.reference).map_err(Error::Usage)?;
    let to_stdout = o.output.as_deref() == Some(Path::new("-"));
    if to_stdout && json_output {
        return Err(Error::Usage(
            "-o - writes the bytes to stdout, where --json would write its document: use one"
                .into(),
        ));
    }
    let mut target = o
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(reference.name()));
    if target.is_dir() {
        target.push(reference.name());
    }

    for _ in 0..=RENEWALS {
        let resolved = resolve(api, &reference, o.key.as_deref()).await?;
        let outcome = if to_stdout {
            to_stdout_verified(api, progress, &resolved).await?
        } else {
            to_file_verified(api, progress, &resolved, &target).await?
        };
        let Outcome::Done(size) = outcome else {
            continue;
        };
        let path = (!to_stdout).then(|| target.display().to_string());
        let text = match &path {
            Some(p) => format!(
                "pulled {}@{} ({}, sha256 {}) to {p}",
                resolved.name,
                resolved.version,
                human_size(size),
                resolved.sha256
            ),
            None => String::new(),
        };
        let json = json!({
            "name": resolved.name,
            "version": resolved.version,
            "sha256": resolved.sha256,
            "size": size,
            "path": path,
        });
        return Ok(Rendered::new(json, text));
    }
    Err(Error::Connection(
        "the presigned download URL kept expiring".into(),
    ))
}

fn mismatch(resolved: &Resolved, got: &str) -> Error {
    Error::Integrity(format!(
        "{}@{}: downloaded bytes have sha256 {got}, the version records {}",
        resolved.name, resolved.version, resolved.sha256
    ))
}

/// The download's bytes, hashed as they pass.
struct Hashing<W> {
    out: W,
    hasher: Sha256,
    size: u64,
}

impl<W> Hashing<W> {
    fn new(out: W) -> Self {
        Self {
            out,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    fn digest(&mut self) -> String {
        hex::encode(std::mem::take(&mut self.hasher).finalize())
    }
}

/// Into a temporary file, which a restart truncates.
impl Sink for Hashing<std::io::BufWriter<std::fs::File>> {
    fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        self.out
            .write_all(chunk)
            .map_err(|e| Error::io("temporary file", e))
    }

    fn restart(&mut self) -> Result<()> {
        self.out
            .flush()
            .and_then(|()| self.out.get_mut().set_len(0))
            .and_then(|()| self.out.get_mut().seek(SeekFrom::Start(0)).map(drop))
            .map_err(|e| Error::io("temporary file", e))?;
        self.hasher = Sha256::new();
        self.size = 0;
        Ok(())
    }
}

async fn to_file_verified(
    api: &Api,
    progress: Progress,
    resolved: &Resolved,
    target: &Path,
) -> Result<Outcome<u64>> {
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| resolved.name.clone());
    // Dropped (and so deleted) on every path but the rename below. Made as
    // any new file is (0666 less the umask), not tempfile's 0600: the
    // file pulled is renamed from it, and others (a service account, a
    // container's user) must read it as they would a file `cp` made.
    let prefix = format!(".{file_name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".partial");
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let temp = builder
        .tempfile_in(&dir)
        .map_err(|e| Error::io(format!("temporary file in {}", dir.display()), e))?;
    let file = temp
        .as_file()
        .try_clone()
        .map_err(|e| Error::io(temp.path().display(), e))?;
    let mut sink = Hashing::new(std::io::BufWriter::new(file));
    let bar = progress.bytes(0, "download");
    let outcome = download(&api.http, api.policy, &resolved.url, &bar, &mut sink).await?;
    bar.finish_and_clear();
    if outcome == Outcome::Expired {
        return Ok(Outcome::Expired);
    }
    sink.out
        .flush()
        .map_err(|e| Error::io(temp.path().display(), e))?;
    let got = sink.digest();
    if got != resolved.sha256 {
        return Err(mismatch(resolved, &got));
    }
    temp.as_file()
        .sync_all()
        .map_err(|e| Error::io(temp.path().display(), e))?;
    temp.persist(target)
        .map_err(|e| Error::io(target.display(), e.error))?;
    Ok(Outcome::Done(sink.size))
}

/// Onto stdout, only once verified: the bytes are held in a temporary
/// file (deleted on every path) while they download, and copied to stdout
/// after their SHA-256 matched, so a reader at the other end of a pipe
/// never reads bytes that turn out corrupted (SPEC 8: nothing left behind
/// on a mismatch).
async fn to_stdout_verified(
    api: &Api,
    progress: Progress,
    resolved: &Resolved,
) -> Result<Outcome<u64>> {
    let temp = tempfile::tempfile().map_err(|e| Error::io("temporary file", e))?;
    let file = temp
        .try_clone()
        .map_err(|e| Error::io("temporary file", e))?;
    let mut sink = Hashing::new(std::io::BufWriter::new(file));
    let bar = progress.bytes(0, "download");
    let outcome = download(&api.http, api.policy, &resolved.url, &bar, &mut sink).await?;
    bar.finish_and_clear();
    if outcome == Outcome::Expired {
        return Ok(Outcome::Expired);
    }
    sink.out
        .flush()
        .map_err(|e| Error::io("temporary file", e))?;
    let got = sink.digest();
    if got != resolved.sha256 {
        return Err(mismatch(resolved, &got));
    }
    let mut held = temp;
    held.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io("temporary file", e))?;
    let mut out = std::io::stdout().lock();
    std::io::copy(&mut held, &mut out)
        .and_then(|_| out.flush())
        .map_err(|e| Error::io("stdout", e))?;
    Ok(Outcome::Done(sink.size))
}

/// A deprecated (or archived) version is served, with a warning on stderr
/// (SPEC 10.3): the API's `warning` (resolve), else one told from the
/// version's `status` (get version) of artifact `name`.
pub(crate) fn warn_of_status(body: &Value, name: &str) {
    let warning = body
        .get("warning")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let warning = warning.or_else(|| {
        let status = body.get("status").and_then(Value::as_str)?;
        Some(format!(
            "{name}@{} is {status}{}",
            body.get("version").and_then(Value::as_str).unwrap_or("?"),
            body.get("status_message")
                .and_then(Value::as_str)
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ))
    });
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
}
