//! Listings' page sizes and the one cursor codec: a cursor is the base64url
//! of the DynamoDB sort key where the next page starts.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Error, Result};
use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::layout::attr;
use crate::rows::Item;

/// Page sizes accepted by the listings.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Validates a page size.
pub fn page_size(limit: Option<u32>) -> Result<u32> {
    match limit {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
        Some(n) => Err(Error::InvalidRequest(format!(
            "limit {n} is outside 1..={MAX_PAGE_SIZE}"
        ))),
    }
}

/// Opaque cursors: base64url of where the next page starts (a DynamoDB
/// sort key, bound to the partition the caller is listing; an S3 key; a
/// key pair of an index).
pub fn encode_cursor(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

/// What a cursor of [`encode_cursor`] holds; `None` when it is not one.
pub fn cursor_text(cursor: &str) -> Option<String> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
}

/// DynamoDB's longest sort key.
pub const MAX_SORT_KEY_BYTES: usize = 1024;

/// `valid_sk` tells whether a decoded sort key can belong to the listing.
pub fn decode_cursor(
    pk: &str,
    cursor: Option<&str>,
    valid_sk: fn(&str) -> bool,
) -> Result<Option<Item>> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    let invalid = || Error::InvalidRequest("cursor is not one this listing returned".into());
    let sk = cursor_text(cursor).ok_or_else(invalid)?;
    // DynamoDB refuses a sort key over 1 024 bytes with a ValidationException
    // (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html#limits-partition-sort-keys>):
    // no cursor of ours is that long, so refuse it here (400), not there (502).
    if sk.is_empty() || sk.len() > MAX_SORT_KEY_BYTES || !valid_sk(&sk) {
        return Err(invalid());
    }
    Ok(Some(crate::rows::key(pk, sk)))
}

/// The sort key where the next page starts: a Query's `LastEvaluatedKey`.
pub fn next_sort_key(key: Option<&HashMap<String, AttributeValue>>) -> Option<&str> {
    key.and_then(|k| k.get(attr::SK))
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}
