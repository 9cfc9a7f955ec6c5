//! The listing of artifact names: the registry (`__artifacts`, sort key
//! `{name}/`, one entry per artifact this service committed, written in
//! the commit's transaction) and the library's "directories" under the
//! store prefix in S3.

use crate::clients::S3Client;
use crate::error::{Error, Result};
use crate::layout::{REGISTRY_PK, attr};
use crate::names::ArtifactName;
use crate::rows::sv;
use crate::table::Table;

impl Table {
    /// The registry's entries (`{name}/`) after `after` (from the start
    /// when `None` or empty), at most `limit` (one Query, strongly
    /// consistent), and the last one when more follow.
    pub async fn registry_after(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<String>, Option<String>)> {
        let query = self
            .ddb
            .query()
            .table_name(&self.name)
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_values(":pk", sv(REGISTRY_PK));
        let query = match after {
            // DynamoDB refuses an empty string in a key condition.
            None | Some("") => query.key_condition_expression("#pk = :pk"),
            Some(after) => query
                .key_condition_expression("#pk = :pk AND #sk > :after")
                .expression_attribute_names("#sk", attr::SK)
                .expression_attribute_values(":after", sv(after)),
        };
        let out = query
            .consistent_read(true)
            .limit(limit as i32)
            .send()
            .await
            .map_err(|e| crate::sdk_error::upstream("Query", e))?;
        let entries: Vec<String> = out
            .items()
            .iter()
            .filter_map(|item| item.get(attr::SK)?.as_s().ok().cloned())
            .collect();
        let more = out
            .last_evaluated_key()
            .is_some_and(|k| !k.is_empty())
            .then(|| entries.last().cloned())
            .flatten();
        Ok((entries, more))
    }
}

/// One page of artifact names, as the library sees them: the
/// "directories" right under `prefix` in `bucket` (at most `limit` keys and
/// "directories", after `start_after` or from the continuation `token`);
/// the continuation token when the page is truncated; and the page's last
/// entry (key or "directory", relative to the prefix), valid name or not.
/// A start S3 refuses (`InvalidArgument`) is a cursor this listing never
/// returned (400). One ListObjectsV2.
pub async fn list_names(
    s3: &S3Client,
    bucket: &str,
    prefix: &str,
    limit: u32,
    token: Option<String>,
    start_after: Option<String>,
) -> Result<(Vec<ArtifactName>, Option<String>, Option<String>)> {
    let s3 = &s3.0;
    let out = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .delimiter("/")
        .max_keys(limit as i32)
        .set_continuation_token(token)
        .set_start_after(start_after)
        .send()
        .await;
    let out = match out {
        Ok(out) => out,
        Err(e)
            if e.as_service_error()
                .and_then(|e| aws_sdk_s3::error::ProvideErrorMetadata::code(e))
                == Some("InvalidArgument") =>
        {
            return Err(Error::InvalidRequest(
                "cursor is not one this listing returned".into(),
            ));
        }
        Err(e) => return Err(crate::sdk_error::upstream("ListObjectsV2", e)),
    };
    let names = out
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .filter_map(|p| p.strip_prefix(prefix))
        .filter_map(|p| p.strip_suffix('/'))
        .filter_map(|p| p.parse().ok())
        .collect();
    let next_token = out
        .next_continuation_token()
        .filter(|_| out.is_truncated() == Some(true))
        .map(str::to_owned);
    // Keys and "directories" share the page, each in key order.
    let last_key = out.contents().last().and_then(|o| o.key());
    let last_dir = out.common_prefixes().last().and_then(|p| p.prefix());
    let last = last_key
        .max(last_dir)
        .and_then(|entry| entry.strip_prefix(prefix))
        .map(str::to_owned);
    Ok((names, next_token, last))
}
