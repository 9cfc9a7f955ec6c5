//! Publish: LATEST becomes the next immutable version, by writing rows.

use artifact_store::adopt_objects::{self, LibraryObject, PartCopy};
use artifact_store::mirror_objects::{self, Condition, Conditional, CopiedObject};
use artifact_store::tx::TxItem;
use artifact_store::version_items;
use base64::Engine;

use futures::{StreamExt, TryStreamExt};

use super::Repository;
use super::tx::{TransactFailure, Tx};
use crate::error::{Error, Result};
use crate::layout::now;
use crate::model::PipelineOutcome;
use crate::model::{Pipeline, PublishOutcome, Published, UploadRequest};
use crate::names::UploadId;
use crate::names::{ArtifactName, Version};
use crate::publish_rules::{
    ADOPT_PARALLEL_PARTS, Decision, Latest, Mode, Step, adopt_part_size, adoption_step, decide,
};
use crate::rows::{Item, Location, VersionBytes, VersionRow, version_item};

/// Publishes of one artifact racing each other take turns (each attempt
/// reads LATEST and takes the next number only if nobody did meanwhile):
/// enough attempts, with jittered backoff, for 64 at once.
const PUBLISH_ATTEMPTS: u32 = 256;

impl Repository {
    /// Publishes LATEST as the next version (SPEC 7.1, 7.2, 7.6).
    ///
    /// LATEST is read (strongly consistent), a pure decision ([`decide`])
    /// says whether it is unchanged or which number it takes, and one
    /// transaction writes the version row (referencing the same blob: no
    /// byte is copied) together with the counter on LATEST, conditional on
    /// LATEST being exactly as read and the blob not reclaimed. Parallel
    /// publishes get distinct consecutive numbers (the losers read again),
    /// and no interruption can leave a number taken without its row.
    /// Unchanged LATEST returns the newest version unless `force`.
    ///
    /// AWS calls: GetItem, TransactWriteItems (2, sequential); unchanged:
    /// GetItem, GetItem (2). Rows written by the Python library cost one
    /// more Query; a LATEST whose bytes are at the library's key is adopted
    /// first (CopyObject, UpdateItem), once.
    /// Recording `actor` as the version's creator.
    ///
    /// A LATEST of the library adopted in the background
    /// ([`PublishOutcome::Adopting`]) is refused here (409 naming the
    /// upload): [`Self::publish`] answers it.
    pub async fn publish_version(
        &self,
        name: &ArtifactName,
        force: bool,
        actor: &str,
    ) -> Result<Published> {
        match self
            .publish(name, force, actor, None, super::Allowed::already())
            .await?
        {
            PublishOutcome::Published(published) => Ok(published),
            PublishOutcome::Adopting { upload_id } => Err(Error::ConcurrentModification(format!(
                "LATEST of {name} is being copied into the blob store by upload {upload_id}, \
                 whose verification publishes it"
            ))),
        }
    }

    /// The publish route's: [`Self::publish_version`], or, when LATEST is
    /// the library's and larger than `ADOPT_COPY_MAX_BYTES`, the upload that
    /// copies it into the blob store and publishes it once verified (202).
    ///
    /// `allowed`: the caller's authorisation. The first read of LATEST goes
    /// beside it; nothing is written before it said yes. `key`: the
    /// request's `Idempotency-Key`: a retry with the same key whose first
    /// attempt published answers that version (a forced publish never
    /// publishes twice).
    pub async fn publish(
        &self,
        name: &ArtifactName,
        force: bool,
        actor: &str,
        key: Option<&str>,
        mut allowed: super::Allowed,
    ) -> Result<PublishOutcome> {
        for attempt in 0..PUBLISH_ATTEMPTS {
            if attempt > 0 {
                super::backoff(attempt).await;
            }
            match self
                .publish_version_of(name, force, actor, None, key, &mut allowed)
                .await?
            {
                Publishing::Done(published) => return Ok(PublishOutcome::Published(published)),
                Publishing::Adopt {
                    latest,
                    item,
                    force,
                } => match self.adopt(name, &latest, &item, force, actor).await? {
                    Adoption::Again => {}
                    Adoption::Verifying(upload_id) => {
                        return Ok(PublishOutcome::Adopting { upload_id });
                    }
                },
            }
        }
        Err(Error::ConcurrentModification(format!(
            "publishing {name} kept conflicting with other writers; retry"
        )))
    }

    /// [`Self::publish_version`]; with `pipeline` (an upload and the claim
    /// token of the pipeline run publishing it), only while LATEST is
    /// still that upload's commit (a pipeline publishes what it committed,
    /// never a later writer's LATEST): else 409 UploadSuperseded; and only
    /// while the run holds its claim, recording the number it takes on the
    /// upload row in the same transaction (a run that took over finds it).
    pub(super) async fn publish_version_of(
        &self,
        name: &ArtifactName,
        force: bool,
        actor: &str,
        pipeline: Option<(&crate::names::UploadId, &str)>,
        key: Option<&str>,
        allowed: &mut super::Allowed,
    ) -> Result<Publishing> {
        let upload = pipeline.map(|(u, _)| u);
        let mut mode = if force { Mode::Force } else { Mode::IfChanged };
        // Every attempt's token starts with this request's: a transaction
        // of an earlier attempt that landed after all (DynamoDB answered
        // the SDK's retry "in progress", taken for contention) is
        // recognised on the row it wrote, not published again; so is a
        // retry by the client, sent with the same `Idempotency-Key`.
        let request = super::request_token(key);
        let mut sent = key.is_some();
        for attempt in 0..PUBLISH_ATTEMPTS {
            if attempt > 0 {
                super::backoff(attempt).await;
            }
            let reserved_at = now();
            // Every write below comes after the authorisation said yes.
            // After an attempt that may have landed, and for a client's
            // retry, the version this request published is looked for
            // beside LATEST (others may have published since).
            let (allowed_now, latest_item, mine) = tokio::join!(
                allowed.wait(),
                self.get_version_item(name, Version::Latest),
                Box::pin(async {
                    match sent {
                        true => self.table.published_by(name, &request).await,
                        false => Ok(None),
                    }
                })
            );
            allowed_now?;
            let Some(latest_item) = latest_item? else {
                return Err(Error::ArtifactNotFound {
                    name: name.to_string(),
                });
            };
            let latest = VersionRow::from_item(&latest_item)?;
            if let Some(stored) = mine? {
                let row = VersionRow::from_item(&stored)?;
                return Ok(Publishing::Done(Published {
                    artifact: row.to_artifact(&self.layout),
                    created: true,
                }));
            }
            let number = match decide(&as_read(&latest), &mode, upload.map(|u| u.as_str())) {
                Decision::NotFound => {
                    return Err(Error::ArtifactNotFound {
                        name: name.to_string(),
                    });
                }
                Decision::Superseded => {
                    return Err(Error::UploadSuperseded {
                        name: name.to_string(),
                        upload_id: upload.map(|u| u.as_str().to_owned()).unwrap_or_default(),
                    });
                }
                Decision::Number(number) => number,
                Decision::Unchanged => {
                    // The newest live version, when it holds LATEST's bytes
                    // (the library may have published them again since, past
                    // the counter; the version the marker names may have
                    // been deleted while an older one with them lives on).
                    if let Some(newest) = self.newest_live_version(name).await?
                        && newest.sha256 == latest.sha256
                    {
                        return Ok(Publishing::Done(Published {
                            artifact: newest.to_artifact(&self.layout),
                            created: false,
                        }));
                    }
                    if let Some(found) = self.published_as(name, &latest).await? {
                        return Ok(Publishing::Done(Published {
                            artifact: found.to_artifact(&self.layout),
                            created: false,
                        }));
                    }
                    // The version LATEST was published as is gone: publish again.
                    mode = Mode::Force;
                    continue;
                }
                Decision::MarkerMissing => {
                    // LATEST written by the library, which keeps no publish
                    // marker: unchanged means equal to the newest live version.
                    if let Some(newest) = self.newest_live_version(name).await?
                        && newest.sha256 == latest.sha256
                    {
                        return Ok(Publishing::Done(Published {
                            artifact: newest.to_artifact(&self.layout),
                            created: false,
                        }));
                    }
                    // Publish, unless a concurrent publish set the marker first.
                    mode = Mode::FirstMarker(latest.sha256);
                    continue;
                }
                Decision::CounterMissing => {
                    self.sync_counter(name).await?;
                    continue;
                }
            };
            if latest.location != Location::Blob {
                // The bytes are brought into the blob store first (by
                // `publish`), which changes LATEST: read again after.
                return Ok(Publishing::Adopt {
                    latest: Box::new(latest),
                    item: latest_item,
                    force: matches!(mode, Mode::Force),
                });
            }
            let version = Version::number(number)?;
            // This attempt's own mark: a write whose answer was lost is
            // recognised by it (timestamps of parallel publishes by one
            // actor of the same bytes can coincide to the microsecond).
            let token = format!("{request}-{attempt}");
            let mut item = version_item(
                name,
                version,
                VersionBytes {
                    sha256: &latest.sha256,
                    size: latest.size,
                    content_type: latest.content_type.as_deref(),
                    metadata: &latest.metadata,
                },
                actor,
                &token,
            );
            let events = super::logged_write(None, &mut item);
            let put = self.put_new(item.clone())?;
            // The number is taken in the same transaction that writes its
            // row, from LATEST exactly as read (counter, bytes, marker,
            // epoch): a publish interrupted anywhere leaves no gap, and a
            // purge or commit since the read makes it read again.
            let take_number =
                version_items::take_number(&self.layout.table, &latest_item, &latest, number)?;
            let mut tx = Tx::new();
            tx.push(Member::Row, put);
            tx.push(Member::Number, take_number);
            tx.push(
                Member::Bytes,
                self.not_condemned(name, &latest.sha256, Some(reserved_at))?,
            );
            // No purge runs: one would delete the row (LATEST may be back
            // meanwhile, written by the library, which knows no fence).
            tx.push(Member::Fence, self.no_purge_running(name)?);
            // The search index by metadata, in the same transaction as the
            // row it indexes (SPEC 10.3): search never misses a version.
            for entry in self.index_entries(name, version, &latest.metadata)? {
                tx.push(Member::Index, entry);
            }
            self.log_events(&mut tx, Member::Log, name, &events)?;
            if let Some((id, claim)) = pipeline {
                tx.push(
                    Member::Claim,
                    artifact_store::claim::publish_member(
                        &self.layout.table,
                        name,
                        id,
                        claim,
                        number,
                    )?,
                );
            }
            sent = true;
            match self.transact_tx(&tx, &token).await {
                Ok(()) => {
                    let row = VersionRow::from_item(&item)?;
                    return Ok(Publishing::Done(Published {
                        artifact: row.to_artifact(&self.layout),
                        created: true,
                    }));
                }
                Err(TransactFailure::Conditions(failed)) if failed.contains(&Member::Fence) => {
                    return Err(Error::ArtifactBeingPurged {
                        name: name.to_string(),
                    });
                }
                // Our own write, landed (its answer lost; emulators ignore
                // the request token that makes AWS answer the retry).
                Err(TransactFailure::Conditions(failed))
                    if (failed.contains(&Member::Row) || failed.contains(&Member::Number))
                        && self.publish_landed(name, version, &item).await? =>
                {
                    let row = VersionRow::from_item(&item)?;
                    return Ok(Publishing::Done(Published {
                        artifact: row.to_artifact(&self.layout),
                        created: true,
                    }));
                }
                // Another run of the pipeline took it over (or recorded
                // its answer): that run publishes, this one must not.
                Err(TransactFailure::Conditions(failed)) if failed.contains(&Member::Claim) => {
                    return Err(Error::ConcurrentModification(format!(
                        "the pipeline of upload {} was taken over by another run; retry for its answer",
                        upload.map(|u| u.as_str()).unwrap_or_default()
                    )));
                }
                Err(TransactFailure::Conditions(failed)) if failed.contains(&Member::Bytes) => {
                    return Err(Error::ConcurrentModification(format!(
                        "retention deleted the bytes of LATEST of {name} while publishing; retry"
                    )));
                }
                // LATEST changed since it was read (a commit, another
                // publish, a purge): read it again.
                Err(TransactFailure::Conditions(failed)) if failed.contains(&Member::Number) => {}
                // Someone else (the Python library) wrote this number: catch
                // the counter up and take the next one.
                Err(TransactFailure::Conditions(_)) => self.sync_counter(name).await?,
                Err(TransactFailure::Contention) => {}
                Err(TransactFailure::Failed(e)) => return Err(e),
            }
        }
        Err(Error::ConcurrentModification(format!(
            "publishing {name} kept conflicting with other writers; retry"
        )))
    }

    /// Whether the row of `version` is `item`, as this publish wrote it (its
    /// microsecond timestamp, bytes and creator).
    async fn publish_landed(
        &self,
        name: &ArtifactName,
        version: Version,
        item: &crate::rows::Item,
    ) -> Result<bool> {
        let Some(stored) = self.get_version_item(name, version).await? else {
            return Ok(false);
        };
        Ok(version_items::same_publish(&stored, item))
    }

    /// The live version an unchanged LATEST was published as. A concurrent
    /// publish may still be writing that row, so a missing row is awaited
    /// (about two seconds) before it is taken as lost to a crash.
    async fn published_as(
        &self,
        name: &ArtifactName,
        latest: &VersionRow,
    ) -> Result<Option<VersionRow>> {
        let Some(newest) = latest.last_version.and_then(|n| Version::number(n).ok()) else {
            return Ok(None);
        };
        for attempt in 0..PUBLISH_WAIT_ATTEMPTS {
            match self.get_row(name, newest).await? {
                Some(found) if found.is_live() && found.sha256 == latest.sha256 => {
                    return Ok(Some(found));
                }
                Some(_) => return Ok(None),
                None => {
                    let pause = 10 * u64::from(attempt + 1);
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                }
            }
        }
        Ok(None)
    }

    /// The newest numbered version that is not soft-deleted. One Query per
    /// 100 rows from the newest (deleted rows are skipped by a filter).
    fn newest_live_version(
        &self,
        name: &ArtifactName,
    ) -> impl std::future::Future<Output = Result<Option<VersionRow>>> {
        self.table.newest_live_version(name)
    }

    /// Brings the bytes of a LATEST the library (or a previous release)
    /// wrote into the blob store, once, then marks LATEST as stored there.
    ///
    /// When the blob key already holds those bytes (checked by S3 or
    /// verified), nothing is copied. Otherwise the library key's object
    /// version is pinned (HeadObject, which also gives its size: the
    /// library's rows have none). Up to `ADOPT_COPY_MAX_BYTES` it is copied
    /// here, onto an empty blob key only (`If-None-Match: *`): while the
    /// library is between its S3 PUT and its row PUT, that object may be
    /// other bytes, and a copy never replaces bytes that rows serve. S3
    /// computes the copy's SHA-256; other bytes than the row's are deleted
    /// again (the version this copy created, under a key no row served) and
    /// the publish is refused. Larger objects: [`Self::adopt_in_parts`].
    /// AWS calls: HeadObject (+ GetItem for a multipart blob), and when the
    /// bytes are not there HeadObject, CopyObject; then UpdateItem.
    async fn adopt(
        &self,
        name: &ArtifactName,
        latest: &VersionRow,
        latest_item: &Item,
        force: bool,
        actor: &str,
    ) -> Result<Adoption> {
        let size = latest.size.unwrap_or_default();
        let checked_at = now();
        let (stored, _) = self.stored_blob(name, &latest.sha256, Some(size)).await?;
        let held = match stored {
            crate::blob_rules::Stored::Holds => true,
            // The row has no size (an old library row): S3's checksum says it.
            crate::blob_rules::Stored::Contradicts(_) => latest.size.is_none(),
            _ => false,
        };
        let described = if !held {
            let source = self.library_source(name, latest).await?;
            if source.size > self.adopt_copy_max_bytes {
                return self
                    .adopt_in_parts(name, latest, latest_item, force, actor, &source)
                    .await;
            }
            self.copy_into_blob_store(name, latest, &source.copy_source)
                .await?;
            source.described
        } else {
            // The bytes are in the blob store already; what the library's
            // object says of them is still wanted (none when it is gone).
            match self.library_source(name, latest).await {
                Ok(source) => source.described,
                Err(Error::ArtifactNotFound { .. } | Error::ConcurrentModification(_)) => None,
                Err(e) => return Err(e),
            }
        };
        self.mark_adopted(name, latest, checked_at, described.as_ref())
            .await?;
        Ok(Adoption::Again)
    }

    /// LATEST's bytes at the library's key: the object version its row
    /// records, else the key's current one, pinned; and its size. One
    /// HeadObject.
    async fn library_source(&self, name: &ArtifactName, latest: &VersionRow) -> Result<Source> {
        let (key, version) =
            latest
                .location
                .object(&self.layout, name, Version::Latest, &latest.sha256);
        let head = adopt_objects::head_library_object(
            &self.s3,
            &self.layout.bucket,
            &key,
            version.clone(),
        )
        .await?;
        let LibraryObject::Found {
            version_id: read,
            size,
            description,
        } = head
        else {
            return Err(library_bytes_gone(name));
        };
        let version = version.or(read);
        // Only the library's own object of these bytes, within what an
        // upload may declare (`publish_rules::adopted_description`).
        let described = crate::publish_rules::adopted_description(&description, &latest.sha256)
            .map(|(content_type, metadata)| version_items::Described {
                content_type,
                metadata,
            });
        Ok(Source {
            copy_source: crate::layout::copy_source(&self.layout.bucket, &key, version.as_deref()),
            size,
            described,
        })
    }

    /// Adopts a LATEST of the library larger than `ADOPT_COPY_MAX_BYTES`
    /// (one CopyObject of up to 5 GiB does not fit a 15 s request,
    /// and a retry would repeat it): as a multipart upload of the same
    /// bytes, its parts copied by S3 in parallel from the pinned library
    /// object (UploadPartCopy), committed with a pipeline that publishes,
    /// so `verify-upload` hashes it in the background and publishes it.
    ///
    /// LATEST records the upload (`adopting`), so a retried publish answers
    /// with it instead of copying again; a pending one (its request cut
    /// short) is copied and committed again, one that failed or was
    /// superseded is replaced. Nothing is taken on trust: the verification
    /// hashes what was copied and commits only the declared SHA-256, only
    /// over this LATEST (a newer write of the library makes it
    /// `superseded`; a pinned object that is not LATEST's bytes, `failed`,
    /// and the next publish starts anew).
    /// AWS calls: GetItem of the recorded upload; a new upload's
    /// (HeadObject ∥ CreateMultipartUpload, TransactWriteItems), UpdateItem;
    /// GetItem, UploadPartCopy per part (16 at once), then the
    /// multipart commit's (ListParts, CompleteMultipartUpload, UpdateItem,
    /// Invoke).
    async fn adopt_in_parts(
        &self,
        name: &ArtifactName,
        latest: &VersionRow,
        latest_item: &Item,
        force: bool,
        actor: &str,
        source: &Source,
    ) -> Result<Adoption> {
        let size = source.size;
        let recorded = version_items::adopting(latest_item);
        let mut resume = None;
        if let Some(id) = recorded
            .as_deref()
            .and_then(|id| id.parse::<UploadId>().ok())
        {
            match self.upload_row(name, &id).await {
                Ok(row) if row.sha256 == latest.sha256 => {
                    match adoption_step(row.state, row.expires_at, now().unix_timestamp()) {
                        Step::Wait => return Ok(Adoption::Verifying(id.as_str().to_owned())),
                        Step::Resume => resume = Some(id),
                        Step::Replace => {}
                    }
                }
                Ok(_) | Err(Error::UploadNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let id = match resume {
            Some(id) => id,
            None => {
                let described = source.described.clone().unwrap_or_default();
                let request = UploadRequest {
                    sha256: latest.sha256.clone(),
                    size,
                    content_type: latest
                        .content_type
                        .clone()
                        .or_else(|| described.content_type.clone()),
                    metadata: match latest.metadata.is_empty() {
                        true => described.metadata.clone(),
                        false => latest.metadata.clone(),
                    },
                    part_size: Some(adopt_part_size(size)),
                    key: None,
                };
                let checked_at = now();
                let ticket = self.create_upload(name, request, actor).await?;
                if ticket.exists {
                    // The blob store holds the bytes now: adopted as is.
                    self.mark_adopted(name, latest, checked_at, source.described.as_ref())
                        .await?;
                    return Ok(Adoption::Again);
                }
                let id: UploadId = ticket.upload_id.parse()?;
                if !self
                    .mark_adopting(name, latest_item, recorded.as_deref(), &id)
                    .await?
                {
                    // LATEST changed (or another publish recorded its
                    // adoption first): judged again. This upload expires.
                    return Ok(Adoption::Again);
                }
                id
            }
        };
        let upload = self.upload_row(name, &id).await?;
        let Some(mp) = &upload.multipart else {
            return Err(Error::internal(
                "adopt",
                format!("upload {} has no multipart upload", id.as_str()),
            ));
        };
        if upload.size != size {
            // The library's object is no longer the one the upload was
            // made for (it is between its S3 PUT and its row PUT).
            return Err(Error::ConcurrentModification(format!(
                "LATEST of {name} changed while publishing; retry"
            )));
        }
        let blob_key = self.layout.blob_key(name, &latest.sha256);
        futures::stream::iter(1..=mp.plan.part_count)
            .map(|number| {
                let start = mp.plan.part_size * u64::from(number - 1);
                let end = start + mp.plan.part_length(number, size) - 1;
                let (source, blob_key) = (&source.copy_source, &blob_key);
                async move {
                    let copied = adopt_objects::copy_part(
                        &self.s3,
                        &self.layout.bucket,
                        blob_key,
                        &mp.s3_upload_id,
                        number,
                        source,
                        start,
                        end,
                    )
                    .await?;
                    match copied {
                        PartCopy::Copied => Ok(()),
                        // Completed by an earlier commit of this upload
                        // whose answer was lost: the commit below judges it.
                        PartCopy::NoSuchUpload => Ok(()),
                        PartCopy::SourceGone => Err(library_bytes_gone(name)),
                    }
                }
            })
            .buffer_unordered(ADOPT_PARALLEL_PARTS)
            .try_collect::<Vec<()>>()
            .await?;
        let pipeline = Pipeline {
            publish: true,
            force,
            alias: None,
        };
        match self
            .commit_pipeline(
                name,
                id.as_str(),
                actor,
                &pipeline,
                super::Allowed::already(),
            )
            .await?
        {
            PipelineOutcome::Verifying { upload_id, .. } => Ok(Adoption::Verifying(upload_id)),
            // The blob store held the bytes after all: committed and
            // published at once; the next attempt finds that version.
            PipelineOutcome::Committed(_) => Ok(Adoption::Again),
        }
    }

    /// Records on LATEST, exactly as read, the upload adopting it (over the
    /// one recorded before, if any). False when LATEST changed meanwhile.
    fn mark_adopting(
        &self,
        name: &ArtifactName,
        latest_item: &Item,
        recorded: Option<&str>,
        id: &UploadId,
    ) -> impl std::future::Future<Output = Result<bool>> {
        self.table.mark_adopting(name, latest_item, recorded, id)
    }

    /// The copy of [`Self::adopt`].
    async fn copy_into_blob_store(
        &self,
        name: &ArtifactName,
        latest: &VersionRow,
        source: &str,
    ) -> Result<()> {
        let mut metadata = std::collections::HashMap::from([
            (
                crate::layout::META_ARTIFACT_NAME.to_owned(),
                name.to_string(),
            ),
            (
                crate::layout::META_ARTIFACT_SHA256.to_owned(),
                latest.sha256.clone(),
            ),
        ]);
        metadata.extend(latest.metadata.clone());
        let blob_key = self.layout.blob_key(name, &latest.sha256);
        let only_where_none = Condition {
            if_match: None,
            if_none_match: Some("*".to_owned()),
        };
        let copied = mirror_objects::copy(
            &self.s3,
            &self.layout.bucket,
            &blob_key,
            source,
            &only_where_none,
            metadata,
            latest.content_type.clone(),
        )
        .await?;
        let Conditional::Written(CopiedObject {
            checksum_sha256: checksum,
            version_id,
        }) = copied
        else {
            // The key gained an object meanwhile (another adoption, an
            // upload): judged again by the next attempt.
            return Err(Error::ConcurrentModification(format!(
                "the bytes of LATEST of {name} arrived meanwhile; retry"
            )));
        };
        let expected = hex::decode(&latest.sha256)
            .ok()
            .map(|d| base64::engine::general_purpose::STANDARD.encode(d));
        if checksum.is_none() || checksum != expected {
            // Other bytes now sit at the content-addressed key: remove them.
            if let Some(v) = version_id {
                mirror_objects::delete(&self.s3, &self.layout.bucket, &blob_key, Some(&v)).await?;
            }
            return Err(Error::ConcurrentModification(format!(
                "LATEST of {name} changed while publishing; retry"
            )));
        }
        Ok(())
    }

    /// LATEST marked as stored in the blob store (unless it changed since:
    /// the version still gets the bytes it was reserved with, now in the
    /// blob store), in one transaction with the checks every writer that
    /// points a row at a blob makes: no purge runs, and no reclaim is
    /// deleting the blob or finished deleting it since `checked_at`, when
    /// the blob (or the copy into it) was seen. AWS calls: TransactWriteItems.
    async fn mark_adopted(
        &self,
        name: &ArtifactName,
        latest: &VersionRow,
        checked_at: time::OffsetDateTime,
        described: Option<&version_items::Described>,
    ) -> Result<()> {
        let mut tx = Tx::new();
        tx.push(
            Adopted::Row,
            version_items::adopted_member(&self.layout.table, name, &latest.sha256, described)?,
        );
        tx.push(Adopted::Fence, self.no_purge_running(name)?);
        tx.push(
            Adopted::Bytes,
            self.not_condemned(name, &latest.sha256, Some(checked_at))?,
        );
        let token = uuid::Uuid::new_v4().simple().to_string();
        for attempt in 0..super::MAX_ATTEMPTS {
            match self.transact_tx(&tx, &token).await {
                Ok(()) => return Ok(()),
                Err(TransactFailure::Conditions(failed)) if failed.contains(&Adopted::Fence) => {
                    return Err(Error::ArtifactBeingPurged {
                        name: name.to_string(),
                    });
                }
                Err(TransactFailure::Conditions(failed)) if failed.contains(&Adopted::Bytes) => {
                    return Err(super::uploads::being_reclaimed(name));
                }
                // LATEST changed since, or is marked already (our own
                // write, its answer lost).
                Err(TransactFailure::Conditions(_)) => return Ok(()),
                Err(TransactFailure::Contention) => super::backoff(attempt).await,
                Err(TransactFailure::Failed(e)) => return Err(e),
            }
        }
        Err(Error::ConcurrentModification(format!(
            "LATEST of {name} kept changing while its bytes were adopted; retry"
        )))
    }

    /// The highest version number any row of the partition holds (deleted and
    /// reclaimed rows included: numbers are never reused). One Query.
    pub(super) fn highest_version(
        &self,
        name: &ArtifactName,
    ) -> impl std::future::Future<Output = Result<u32>> {
        self.table.highest_version(name)
    }

    /// Raises the LATEST row's counter to the highest existing version (rows
    /// the Python library wrote carry no counter).
    async fn sync_counter(&self, name: &ArtifactName) -> Result<()> {
        let highest = self.highest_version(name).await?;
        self.table.raise_counter(name, highest).await
    }
}

const PUBLISH_WAIT_ATTEMPTS: u32 = 20;

/// The members of an adoption's mark (see `Repository::mark_adopted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Adopted {
    Row,
    Fence,
    Bytes,
}

/// The members of a publish's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    /// The version row (a number nobody wrote yet).
    Row,
    /// The counter on LATEST, taken from LATEST exactly as read.
    Number,
    /// LATEST's bytes not being reclaimed.
    Bytes,
    /// An entry of the metadata index.
    Index,
    /// No purge of the artifact runs.
    Fence,
    /// The pipeline run publishing still holds its claim.
    Claim,
    /// The artifact's event log (no condition).
    Log,
}

/// LATEST as the publish rule reads it.
fn as_read(row: &VersionRow) -> Latest<'_> {
    Latest {
        deleted: row.is_deleted,
        upload_id: row.upload_id.as_deref(),
        last_version: row.last_version,
        sha256: &row.sha256,
        published_sha256: row.published_sha256.as_deref(),
    }
}

/// The library's object of LATEST went (deleted, purged) while a publish
/// adopted it: LATEST changed, judged again by a retry.
fn library_bytes_gone(name: &ArtifactName) -> Error {
    Error::ConcurrentModification(format!(
        "the bytes of LATEST of {name} went while publishing; retry"
    ))
}

/// What [`Repository::publish_version_of`] came to.
pub(super) enum Publishing {
    Done(Published),
    /// LATEST, as read, is the library's and too large to adopt here:
    /// [`Repository::publish`] adopts it in parts (never a pipeline's
    /// publish, whose LATEST is its own commit).
    Adopt {
        latest: Box<VersionRow>,
        item: Item,
        force: bool,
    },
}

/// The library's object holding LATEST's bytes.
struct Source {
    /// `bucket/key?versionId=…`, as CopyObject and UploadPartCopy take it.
    copy_source: String,
    size: u64,
    /// What the library's object says of its bytes, when it may be taken.
    described: Option<version_items::Described>,
}

/// What an adoption came to.
enum Adoption {
    /// LATEST changed, or its bytes are in the blob store now: judge again.
    Again,
    /// The upload copying the bytes is being verified; it publishes them.
    Verifying(String),
}

impl Repository {
    /// The entries of the search index by metadata (SPEC 10.3) of a new
    /// version, written in the transaction that writes its row.
    pub(super) fn index_entries(
        &self,
        name: &ArtifactName,
        version: Version,
        metadata: &std::collections::BTreeMap<String, String>,
    ) -> Result<Vec<TxItem>> {
        version_items::index_entries(&self.layout.table, name, version, metadata)
    }
}
