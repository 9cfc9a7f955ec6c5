//! What a write operation waits for before its first write: the caller's
//! authorisation, decided beside the operation's first reads, so that they
//! cost no round trip of their own (SPEC 10.4: still decided on every
//! route, before anything changes).

use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// The caller's authorisation, as an operation that reads first waits for
/// it before it writes.
#[derive(Debug)]
pub struct Allowed(State);

#[derive(Debug)]
enum State {
    Decided(bool),
    Pending(oneshot::Receiver<bool>),
}

impl Allowed {
    /// Decided already, yes: the caller was authorised before the
    /// operation began (or it runs on the service's own behalf).
    pub fn already() -> Self {
        Self(State::Decided(true))
    }

    /// Decided by whoever holds the sender: `true` allows; a sender
    /// dropped without a word refuses.
    pub fn when(heard: oneshot::Receiver<bool>) -> Self {
        Self(State::Pending(heard))
    }

    /// Waits for the decision (once; later calls answer at once): 403
    /// unless it allows.
    pub async fn wait(&mut self) -> Result<()> {
        if let State::Pending(heard) = &mut self.0 {
            let said = heard.await.unwrap_or(false);
            self.0 = State::Decided(said);
        }
        match self.0 {
            State::Decided(true) => Ok(()),
            _ => Err(Error::AccessDenied(
                "the caller is not authorised for this request".into(),
            )),
        }
    }
}
