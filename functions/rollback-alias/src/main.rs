//! Lambda function `rollback-alias`: `POST /artifacts/{name}/aliases/{alias}/rollback`. The handler is
//! `shared::api::Operation::RollbackAlias`; the local server runs the same one.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::api::serve(shared::api::Operation::RollbackAlias).await
}
