//! Lambda function `scheduled-purge`: run by EventBridge on a schedule,
//! applies retention to every artifact and reclaims old bytes, resuming where
//! the previous run stopped. The handler is `shared::scheduled::handle_event`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::scheduled::serve().await
}
