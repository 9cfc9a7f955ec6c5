//! Lambda function `rollout-driver`: run by EventBridge every minute, steps,
//! completes or aborts every rollout by its holds and alarms. The handler is
//! `shared::rollout_driver::handle_event`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::rollout_driver::serve().await
}
