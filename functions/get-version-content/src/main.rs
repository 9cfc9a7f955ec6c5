//! Lambda function `get-version-content`: `GET /artifacts/{name}/versions/{version}/content`. The handler is
//! `shared::api::Operation::GetVersionContent`; the local server runs the same one.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::api::serve(shared::api::Operation::GetVersionContent).await
}
