//! Lambda function `purge-artifact`: `DELETE /artifacts/{name}`. The handler is
//! `shared::api::Operation::PurgeArtifact`; the local server runs the same one.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::api::serve(shared::api::Operation::PurgeArtifact).await
}
