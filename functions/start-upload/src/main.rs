//! Lambda function `start-upload`: `POST /artifacts/{name}/uploads`. The handler is
//! `shared::api::Operation::StartUpload`; the local server runs the same one.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::api::serve(shared::api::Operation::StartUpload).await
}
