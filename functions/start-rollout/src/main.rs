//! Lambda function `start-rollout`: `POST /artifacts/{name}/aliases/{alias}/rollouts`. The handler is
//! `shared::api::Operation::StartRollout`; the local server runs the same one.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::api::serve(shared::api::Operation::StartRollout).await
}
