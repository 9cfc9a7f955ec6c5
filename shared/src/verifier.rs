//! The `verify-upload` function (SPEC 4.1): invoked asynchronously after a
//! multipart commit, with `{"name", "upload_id"}`. Each invocation runs one
//! [`Repository::verify_upload_step`] until shortly before its deadline, and
//! when the object needs more, invokes itself again (the checkpoint is on the
//! upload row). Errors fail the invocation: Lambda retries it, then sends the
//! event to the function's on-failure destination.

use std::time::{Duration, Instant, SystemTime};

use lambda_runtime::LambdaEvent;

use crate::error::Error;
use crate::names::ArtifactName;
use crate::repository::{Repository, UploadId, VerifyRequest, VerifyStep};

/// Time kept in hand at the end of an invocation: the last ranges in
/// flight, the checkpoint and the next invocation.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(20);

/// Runs one step of `request` and asks for the next when there is more.
pub async fn handle(
    repo: &Repository,
    request: &VerifyRequest,
    deadline: Option<Instant>,
) -> Result<VerifyStep, Error> {
    let name: ArtifactName = request.name.parse()?;
    let id: UploadId = request.upload_id.parse()?;
    // Boxed: the step's future is deep (hash, commit, publish, alias), and
    // the function's `main` must stay within the compiler's layout depth.
    let step = Box::pin(repo.verify_upload_step(&name, id.as_str(), deadline)).await?;
    match &step {
        VerifyStep::Continue { verified_bytes } => {
            tracing::info!(%name, upload_id = id.as_str(), verified_bytes, "checkpointed; continuing in a new invocation");
            repo.request_verification(&name, &id).await?;
        }
        VerifyStep::Committed(c) => {
            tracing::info!(%name, upload_id = id.as_str(), sha256 = %c.artifact.sha256, "verified and committed");
        }
        VerifyStep::Failed { reason } => {
            tracing::warn!(%name, upload_id = id.as_str(), %reason, "verification failed");
        }
        VerifyStep::Superseded { reason } => {
            tracing::info!(%name, upload_id = id.as_str(), %reason, "verified, superseded");
        }
        VerifyStep::Idle => {
            tracing::info!(%name, upload_id = id.as_str(), "nothing to verify (done or moved on)");
        }
    }
    Ok(step)
}

/// The invocation's deadline as an [`Instant`], less [`DEADLINE_MARGIN`].
fn deadline_of(context: &lambda_runtime::Context) -> Instant {
    let deadline = SystemTime::UNIX_EPOCH + Duration::from_millis(context.deadline);
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .saturating_sub(DEADLINE_MARGIN);
    Instant::now() + left
}

/// The whole `main` of the `verify-upload` function.
pub async fn serve() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let repo = match crate::api::init().await {
        Ok(repo) => repo,
        Err(e) => {
            eprintln!("verify-upload: {e}");
            std::process::exit(1);
        }
    };
    let repo = &repo;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<VerifyRequest>| async move {
            let deadline = deadline_of(&event.context);
            handle(repo, &event.payload, Some(deadline))
                .await
                .map(|_| ())
                .map_err(|e| {
                    tracing::error!(error = %e, source = ?std::error::Error::source(&e), "verify-upload failed");
                    lambda_runtime::Diagnostic {
                        error_type: e.code().to_owned(),
                        error_message: e.to_string(),
                    }
                })
        },
    ))
    .await
}
