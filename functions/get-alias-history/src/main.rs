//! Lambda function `get-alias-history`: `GET /artifacts/{name}/aliases/{alias}/history`. The handler is
//! `shared::api::Operation::GetAliasHistory`; the local server runs the same one.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::api::serve(shared::api::Operation::GetAliasHistory).await
}
