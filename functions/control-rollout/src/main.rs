//! Lambda function `control-rollout`: `POST /artifacts/{name}/aliases/{alias}/rollouts/{id}/{action}`. The handler is
//! `shared::api::Operation::ControlRollout`; the local server runs the same one.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::api::serve(shared::api::Operation::ControlRollout).await
}
