//! Strongly consistent gets issued together, sent together: within
//! [`coalescing`], the gets that one task issues in the same poll (the
//! branches of a `join!`: a request's authorisation read beside the
//! operation's own first reads) go to DynamoDB as one BatchGetItem instead
//! of one request each. Each get still answers exactly the items of its own
//! keys, read strongly consistently (as concurrent GetItems read them: per
//! item, not as one snapshot).
//!
//! Outside [`coalescing`] (background jobs, tests calling the service
//! directly) every get is sent at once, as it was asked. A get whose batch
//! was not answered (its sender failed, or was dropped mid-flight: a
//! cancelled request) reads its own keys itself, so no get ever waits for
//! a batch nobody sends. A get dropped before its batch went is left out
//! of it.
//!
//! What it assumes of the code inside: a get's future, once polled, is
//! polled again until it finishes or is dropped (as `join!`, `join_all`
//! and `.await` do). A get parked unpolled while another awaits (a pinned
//! future kept across a `select!` and awaited later) would hold the gets
//! batched with it; request handling has no such future.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::error::Result;
use crate::layout::attr;
use crate::rows::Item;

tokio::task_local! {
    static READS: Arc<Coalescer>;
}

/// Runs `work` with its gets coalesced (see the module's documentation).
pub async fn coalescing<F: Future>(work: F) -> F::Output {
    READS.scope(Arc::new(Coalescer::default()), work).await
}

/// How one get asked for its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asked {
    /// GetItem of one key.
    One,
    /// BatchGetItem of its keys.
    Batch,
}

/// The gets asked and not yet sent.
#[derive(Default)]
pub(crate) struct Coalescer {
    pending: Mutex<Vec<Waiter>>,
}

/// One get waiting for its batch.
pub(crate) struct Waiter {
    pub(crate) keys: Vec<Item>,
    pub(crate) asked: Asked,
    answer: oneshot::Sender<Heard>,
}

/// What a get hears: its items, its own request's failure, or `None` when
/// a batch of several failed (the get then reads its keys itself: an
/// error is not shared).
pub(crate) type Heard = Option<Result<Vec<Item>>>;

impl Waiter {
    /// Answers this get with the items of its keys among `found`.
    pub(crate) fn answer(self, found: &[Item]) {
        let mine = found
            .iter()
            .filter(|item| self.keys.iter().any(|key| same_key(key, item)))
            .cloned()
            .collect();
        let _ = self.answer.send(Some(Ok(mine)));
    }

    /// Answers this get with the outcome of a request of its keys alone.
    pub(crate) fn answer_alone(self, read: Result<Vec<Item>>) {
        let _ = self.answer.send(Some(read));
    }

    /// Tells this get to read its keys itself.
    pub(crate) fn fail(self) {
        let _ = self.answer.send(None);
    }
}

/// A get joining the current batch, when there is one (inside
/// [`coalescing`]): the receiver of its answer.
pub(crate) fn join(keys: &[Item], asked: Asked) -> Option<(Arc<Coalescer>, Receiver)> {
    let reads = READS.try_with(Arc::clone).ok()?;
    let (answer, heard) = oneshot::channel();
    reads.lock().push(Waiter {
        keys: keys.to_vec(),
        asked,
        answer,
    });
    Some((reads, heard))
}

/// Where a get hears its batch's answer.
pub(crate) type Receiver = oneshot::Receiver<Heard>;

impl Coalescer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Waiter>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every get asked and not yet sent (none when another get took
    /// them), but those dropped meanwhile.
    pub(crate) fn take(&self) -> Vec<Waiter> {
        let mut taken = std::mem::take(&mut *self.lock());
        taken.retain(|w| !w.answer.is_closed());
        taken
    }
}

/// The distinct keys of `waiters`, in the order asked.
pub(crate) fn union(waiters: &[Waiter]) -> Vec<Item> {
    let mut keys: Vec<Item> = Vec::new();
    for key in waiters.iter().flat_map(|w| &w.keys) {
        if !keys.iter().any(|k| same_key(k, key)) {
            keys.push(key.clone());
        }
    }
    keys
}

/// Whether `item` (or key) has the primary key of `key`.
fn same_key(key: &Item, item: &Item) -> bool {
    key.get(attr::PK) == item.get(attr::PK) && key.get(attr::SK) == item.get(attr::SK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;

    fn key(pk: &str, sk: &str) -> Item {
        Item::from([
            (attr::PK.to_owned(), AttributeValue::S(pk.to_owned())),
            (attr::SK.to_owned(), AttributeValue::S(sk.to_owned())),
        ])
    }

    fn waiter(keys: Vec<Item>) -> (Waiter, Receiver) {
        let (answer, heard) = oneshot::channel();
        let asked = Asked::Batch;
        (
            Waiter {
                keys,
                asked,
                answer,
            },
            heard,
        )
    }

    fn heard(receiver: &mut Receiver) -> Option<Vec<Item>> {
        match receiver.try_recv() {
            Ok(Some(Ok(items))) => Some(items),
            _ => None,
        }
    }

    #[test]
    fn the_union_of_the_gets_names_each_key_once_in_the_order_asked() {
        let (a, _) = waiter(vec![key("x", "1"), key("x", "2")]);
        let (b, _) = waiter(vec![key("x", "2"), key("y", "1")]);
        assert_eq!(
            union(&[a, b]),
            [key("x", "1"), key("x", "2"), key("y", "1")]
        );
    }

    #[test]
    fn each_get_hears_only_the_items_of_its_own_keys() {
        let (a, mut heard_a) = waiter(vec![key("x", "1"), key("x", "9")]);
        let (b, mut heard_b) = waiter(vec![key("y", "1")]);
        let mut item = key("x", "1");
        item.insert("size".into(), AttributeValue::N("3".into()));
        let found = [item.clone(), key("y", "1"), key("z", "1")];
        a.answer(&found);
        b.answer(&found);
        assert_eq!(heard(&mut heard_a), Some(vec![item]));
        assert_eq!(heard(&mut heard_b), Some(vec![key("y", "1")]));
    }

    #[test]
    fn a_failed_batch_tells_each_get_to_read_its_own_keys() {
        let (a, mut heard) = waiter(vec![key("x", "1")]);
        a.fail();
        assert!(matches!(heard.try_recv(), Ok(None)));
    }

    #[tokio::test]
    async fn a_get_dropped_before_its_batch_went_is_left_out_of_it() {
        let taken = coalescing(async {
            let (reads, kept) = join(&[key("x", "1")], Asked::One).expect("inside");
            let (_, dropped) = join(&[key("y", "1")], Asked::One).expect("inside");
            drop(dropped);
            let taken: Vec<Vec<Item>> = reads.take().into_iter().map(|w| w.keys).collect();
            drop(kept);
            taken
        })
        .await;
        assert_eq!(taken, [vec![key("x", "1")]]);
    }

    #[tokio::test]
    async fn gets_join_a_batch_only_inside_coalescing() {
        assert!(join(&[key("x", "1")], Asked::One).is_none());
        let taken = coalescing(async {
            let (reads, _a) = join(&[key("x", "1")], Asked::One).expect("inside");
            let (_, _b) = join(&[key("y", "1")], Asked::One).expect("inside");
            let first = reads.take().len();
            (first, reads.take().len())
        })
        .await;
        assert_eq!(
            taken,
            (2, 0),
            "the first take sends both; the next finds none"
        );
    }
}
