//! The artifact registry's reads: `__artifacts`, sort key `{name}/`, one
//! entry per artifact this service committed (written in the commit's
//! transaction).

use crate::error::Result;
use crate::layout::{REGISTRY_PK, attr};
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
