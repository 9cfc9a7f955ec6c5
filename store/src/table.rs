//! Requests to the table that more than one use case makes, each built
//! once: the strongly consistent get, the soft delete of a version.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

use crate::error::Result;
use crate::layout::{attr, format_update_at, now};
use crate::names::{ArtifactName, Version};
use crate::rows::{Item, VersionRow, sv, version_key};
use crate::sdk_error::condition_failed;

/// The table: its client and its name.
#[derive(Debug, Clone)]
pub struct Table {
    ddb: aws_sdk_dynamodb::Client,
    name: String,
}

/// Whether a soft delete happened, and why not.
pub enum SoftDelete {
    Deleted,
    /// No live row (never existed, already deleted, purged).
    Missing,
    /// The row still lists alias references.
    Referenced(Box<VersionRow>),
}

impl Table {
    pub fn new(ddb: aws_sdk_dynamodb::Client, name: impl Into<String>) -> Self {
        Self {
            ddb,
            name: name.into(),
        }
    }

    /// One item as stored, strongly consistent (GetItem).
    pub async fn get(&self, key: Item) -> Result<Option<Item>> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.name)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| crate::sdk_error::upstream("GetItem", e))?;
        Ok(out.item)
    }

    /// Soft-deletes a live version that no alias references, marking the
    /// write with `token` so that a retry of a write that landed knows it.
    pub async fn soft_delete(
        &self,
        name: &ArtifactName,
        version: Version,
        token: &str,
    ) -> Result<SoftDelete> {
        let out = self
            .ddb
            .update_item()
            .table_name(&self.name)
            .set_key(Some(version_key(name, version)))
            .update_expression(
                "SET #is_deleted = :true, #deleted_at = :now, #deleted_by_request = :token",
            )
            .condition_expression(
                "attribute_exists(#pk) AND #is_deleted = :false AND attribute_not_exists(#aliases)",
            )
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#is_deleted", attr::IS_DELETED)
            .expression_attribute_names("#deleted_at", attr::DELETED_AT)
            .expression_attribute_names("#deleted_by_request", attr::DELETED_BY_REQUEST)
            .expression_attribute_names("#aliases", attr::ALIASES)
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":now", sv(format_update_at(now())))
            .expression_attribute_values(":token", sv(token))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match out {
            Ok(_) => Ok(SoftDelete::Deleted),
            Err(e) if condition_failed(&e) => {
                let old = match e.into_service_error() {
                    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => {
                        c.item().map(VersionRow::from_item).transpose()?
                    }
                    _ => None,
                };
                let old = match old {
                    Some(row) => Some(row),
                    None => self
                        .get(version_key(name, version))
                        .await?
                        .as_ref()
                        .map(VersionRow::from_item)
                        .transpose()?,
                };
                Ok(match old {
                    Some(row)
                        if row.is_deleted && row.deleted_by_request.as_deref() == Some(token) =>
                    {
                        SoftDelete::Deleted
                    }
                    Some(row) if row.is_live() && !row.aliases.is_empty() => {
                        SoftDelete::Referenced(Box::new(row))
                    }
                    _ => SoftDelete::Missing,
                })
            }
            Err(e) => Err(crate::sdk_error::upstream("UpdateItem", e)),
        }
    }
}
