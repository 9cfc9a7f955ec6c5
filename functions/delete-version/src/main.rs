//! Lambda function `delete-version`: `DELETE /artifacts/{name}/versions/{version}`. The handler is
//! `shared::api::Operation::DeleteVersion`; the local server runs the same one.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::api::serve(shared::api::Operation::DeleteVersion).await
}
