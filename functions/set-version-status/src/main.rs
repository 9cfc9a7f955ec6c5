//! Lambda function `set-version-status`: `PATCH /artifacts/{name}/versions/{version}`. The handler is
//! `shared::api::Operation::SetVersionStatus`; the local server runs the same one.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::api::serve(shared::api::Operation::SetVersionStatus).await
}
