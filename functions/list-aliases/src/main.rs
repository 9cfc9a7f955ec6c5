//! Lambda function `list-aliases`: `GET /artifacts/{name}/aliases`. The handler is
//! `shared::api::Operation::ListAliases`; the local server runs the same one.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::api::serve(shared::api::Operation::ListAliases).await
}
