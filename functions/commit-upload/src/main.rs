//! Lambda function `commit-upload`: `PUT /artifacts/{name}`. The handler is
//! `shared::api::Operation::CommitUpload`; the local server runs the same one.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::api::serve(shared::api::Operation::CommitUpload).await
}
