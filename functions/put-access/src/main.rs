//! Lambda function `put-access`: `PUT /access`. The handler is
//! `shared::api::Operation::PutAccess`; the local server runs the same one.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::api::serve(shared::api::Operation::PutAccess).await
}
