//! Lambda function `get-access`: `GET /access`. The handler is
//! `shared::api::Operation::GetAccess`; the local server runs the same one.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::api::serve(shared::api::Operation::GetAccess).await
}
