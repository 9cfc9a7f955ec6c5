//! Lambda function `verify-upload`: invoked asynchronously by a multipart
//! commit (and by itself, to go on); verifies the object's SHA-256 and
//! commits it, or fails the upload. The handler is `shared::verifier::handle`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::verifier::serve().await
}
