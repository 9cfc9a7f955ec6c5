//! Lambda function `resolve-alias`: `GET /artifacts/{name}/aliases/{alias}/resolve`. The handler is
//! `shared::api::Operation::ResolveAlias`; the local server runs the same one.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::api::serve(shared::api::Operation::ResolveAlias).await
}
