//! Lambda function `list-versions`: `GET /artifacts/{name}/versions`. The handler is
//! `shared::api::Operation::ListVersions`; the local server runs the same one.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::api::serve(shared::api::Operation::ListVersions).await
}
