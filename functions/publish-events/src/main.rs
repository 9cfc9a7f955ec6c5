//! Lambda function `publish-events`: run by the table's DynamoDB stream,
//! puts an event on EventBridge for every change. The handler is
//! `shared::events::handle_event`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::events::serve().await
}
