//! `local-api`: the whole API on `LISTEN_ADDR` (default 127.0.0.1:3000),
//! against the S3 and DynamoDB that `AWS_ENDPOINT_URL` points at. Creates the
//! bucket and table when missing, and runs the mirror of the library's
//! layout over the table's stream, as Lambda's event source mapping does.

use std::net::SocketAddr;
use std::sync::Arc;

use shared::mirror::poller::StreamPoller;

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
    let (config, sdk, repo) = match shared::mirror::init().await {
        Ok(started) => started,
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
    // The mirror's poller runs only with the mirror on: off, nothing
    // consumes its records (on AWS the function does nothing either), and
    // each GetRecords holds the emulator's lock for milliseconds.
    if config.seed_layout_mirror {
        let poller = match StreamPoller::connect(&sdk, &config.table).await {
            Ok(poller) => poller,
            Err(e) => fail(&format!(
                "cannot read the table's stream: {e} ({:?})",
                std::error::Error::source(&e)
            )),
        };
        let mirror = repo.clone();
        tokio::spawn(async move { poller.run(&mirror, true).await });
    }
    // The rollout driver on a short period (the deployment's schedule runs
    // it every minute), and the events of changes from the same stream.
    let period = match shared::rollout_driver::local_period(|k| std::env::var(k).ok()) {
        Ok(period) => period,
        Err(e) => fail(&e.to_string()),
    };
    let driver = shared::rollout_driver::Driver::new(repo.clone(), &sdk);
    tokio::spawn(driver.run(period));
    let sink = match std::env::var("EVENTS_SINK").ok().filter(|v| !v.is_empty()) {
        None => Some(shared::events::eventbridge_sink(&repo, &sdk, &config)),
        Some(v) if v == "off" => None,
        Some(v) => match v.strip_prefix("file:") {
            Some(path) => Some(shared::events::Sink::File(path.into())),
            None => fail(&format!(
                "EVENTS_SINK {v:?} must be file:PATH or off (unset: EventBridge at AWS_ENDPOINT_URL)"
            )),
        },
    };
    let events = match &sink {
        None => "off".to_owned(),
        Some(shared::events::Sink::File(path)) => format!("to {}", path.display()),
        Some(_) => format!(
            "to EventBridge bus {}",
            config.event_bus.as_deref().unwrap_or("default")
        ),
    };
    if let Some(sink) = sink {
        match StreamPoller::connect(&sdk, &config.table).await {
            Ok(poller) => {
                tokio::spawn(poller.run_events(sink));
            }
            Err(e) => fail(&format!("cannot read the table's stream: {e}")),
        }
    }
    println!(
        "local-api rollout driver: every {} ms (ROLLOUT_DRIVER_PERIOD_MS); events: {events} (EVENTS_SINK)",
        period.as_millis()
    );
    let switch = if config.seed_layout_mirror {
        "on"
    } else {
        "off"
    };
    println!("local-api mirror of the library's layout: {switch} (SEED_LAYOUT_MIRROR)");
    println!("local-api listening on http://{addr}");
    local_api::serve(listener, Arc::new(repo)).await;
}

fn fail(message: &str) -> ! {
    eprintln!("local-api: {message}");
    std::process::exit(1);
}
