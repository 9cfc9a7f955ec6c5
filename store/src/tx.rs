//! Transactions: one TransactWriteItems with an idempotency token, whose
//! members carry labels so that a cancelled one reports which of them
//! refused by label, never by position; and the one classifier of
//! cancellation reasons.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::builders::TransactWriteItemBuilder;
use aws_sdk_dynamodb::types::{ConditionCheck, Delete, Put, TransactWriteItem, Update};
use sha2::{Digest, Sha256};

use crate::error::Error;

/// One member of a transaction (a put, an update, a delete or a condition
/// check, with its condition): built by the store's row families, opaque
/// above the store. The service assembles and labels members; it never
/// builds or reads one.
#[derive(Debug, Clone)]
pub struct TxItem(TransactWriteItem);

impl TxItem {
    pub(crate) fn builder() -> TxItemBuilder {
        TxItemBuilder(TransactWriteItem::builder())
    }

    pub(crate) fn into_inner(self) -> TransactWriteItem {
        self.0
    }
}

/// The SDK's builder of a transaction member, yielding a [`TxItem`].
pub(crate) struct TxItemBuilder(TransactWriteItemBuilder);

impl TxItemBuilder {
    pub(crate) fn put(self, put: Put) -> Self {
        Self(self.0.put(put))
    }

    pub(crate) fn update(self, update: Update) -> Self {
        Self(self.0.update(update))
    }

    pub(crate) fn delete(self, delete: Delete) -> Self {
        Self(self.0.delete(delete))
    }

    pub(crate) fn condition_check(self, check: ConditionCheck) -> Self {
        Self(self.0.condition_check(check))
    }

    pub(crate) fn build(self) -> TxItem {
        TxItem(self.0.build())
    }
}

/// A transaction being built: each member with the label its failure is
/// reported by.
pub struct Tx<L> {
    items: Vec<(L, TxItem)>,
}

impl<L: Copy> Default for Tx<L> {
    fn default() -> Self {
        Self::new()
    }
}

impl<L: Copy> Tx<L> {
    pub fn new() -> Self {
        Self { items: Vec::new() }
    }

    pub fn push(&mut self, label: L, item: TxItem) {
        self.items.push((label, item));
    }

    fn ops(&self) -> Vec<TxItem> {
        self.items.iter().map(|(_, item)| item.clone()).collect()
    }
}

/// One TransactWriteItems with an idempotency token, so that a retry
/// of a transaction whose answer was lost does not apply it twice
/// (<https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html>,
/// `ClientRequestToken`).
pub async fn transact(
    ddb: &aws_sdk_dynamodb::Client,
    ops: Vec<TxItem>,
    token: &str,
) -> std::result::Result<(), TransactFailure> {
    let ops: Vec<TransactWriteItem> = ops.into_iter().map(|TxItem(op)| op).collect();
    let token = request_token(token, &ops);
    match ddb
        .transact_write_items()
        .set_transact_items(Some(ops))
        .client_request_token(token)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => Err(match e.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                let codes: Vec<Option<&str>> =
                    c.cancellation_reasons().iter().map(|r| r.code()).collect();
                let failure = classify_cancellation(&codes);
                if let TransactFailure::Failed(error) = &failure {
                    tracing::error!(error = ?error, reasons = ?c.cancellation_reasons(), "transaction cancelled");
                }
                failure
            }
            Some(TransactWriteItemsError::TransactionInProgressException(_)) => {
                TransactFailure::Contention
            }
            Some(TransactWriteItemsError::IdempotentParameterMismatchException(_)) => {
                TransactFailure::Failed(Error::internal("TransactWriteItems", e))
            }
            // Throttling of the request itself is a 503, like every call's.
            _ => TransactFailure::Failed(crate::sdk_error::upstream("TransactWriteItems", e)),
        }),
    }
}

/// [`transact`] of a labelled transaction: the members whose
/// conditions failed are named by their labels.
pub async fn transact_tx<L: Copy>(
    ddb: &aws_sdk_dynamodb::Client,
    tx: &Tx<L>,
    token: &str,
) -> std::result::Result<(), TransactFailure<L>> {
    match transact(ddb, tx.ops(), token).await {
        Ok(()) => Ok(()),
        Err(TransactFailure::Conditions(failed)) => Err(TransactFailure::Conditions(
            failed
                .into_iter()
                .filter_map(|i| tx.items.get(i).map(|(label, _)| *label))
                .collect(),
        )),
        Err(TransactFailure::Contention) => Err(TransactFailure::Contention),
        Err(TransactFailure::Failed(e)) => Err(TransactFailure::Failed(e)),
    }
}

/// The `ClientRequestToken` of a transaction: the caller's token (one per
/// logical write, kept across its retries) bound to the very items sent. On
/// AWS a token reused within ten minutes with other items is refused
/// (`IdempotentParameterMismatchException`,
/// <https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html#DDB-TransactWriteItems-request-ClientRequestToken>),
/// e.g. two racing commits of one upload, each with its own timestamps. So
/// one token names one set of items: a retry of the same items (the SDK's
/// after a lost answer, or ours after contention) repeats it, anything else
/// gets another. At most 36 characters, as DynamoDB requires.
pub fn request_token(token: &str, ops: &[TransactWriteItem]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(token.as_bytes());
    hasher.update(format!("{ops:?}").as_bytes());
    hex::encode(hasher.finalize())[..36].to_owned()
}

#[derive(Debug)]
pub enum TransactFailure<L = usize> {
    /// These members' conditions failed (someone else got in first): their
    /// labels (positions for an unlabelled transaction).
    Conditions(Vec<L>),
    /// Another transaction touched the same items; try again.
    Contention,
    /// Not a race: throttling (503), or our own bug such as an item over
    /// 400 KB (500), or an AWS failure (502).
    Failed(Error),
}

/// Why DynamoDB cancelled a transaction, from its per-item reasons
/// (<https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html>,
/// `TransactionCanceledException`): only failed conditions and conflicts
/// with other transactions are races worth retrying; throttling is a 503
/// and a validation error (an item too large, a bad expression) is ours.
pub fn classify_cancellation(codes: &[Option<&str>]) -> TransactFailure {
    let codes: Vec<&str> = codes.iter().map(|c| c.unwrap_or("None")).collect();
    let reason = |wanted: &[&str]| codes.iter().any(|c| wanted.contains(c));
    if reason(&[
        "ThrottlingError",
        "ProvisionedThroughputExceeded",
        "RequestLimitExceeded",
    ]) {
        return TransactFailure::Failed(Error::Throttled {
            operation: "TransactWriteItems",
            source: format!("cancellation reasons {codes:?}").into(),
        });
    }
    let known = ["None", "ConditionalCheckFailed", "TransactionConflict"];
    if let Some(other) = codes.iter().find(|c| !known.contains(c)) {
        return TransactFailure::Failed(Error::internal(
            "TransactWriteItems",
            format!("cancelled for {other} (reasons {codes:?})"),
        ));
    }
    let failed: Vec<usize> = codes
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == "ConditionalCheckFailed")
        .map(|(i, _)| i)
        .collect();
    if failed.is_empty() {
        TransactFailure::Contention
    } else {
        TransactFailure::Conditions(failed)
    }
}

/// A transaction member putting `item` only where no item is (a
/// version number, an upload id: never taken twice).
pub fn put_new(table: &str, item: crate::rows::Item) -> crate::error::Result<TxItem> {
    Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(#pk)")
        .expression_attribute_names("#pk", crate::layout::attr::PK)
        .build()
        .map(|put| TxItem::builder().put(put).build())
        .map_err(crate::sdk_error::invalid_sdk_input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn a_request_token_names_one_set_of_items() {
        use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
        let put = |at: &str| {
            let put = Put::builder()
                .table_name("t")
                .item("pk", AttributeValue::S("app".into()))
                .item("update_at", AttributeValue::S(at.into()))
                .build()
                .unwrap();
            vec![TransactWriteItem::builder().put(put).build()]
        };
        let (first, second) = (
            put("2026-12-05T07:00:00.000001+0000"),
            put("2026-12-05T07:00:00.000002+0000"),
        );
        // Two commits of one upload: one caller token, other items.
        let upload = "0123456789abcdef0123456789abcdef-0";
        assert_ne!(
            super::request_token(upload, &first),
            super::request_token(upload, &second)
        );
        // A retry of the same items (cloned) repeats the token.
        assert_eq!(
            super::request_token(upload, &first),
            super::request_token(upload, &first.clone())
        );
        assert_ne!(
            super::request_token(upload, &first),
            super::request_token("another write", &first)
        );
        assert_eq!(super::request_token(upload, &first).len(), 36);
    }

    fn kind(codes: &[Option<&str>]) -> String {
        match classify_cancellation(codes) {
            TransactFailure::Conditions(i) => format!("conditions {i:?}"),
            TransactFailure::Contention => "contention".into(),
            TransactFailure::Failed(e) => format!("{:?}", e.kind()),
        }
    }

    #[test]
    fn only_failed_conditions_and_conflicts_are_retried_as_races() {
        assert_eq!(
            kind(&[Some("None"), Some("ConditionalCheckFailed")]),
            "conditions [1]"
        );
        assert_eq!(kind(&[Some("TransactionConflict"), None]), "contention");
        assert_eq!(
            kind(&[Some("ThrottlingError"), Some("None")]),
            format!("{:?}", ErrorKind::Throttled)
        );
        assert_eq!(
            kind(&[Some("ProvisionedThroughputExceeded")]),
            format!("{:?}", ErrorKind::Throttled)
        );
        assert_eq!(
            kind(&[Some("ValidationError"), Some("ConditionalCheckFailed")]),
            format!("{:?}", ErrorKind::Internal)
        );
        assert_eq!(
            kind(&[Some("ItemCollectionSizeLimitExceeded")]),
            format!("{:?}", ErrorKind::Internal)
        );
    }
}
