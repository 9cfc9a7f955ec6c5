//! Lambda function `get-version`: `GET /artifacts/{name}/versions/{version}`. The handler is
//! `shared::api::Operation::GetVersion`; the local server runs the same one.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::api::serve(shared::api::Operation::GetVersion).await
}
