//! Lambda function `publish-version`: `POST /artifacts/{name}/versions`. The handler is
//! `shared::api::Operation::PublishVersion`; the local server runs the same one.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::api::serve(shared::api::Operation::PublishVersion).await
}
