//! Lambda function `get-upload-parts`: `POST /artifacts/{name}/uploads/{upload_id}/parts`. The handler is
//! `shared::api::Operation::GetUploadParts`; the local server runs the same one.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::api::serve(shared::api::Operation::GetUploadParts).await
}
