//! Lambda function `get-access-history`: `GET /access/history`. The handler is
//! `shared::api::Operation::GetAccessHistory`; the local server runs the same one.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::api::serve(shared::api::Operation::GetAccessHistory).await
}
