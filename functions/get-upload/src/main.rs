//! Lambda function `get-upload`: `GET /artifacts/{name}/uploads/{upload_id}`. The handler is
//! `shared::api::Operation::GetUpload`; the local server runs the same one.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::api::serve(shared::api::Operation::GetUpload).await
}
