//! `local-api`: the whole API on `LISTEN_ADDR` (default 127.0.0.1:3000),
//! against the S3 and DynamoDB that `AWS_ENDPOINT_URL` points at. Creates the
//! bucket and table when missing.

use std::net::SocketAddr;
use std::sync::Arc;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let addr = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        fail(&format!(
            "LISTEN_ADDR {addr:?} is not an address like 127.0.0.1:3000"
        ));
    };
    let repo = match shared::api::init().await {
        Ok(repo) => repo,
        Err(e) => fail(&e.to_string()),
    };
    if let Err(e) = repo.bootstrap().await {
        fail(&format!(
            "cannot create the bucket and table: {e} ({:?})",
            std::error::Error::source(&e)
        ));
    }
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => fail(&format!("cannot listen on {addr}: {e}")),
    };
    println!("local-api listening on http://{addr}");
    local_api::serve(listener, Arc::new(repo)).await;
}

fn fail(message: &str) -> ! {
    eprintln!("local-api: {message}");
    std::process::exit(1);
}
