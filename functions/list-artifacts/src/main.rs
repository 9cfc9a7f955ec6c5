//! Lambda function `list-artifacts`: `GET /artifacts`. The handler is
//! `shared::api::Operation::ListArtifacts`; the local server runs the same one.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::api::serve(shared::api::Operation::ListArtifacts).await
}
