//! Lambda function `apply-retention`: `POST /artifacts/{name}/purge`. The handler is
//! `shared::api::Operation::ApplyRetention`; the local server runs the same one.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::api::serve(shared::api::Operation::ApplyRetention).await
}
