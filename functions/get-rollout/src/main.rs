//! Lambda function `get-rollout`: `GET /artifacts/{name}/aliases/{alias}/rollouts/{id}`. The handler is
//! `shared::api::Operation::GetRollout`; the local server runs the same one.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::api::serve(shared::api::Operation::GetRollout).await
}
