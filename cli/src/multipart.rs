//! Multipart uploads (SPEC 4.1): planning the parts, the digests of the file
//! and of every part in one streaming pass, resuming (which parts are still
//! missing, and the upload ids remembered on disk), and the parallel
//! transfer of the parts to their presigned URLs.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use indicatif::ProgressBar;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::client::Api;
use crate::error::{Error, Result};
use crate::transfer::{Outcome, Presigned, put_range};

/// S3's limits on parts.
pub const MIN_PART_SIZE: u64 = 5 << 20;
pub const MAX_PART_SIZE: u64 = 5 << 30;
pub const MAX_PARTS: u64 = 10_000;
/// Parts asked for in one `POST …/parts` (SPEC 4.1).
pub const PARTS_PER_CALL: usize = 1000;

/// How a file of `size` bytes is cut into parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub size: u64,
    pub part_size: u64,
    pub part_count: u32,
}

impl Plan {
    /// Parts of `requested` bytes (at least 5 MiB), grown until the file
    /// fits in S3's 10 000 parts.
    pub fn new(size: u64, requested: u64) -> Result<Self> {
        let mut part_size = requested.max(MIN_PART_SIZE);
        let needed = size.div_ceil(MAX_PARTS);
        if needed > part_size {
            // Round up to whole MiB: tidy, and still within the limit.
            part_size = needed.div_ceil(1 << 20) << 20;
        }
        if part_size > MAX_PART_SIZE {
            return Err(Error::Usage(format!(
                "{size} bytes do not fit in {MAX_PARTS} parts of at most 5 GiB"
            )));
        }
        let part_count = size.div_ceil(part_size).max(1);
        Ok(Self {
            size,
            part_size,
            part_count: part_count as u32,
        })
    }

    /// Byte offset and length of part `number` (1-based).
    pub fn range(&self, number: u32) -> (u64, u64) {
        let offset = u64::from(number - 1) * self.part_size;
        (offset, self.part_size.min(self.size - offset))
    }
}

/// The parts still to send: every part of the plan the server has not
/// received, in order.
pub fn missing_parts(part_count: u32, received: &[u64]) -> Vec<u32> {
    let received: BTreeSet<u64> = received.iter().copied().collect();
    (1..=part_count)
        .filter(|n| !received.contains(&u64::from(*n)))
        .collect()
}

/// The SHA-256 of a whole file and, when cut into parts, of each part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub sha256: [u8; 32],
    pub size: u64,
    pub parts: Vec<[u8; 32]>,
}

impl Digests {
    pub fn hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// Reads `reader` once, hashing the whole and (with `part_size`) each part;
/// `progress` hears of every chunk read.
pub fn digest(
    mut reader: impl Read,
    part_size: Option<u64>,
    mut progress: impl FnMut(u64),
) -> std::io::Result<Digests> {
    let mut whole = Sha256::new();
    let mut part = Sha256::new();
    let mut in_part = 0u64;
    let mut parts = Vec::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buf[..n];
        whole.update(chunk);
        size += n as u64;
        if let Some(part_size) = part_size {
            let mut rest = chunk;
            while !rest.is_empty() {
                let take = rest.len().min((part_size - in_part) as usize);
                part.update(&rest[..take]);
                in_part += take as u64;
                rest = &rest[take..];
                if in_part == part_size {
                    parts.push(std::mem::take(&mut part).finalize().into());
                    in_part = 0;
                }
            }
        }
        progress(n as u64);
    }
    if part_size.is_some() && (in_part > 0 || parts.is_empty()) {
        parts.push(part.finalize().into());
    }
    Ok(Digests {
        sha256: whole.finalize().into(),
        size,
        parts,
    })
}

/// Upload ids of unfinished multipart pushes, one small JSON file per
/// (artifact, content), so a push run again resumes instead of starting over.
pub struct StateDir {
    dir: PathBuf,
}

/// What a resumed push needs to know about its upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub upload_id: String,
    pub part_size: u64,
    /// The start request the upload was made by (its content type,
    /// metadata, and the commit's `publish` and `alias`): a push asking for
    /// anything else starts its own upload (resuming would commit the
    /// first push's content type and metadata, and answer with its publish
    /// and alias).
    pub start: Value,
}

impl StateDir {
    /// `ARTIFACT_STATE_DIR`, else `$XDG_CACHE_HOME/artifact`, else
    /// `~/.cache/artifact`.
    pub fn from_env() -> Option<Self> {
        let dir = std::env::var_os("ARTIFACT_STATE_DIR")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("artifact"))
            })
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/artifact"))
            })?;
        Some(Self { dir })
    }

    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn file(&self, api: &str, name: &str, sha256: &str) -> PathBuf {
        // The API is part of the key: the same bytes pushed to two
        // deployments are two uploads.
        let api = hex::encode(&Sha256::digest(api.as_bytes())[..8]);
        self.dir.join(format!("{name}-{sha256}-{api}.json"))
    }

    pub fn load(&self, api: &str, name: &str, sha256: &str) -> Option<Saved> {
        let text = std::fs::read_to_string(self.file(api, name, sha256)).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        Some(Saved {
            upload_id: v.get("upload_id")?.as_str()?.to_owned(),
            part_size: v.get("part_size")?.as_u64()?,
            start: v.get("start").cloned().unwrap_or(Value::Null),
        })
    }

    /// Best effort: a push that cannot remember its upload still works, it
    /// just cannot resume.
    pub fn save(&self, api: &str, name: &str, sha256: &str, saved: &Saved) {
        let _ = std::fs::create_dir_all(&self.dir);
        let doc = json!({"upload_id": saved.upload_id, "part_size": saved.part_size,
                         "start": saved.start});
        let _ = std::fs::write(self.file(api, name, sha256), doc.to_string());
    }

    pub fn remove(&self, api: &str, name: &str, sha256: &str) {
        let _ = std::fs::remove_file(self.file(api, name, sha256));
    }
}

/// Sends the `missing` parts of `path` for upload `upload_id`: presigned URLs
/// asked for in batches of at most 1 000, each batch's parts sent with
/// `concurrency` in flight; a part whose URL expired is asked for again.
#[allow(clippy::too_many_arguments)]
pub async fn upload_parts(
    api: &Api,
    name: &str,
    upload_id: &str,
    plan: &Plan,
    digests: &Digests,
    path: &Path,
    missing: &[u32],
    concurrency: usize,
    bar: &ProgressBar,
) -> Result<()> {
    for batch in missing.chunks(PARTS_PER_CALL) {
        let urls = part_urls(api, name, upload_id, digests, batch).await?;
        let results: Vec<Result<()>> = futures::stream::iter(batch.iter().copied())
            .map(|number| {
                let target = urls.iter().find(|(n, _)| *n == number).map(|(_, t)| t);
                async move {
                    let mut target = target.cloned().ok_or_else(|| {
                        Error::Protocol(format!("the API gave no URL for part {number}"))
                    })?;
                    let (offset, len) = plan.range(number);
                    // Renewing an expired URL is bounded like any retry.
                    for _ in 0..=api.policy.retries {
                        match put_range(
                            &api.upload_http,
                            api.policy,
                            &target,
                            path,
                            offset,
                            len,
                            bar,
                        )
                        .await?
                        {
                            Outcome::Done(_) => return Ok(()),
                            Outcome::Expired => {
                                let renewed =
                                    part_urls(api, name, upload_id, digests, &[number]).await?;
                                target = renewed.into_iter().next().map(|(_, t)| t).ok_or_else(
                                    || Error::Protocol(format!("no URL for part {number}")),
                                )?;
                            }
                        }
                    }
                    Err(Error::Connection(format!(
                        "part {number}: its presigned URL kept expiring"
                    )))
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>>>()?;
    }
    Ok(())
}

/// `POST …/uploads/{id}/parts` for `numbers`: each part's presigned request.
async fn part_urls(
    api: &Api,
    name: &str,
    upload_id: &str,
    digests: &Digests,
    numbers: &[u32],
) -> Result<Vec<(u32, Presigned)>> {
    let parts: Vec<Value> = numbers
        .iter()
        .map(|n| {
            let digest = digests
                .parts
                .get(*n as usize - 1)
                .map(hex::encode)
                .unwrap_or_default();
            json!({"number": n, "sha256": digest})
        })
        .collect();
    let answer = api
        .call(
            Method::POST,
            &["artifacts", name, "uploads", upload_id, "parts"],
            &[],
            Some(&json!({"parts": parts})),
            &[],
        )
        .await?;
    answer
        .body
        .get("parts")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::Protocol(format!("parts answered without parts: {}", answer.body)))?
        .iter()
        .map(|p| {
            let number = p
                .get("number")
                .and_then(Value::as_u64)
                .ok_or_else(|| Error::Protocol(format!("a part without a number: {p}")))?;
            Ok((number as u32, Presigned::from_json(p)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn parts_are_at_least_5_mib_and_at_most_10000() {
        let p = Plan::new(100 * MIB, MIB).unwrap();
        assert_eq!((p.part_size, p.part_count), (5 * MIB, 20));
        let p = Plan::new(100 * MIB + 1, 16 * MIB).unwrap();
        assert_eq!((p.part_size, p.part_count), (16 * MIB, 7));
        assert_eq!(p.range(7), (96 * MIB, 4 * MIB + 1));
        // 1 TiB in 16 MiB parts would be 65 536 parts: the parts grow.
        let p = Plan::new(1 << 40, 16 * MIB).unwrap();
        assert!(u64::from(p.part_count) <= MAX_PARTS);
        assert!(p.part_size * u64::from(p.part_count) >= 1 << 40);
        assert_eq!(p.part_size % MIB, 0);
        assert!(Plan::new(60 << 40, 16 * MIB).is_err());
    }

    #[test]
    fn the_ranges_of_a_plan_tile_the_file() {
        let p = Plan::new(23 * MIB + 5, 5 * MIB).unwrap();
        let mut next = 0;
        for n in 1..=p.part_count {
            let (offset, len) = p.range(n);
            assert_eq!(offset, next);
            assert!(len > 0 && len <= p.part_size);
            next = offset + len;
        }
        assert_eq!(next, p.size);
    }

    #[test]
    fn a_resumed_upload_sends_only_the_parts_not_received() {
        assert_eq!(missing_parts(5, &[]), vec![1, 2, 3, 4, 5]);
        assert_eq!(missing_parts(5, &[1, 3, 5]), vec![2, 4]);
        assert_eq!(missing_parts(3, &[3, 2, 1, 2]), Vec::<u32>::new());
        // Numbers outside the plan (a stale answer) are ignored.
        assert_eq!(missing_parts(2, &[7]), vec![1, 2]);
    }

    /// A reader returning odd-sized chunks, so part boundaries fall inside them.
    struct Dribble<'a>(&'a [u8], usize);

    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(self.1);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn one_pass_yields_the_whole_digest_and_each_parts_digest() {
        let data: Vec<u8> = (0..10_007u32).map(|i| (i * 31 % 251) as u8).collect();
        for (part_size, chunk) in [
            (1000u64, 333usize),
            (4096, 10_000),
            (10_007, 7),
            (3, 1 << 20),
        ] {
            let mut read = 0;
            let d = digest(Dribble(&data, chunk), Some(part_size), |n| read += n).unwrap();
            assert_eq!(read, data.len() as u64);
            assert_eq!(d.size, data.len() as u64);
            assert_eq!(d.sha256, <[u8; 32]>::from(Sha256::digest(&data)));
            let expected: Vec<[u8; 32]> = data
                .chunks(part_size as usize)
                .map(|c| Sha256::digest(c).into())
                .collect();
            assert_eq!(d.parts, expected, "part size {part_size}, chunk {chunk}");
        }
        let d = digest(Dribble(&data, 100), None, |_| {}).unwrap();
        assert!(d.parts.is_empty());
    }

    #[test]
    fn an_empty_file_is_one_empty_part() {
        let d = digest(&b""[..], Some(MIN_PART_SIZE), |_| {}).unwrap();
        assert_eq!(d.parts, vec![<[u8; 32]>::from(Sha256::digest(b""))]);
        assert_eq!(d.size, 0);
    }

    #[test]
    fn the_state_dir_remembers_an_upload_per_api_name_and_content() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::at(dir.path());
        let saved = Saved {
            upload_id: "u1".into(),
            part_size: 5 * MIB,
            start: json!({"sha256": "abc", "publish": true}),
        };
        state.save("http://a", "app", "abc", &saved);
        assert_eq!(state.load("http://a", "app", "abc"), Some(saved));
        assert_eq!(state.load("http://b", "app", "abc"), None);
        assert_eq!(state.load("http://a", "app", "abd"), None);
        state.remove("http://a", "app", "abc");
        assert_eq!(state.load("http://a", "app", "abc"), None);
    }
}
