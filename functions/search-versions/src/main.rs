//! Lambda function `search-versions`: `GET /search`. The handler is
//! `shared::api::Operation::SearchVersions`; the local server runs the same one.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::api::serve(shared::api::Operation::SearchVersions).await
}
