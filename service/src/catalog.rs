//! Artifact names: the registry merged with the library's listing.

use super::{Repository, encode_cursor, page_size};
use crate::error::{Error, Result};
use crate::model::Page;
use crate::names::ArtifactName;

impl Repository {
    /// Artifact names: those this service committed (the registry, written
    /// in the commit's transaction, so a name is listed right after its
    /// first commit whether or not the mirror runs) merged with those the
    /// library wrote (the "directories" under the store prefix), of those
    /// `readable` admits: a name the caller may not read is skipped before
    /// the page is cut, so neither the page nor its cursor shows it (SPEC
    /// 10.4). AWS calls: 2 per page read (Query ∥ ListObjectsV2), one round
    /// trip; more pages while names are skipped.
    pub async fn list_artifact_names(
        &self,
        limit: Option<u32>,
        cursor: Option<&str>,
        readable: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Page<ArtifactName>> {
        let limit = page_size(limit)?;
        let mut after = match cursor {
            None => None,
            Some(c) => Some(
                artifact_store::paging::cursor_text(c)
                    // Entries are S3 keys this listing returned: never
                    // control characters (S3 refuses them in StartAfter).
                    .filter(|after| !after.chars().any(char::is_control))
                    // Also a DynamoDB sort-key bound: at most 1 024 bytes.
                    .filter(|after| after.len() <= artifact_store::paging::MAX_SORT_KEY_BYTES)
                    .ok_or_else(|| {
                        Error::InvalidRequest("cursor is not one this listing returned".into())
                    })?,
            ),
        };
        // A page can hold no name to show (keys the library never wrote,
        // names the caller may not read): go on rather than answer an empty
        // page with a cursor.
        let mut items = Vec::new();
        // After a first page that did not fill (names skipped), read the
        // largest pages S3 and DynamoDB answer: a caller who may read few
        // names far apart costs rounds per 1 000 names, not per `limit`.
        // One more than the page: whether a name the caller may read
        // follows the last one shown is then known without another read,
        // when none is hidden.
        let mut read = (limit + 1).min(artifact_store::paging::MAX_PAGE_SIZE);
        loop {
            let (names, resume) = self.artifact_names_after(after.as_deref(), read).await?;
            read = artifact_store::paging::MAX_PAGE_SIZE;
            for (i, name) in names.iter().enumerate() {
                if !readable(name.as_str()) {
                    continue;
                }
                items.push(name.clone());
                if items.len() == limit as usize {
                    // Ends on the last name shown: resume right after it,
                    // when a name the caller may read follows (whether a
                    // hidden one does is none of its business).
                    let more = names[i + 1..].iter().any(|n| readable(n.as_str()))
                        || self.readable_name_after(resume, readable).await?;
                    let next_cursor = more
                        .then(|| items.last().map(|n| encode_cursor(&format!("{n}/"))))
                        .flatten();
                    return Ok(Page { items, next_cursor });
                }
            }
            if resume.is_none() {
                return Ok(Page {
                    items,
                    next_cursor: None,
                });
            }
            after = resume;
        }
    }

    /// Whether a name `readable` admits comes after the entry `after` (the
    /// listing's resume point; `None`: the listing ended). Past
    /// `LOOK_AHEAD_PAGES` pages of hidden names: yes (the next page, empty
    /// perhaps, goes on from there), so that no answer waits on reading
    /// the whole catalog.
    async fn readable_name_after(
        &self,
        mut after: Option<String>,
        readable: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<bool> {
        const LOOK_AHEAD_PAGES: usize = 10;
        for _ in 0..LOOK_AHEAD_PAGES {
            let Some(from) = after else {
                return Ok(false);
            };
            let (names, resume) = self
                .artifact_names_after(Some(&from), artifact_store::paging::MAX_PAGE_SIZE)
                .await?;
            if names.iter().any(|n| readable(n.as_str())) {
                return Ok(true);
            }
            after = resume;
        }
        Ok(after.is_some())
    }

    /// One page of at most `limit` artifact names after the entry `after`,
    /// and, when more follow, the entry to resume after. For passes that
    /// resume where they stopped.
    ///
    /// Entries are in S3 key order relative to the store prefix: `name/`
    /// for an artifact, or the key of a stray object right under the prefix.
    /// The registry's sort keys are `name/` too, so both sides share one
    /// order. Each side answers one page; only what is below the first
    /// unfinished side's last entry is final, so that is where the page
    /// ends (it may end on a stray key and hold no name, and still advance).
    pub async fn artifact_names_after(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<ArtifactName>, Option<String>)> {
        let (library, registry) = tokio::join!(
            self.dir_names_after(self.layout.store_prefix(), after, limit),
            self.registry_after(after, limit)
        );
        merge_sides(vec![library?, registry?], limit)
    }

    /// As [`Self::artifact_names_after`], and also the names that have only
    /// blobs (the "directories" under the blob root): what the scheduled
    /// pass visits, so that bytes no row references are reclaimed even
    /// where no row of the name is left (uploads never committed, a purge
    /// stopped after the rows went). Not a listing of artifacts.
    pub async fn names_holding_anything_after(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<ArtifactName>, Option<String>)> {
        let (library, registry, blobs) = tokio::join!(
            self.dir_names_after(self.layout.store_prefix(), after, limit),
            self.registry_after(after, limit),
            self.dir_names_after(self.layout.blob_root(), after, limit)
        );
        merge_sides(vec![library?, registry?, blobs?], limit)
    }

    /// The registry's entries after `after`, and the last one when more follow.
    fn registry_after(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> impl std::future::Future<Output = Result<(Vec<String>, Option<String>)>> {
        self.table.registry_after(after, limit)
    }

    /// One listing's side: "directories" right under `prefix` after
    /// `after`, as entries (`name/`), and the page's last raw entry when
    /// more follow.
    async fn dir_names_after(
        &self,
        prefix: String,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<String>, Option<String>)> {
        let start_after = after.map(|entry| match entry.strip_suffix('/') {
            // Every key below `{prefix}/{dir}/` sorts before `{prefix}/{dir}0`
            // ('0' follows '/'), so the listing starts at the next entry.
            Some(dir) => format!("{prefix}{dir}0"),
            None => format!("{prefix}{entry}"),
        });
        let (mut names, mut token, mut last) =
            self.list_names(&prefix, limit, None, start_after).await?;
        // S3 may answer a truncated page with no entry at all: follow its
        // token rather than take it for the end of the listing.
        while names.is_empty() && last.is_none() && token.is_some() {
            (names, token, last) = self.list_names(&prefix, limit, token, None).await?;
        }
        let entries = names.into_iter().map(|n| format!("{n}/")).collect();
        Ok((entries, token.and(last)))
    }

    /// One page of artifact names, as the library sees them: the
    /// "directories" right under the store prefix; the continuation token;
    /// and the page's last entry (key or "directory", relative to the
    /// prefix), valid name or not. One ListObjectsV2.
    async fn list_names(
        &self,
        prefix: &str,
        limit: u32,
        token: Option<String>,
        start_after: Option<String>,
    ) -> Result<(Vec<ArtifactName>, Option<String>, Option<String>)> {
        artifact_store::catalog_items::list_names(
            &self.s3,
            &self.layout.bucket,
            prefix,
            limit,
            token,
            start_after,
        )
        .await
    }
}

/// Merges listing sides (each: entries in one order, and its last entry
/// when more follow) into one page of at most `limit` names and where the
/// next starts: only what is below the first unfinished side's last entry
/// is final, so that is where the page ends.
fn merge_sides(
    sides: Vec<(Vec<String>, Option<String>)>,
    limit: u32,
) -> Result<(Vec<ArtifactName>, Option<String>)> {
    let bound = sides.iter().filter_map(|(_, more)| more.clone()).min();
    let mut entries: Vec<String> = sides
        .into_iter()
        .flat_map(|(entries, _)| entries)
        .filter(|e| bound.as_ref().is_none_or(|b| e <= b))
        .collect();
    entries.sort();
    entries.dedup();
    let mut resume = bound;
    if entries.len() > limit as usize {
        entries.truncate(limit as usize);
        resume = entries.last().cloned();
    }
    let names = entries
        .iter()
        .filter_map(|e| e.strip_suffix('/'))
        .filter_map(|n| n.parse().ok())
        .collect();
    Ok((names, resume))
}
