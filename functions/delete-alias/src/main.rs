//! Lambda function `delete-alias`: `DELETE /artifacts/{name}/aliases/{alias}`. The handler is
//! `shared::api::Operation::DeleteAlias`; the local server runs the same one.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::api::serve(shared::api::Operation::DeleteAlias).await
}
