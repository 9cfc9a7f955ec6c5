//! The permission targets (SPEC 10.4): read on every request, replaced as
//! one document with its history entry in one transaction.

use artifact_store::permission_items;

use super::tx::{TransactFailure, Tx};
use super::{MAX_ATTEMPTS, Repository, page_size};
use crate::access::{Caller, TagSubject, Tags, Targets, tag_subject};
use crate::error::{Error, Result};
use crate::layout::{format_update_at, now};
use crate::model::Page;

pub use artifact_store::permission_items::{AccessChange, AccessDocument};

/// How long a caller's looked-up tags are used before they are looked up
/// again: a tag change on a role applies within this long (IAM itself is
/// eventually consistent).
pub const TAGS_FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(60);
/// Roles and users remembered at most; past it the cache starts over.
const TAG_CACHE_CALLERS: usize = 1024;

/// Tags looked up lately, by role or user (not by caller ARN: every
/// session of a role, each CI job's with its own session name, carries
/// the role's tags, and keyed by ARN each would look them up again and
/// push the cache toward starting over), with when.
#[derive(Debug, Default)]
pub(crate) struct TagCache(
    std::sync::Mutex<std::collections::HashMap<TagSubject, (std::time::Instant, Tags)>>,
);

impl TagCache {
    fn get(&self, subject: &TagSubject) -> Option<Tags> {
        let cache = self.0.lock().ok()?;
        let (at, tags) = cache.get(subject)?;
        (at.elapsed() < TAGS_FRESH_FOR).then(|| tags.clone())
    }

    fn put(&self, subject: &TagSubject, tags: &Tags) {
        if let Ok(mut cache) = self.0.lock() {
            if cache.len() >= TAG_CACHE_CALLERS {
                cache.clear();
            }
            cache.insert(subject.clone(), (std::time::Instant::now(), tags.clone()));
        }
    }
}

/// The most bytes the permission targets take as stored: their history
/// entry holds them and the document they replace, within DynamoDB's
/// 400 KB per item ("The maximum item size in DynamoDB is 400 KB",
/// <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html>;
/// the emulator does not enforce it).
pub const MAX_DOCUMENT_BYTES: usize = 150 * 1024;

impl Repository {
    /// `arn` as a caller of `targets`: with its IAM role's or user's tags
    /// when a target names a tag and the principal is of this deployment's
    /// account (`ACCOUNT_ID`), else its ARN alone. At most one
    /// ListRoleTags / ListUserTags per role or user (all sessions of a role
    /// share it) and [`TAGS_FRESH_FOR`]; a
    /// principal IAM does not know carries no tags.
    pub async fn caller(&self, arn: &str, targets: &Targets) -> Result<Caller> {
        let mut caller = Caller::new(arn);
        if !targets.names_tags() {
            return Ok(caller);
        }
        let Some(subject) = self
            .account_id
            .as_deref()
            .and_then(|account| tag_subject(arn, account))
        else {
            return Ok(caller);
        };
        if let Some(tags) = self.tag_cache.get(&subject) {
            caller.tags = tags;
            return Ok(caller);
        }
        caller.tags = self.principal_tags(&subject).await?;
        self.tag_cache.put(&subject, &caller.tags);
        Ok(caller)
    }

    /// The tags of one role or user, every page.
    async fn principal_tags(&self, subject: &TagSubject) -> Result<Tags> {
        let mut tags = Tags::new();
        let mut marker = None;
        loop {
            let (page, truncated, next) = match subject {
                TagSubject::Role(role) => {
                    match self
                        .iam
                        .list_role_tags()
                        .role_name(role)
                        .set_marker(marker.take())
                        .send()
                        .await
                    {
                        Ok(out) => (out.tags, out.is_truncated, out.marker),
                        Err(e)
                            if e.as_service_error()
                                .is_some_and(|e| e.is_no_such_entity_exception()) =>
                        {
                            return Ok(Tags::new());
                        }
                        Err(e) => return Err(crate::sdk_error::upstream("ListRoleTags", e)),
                    }
                }
                TagSubject::User(user) => {
                    match self
                        .iam
                        .list_user_tags()
                        .user_name(user)
                        .set_marker(marker.take())
                        .send()
                        .await
                    {
                        Ok(out) => (out.tags, out.is_truncated, out.marker),
                        Err(e)
                            if e.as_service_error()
                                .is_some_and(|e| e.is_no_such_entity_exception()) =>
                        {
                            return Ok(Tags::new());
                        }
                        Err(e) => return Err(crate::sdk_error::upstream("ListUserTags", e)),
                    }
                }
            };
            tags.extend(page.into_iter().map(|t| (t.key, t.value)));
            match next {
                Some(m) if truncated => marker = Some(m),
                _ => return Ok(tags),
            }
        }
    }

    /// The permission targets, strongly consistent. One GetItem.
    pub async fn access_targets(&self) -> Result<AccessDocument> {
        self.table.access_targets().await
    }

    /// Replaces the targets with `targets`, recording the change; with
    /// `expected`, only if they are at that revision (412 otherwise). One
    /// GetItem, one TransactWriteItems; a Query of the newest history entry
    /// between them when the targets' item is missing.
    pub async fn put_access_targets(
        &self,
        targets: &Targets,
        actor: &str,
        expected: Option<u64>,
    ) -> Result<AccessDocument> {
        targets.validate()?;
        let document = serde_json::to_string(targets).map_err(|e| Error::internal("access", e))?;
        // Its history entry holds it and the one it replaces, in one item
        // of at most 400 KB.
        if document.len() > MAX_DOCUMENT_BYTES {
            return Err(Error::TooLarge(format!(
                "the permission targets take {} bytes as stored; at most {MAX_DOCUMENT_BYTES}",
                document.len()
            )));
        }
        let current = self.access_targets().await?;
        // Deny by default holds while targets exist: none would let every
        // principal do everything. Opening up is said explicitly (a target
        // granting `*` to `*`), never by emptying the list.
        if targets.targets.is_empty() && !current.targets.targets.is_empty() {
            return Err(Error::InvalidRequest(
                "no targets would let every principal do everything; to open the deployment, \
                 keep a target with principals [\"*\"], names [\"*\"] and the actions to allow"
                    .into(),
            ));
        }
        if let Some(r) = expected
            && r != current.revision
        {
            return Err(Error::AccessModified(format!(
                "the permission targets are at revision {}, not {r}; read them again",
                current.revision
            )));
        }
        // No targets' item, but changes recorded: it was deleted by hand
        // (the break-glass the README documents). Their history stays, and
        // this change is recorded after its newest entry.
        let recorded = match current.revision {
            0 => self.table.newest_access_revision().await?,
            n => n,
        };
        let revision = recorded.max(current.revision) + 1;
        let at_time = now();
        let at = format_update_at(at_time);
        let put = permission_items::put_targets(
            &self.layout.table,
            &document,
            revision,
            &at,
            actor,
            current.revision,
        )?;
        let history = permission_items::put_targets_history(
            &self.layout.table,
            revision,
            &document,
            &current.targets,
            &at,
            actor,
        )?;
        let mut tx = Tx::new();
        tx.push((), put);
        tx.push((), history);
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut attempt = 0;
        // Another transaction on the targets meanwhile (not a change of
        // them): tried again, as every optimistic write is.
        let failure = loop {
            match self.transact_tx(&tx, &token).await {
                Err(TransactFailure::Contention) if attempt + 1 < MAX_ATTEMPTS => {
                    super::backoff(attempt).await;
                    attempt += 1;
                }
                other => break other,
            }
        };
        match failure {
            Ok(()) => Ok(AccessDocument {
                targets: targets.clone(),
                revision,
                update_at: Some(at_time),
                updated_by: Some(actor.to_owned()),
            }),
            Err(TransactFailure::Conditions(_) | TransactFailure::Contention) => {
                let now = self.access_targets().await?;
                // Our own write, landed (its answer lost).
                if now.revision == revision
                    && now.updated_by.as_deref() == Some(actor)
                    && now.update_at == Some(at_time)
                {
                    return Ok(now);
                }
                Err(Error::AccessModified(format!(
                    "the permission targets changed meanwhile (now at revision {}); read them again",
                    now.revision
                )))
            }
            Err(TransactFailure::Failed(e)) => Err(e),
        }
    }

    /// The changes of the targets, newest first. One Query per page.
    pub async fn access_history(
        &self,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<AccessChange>> {
        let limit = page_size(limit)?;
        self.table.access_history(limit, cursor).await
    }
}
