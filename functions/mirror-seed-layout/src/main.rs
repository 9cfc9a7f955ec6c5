//! Lambda function `mirror-seed-layout`: run by the table's DynamoDB stream,
//! copies blobs to the library's keys and deletes the library objects of
//! purged and reclaimed rows. The handler is `shared::mirror::handle_event`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::mirror::serve().await
}
