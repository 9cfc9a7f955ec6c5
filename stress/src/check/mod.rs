//! `make check`: seeded, replayable randomized runs of the whole service
//! against the emulator, with a checker over what the clients observed and
//! what the store holds (SPEC 9; Jepsen/Elle and FoundationDB's simulation
//! are the models).
//!
//! A run: `workers` clients over three artifacts draw operations (uploads
//! single and multipart with right, wrong-size and wrong-digest
//! declarations and held bytes, commits and re-commits, publishes ± force,
//! alias moves ± canary ± `If-Match` / `If-None-Match`, rollbacks, alias and
//! version deletes, retention, reclaim with grace 0, purges) while the
//! library `versioned` 1.0.1 writes the same bucket and table; the service's
//! SDK clients talk to the emulator through the fault proxy, whose plan a
//! seeded schedule fills (delays, 503s, 500s, resets before and after
//! forwarding, holds); some handlers are abandoned at a random moment (a
//! Lambda timing out), and verification runs as Lambda runs it (retried
//! after a failure, continued after a checkpoint, nothing more). Then faults
//! stop, the on-failure queue is redriven, reclaim and the mirror run, and
//! [`checker`] judges. A seed fixes the operation mix, the data and the
//! fault schedule; thread timing still varies.

mod checker;
mod client;
mod history;
mod workload;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shared::{Config, Repository, Verifier};
use test_support::TestStore;
use test_support::proxy::{self, Faults, Plan};
use tokio::sync::mpsc;

use client::Client;
use history::History;
use workload::{NAMES, VerifyJob, Worker, World};

/// What one run is.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    pub duration: Duration,
    pub workers: usize,
    /// Share of requests whose handler is abandoned at a random moment.
    pub crash_rate: f64,
    /// Whether the library writer takes part.
    pub library: bool,
}

impl Options {
    pub fn replay_command(&self) -> String {
        format!(
            "make check SEED={} DURATION={} WORKERS={}",
            self.seed,
            self.duration.as_secs(),
            self.workers
        )
    }
}

/// What a run found.
pub struct Report {
    pub violations: usize,
    pub events: usize,
    pub checks: u64,
    pub elapsed: Duration,
}

/// One run: the workload, the drain, the checker; prints the verdict.
pub async fn run(options: &Options) -> Report {
    let began = Instant::now();
    println!(
        "check: seed {} ({} s, {} workers, crash rate {}); replay: {}",
        options.seed,
        options.duration.as_secs(),
        options.workers,
        options.crash_rate,
        options.replay_command()
    );
    let store = Arc::new(TestStore::new().await);
    let plan = Plan::new();
    let counts = Arc::new(proxy::FaultCounts::default());
    let proxy_url = proxy::start(
        store.endpoint.clone(),
        Faults::Plan(plan.clone()),
        counts.clone(),
    )
    .await;
    // Even seeds adopt every LATEST of the library in the background (a
    // multipart upload of copied parts, verified, then published); odd
    // seeds copy it within the publish.
    let adopt_in_parts = options.seed.is_multiple_of(2);
    println!(
        "check: a LATEST of the library is adopted {}",
        if adopt_in_parts {
            "in parts, in the background (ADOPT_COPY_MAX_BYTES=1)"
        } else {
            "by one copy within the publish"
        }
    );
    let config = Config::from_lookup(|k| match k {
        "BUCKET_NAME" => Some(store.config.bucket.clone()),
        "TABLE_NAME" => Some(store.config.table.clone()),
        "ADOPT_COPY_MAX_BYTES" if adopt_in_parts => Some("1".to_owned()),
        _ => None,
    })
    .expect("config");
    // The service asks for verifications itself (after a multipart commit,
    // or a publish adopting in the background), as it invokes
    // `verify-upload`: the requests join the jobs the driver runs as Lambda
    // does. (Clients also ask after a commit whose answer they lost.)
    let (asked_tx, mut asked_rx) = mpsc::unbounded_channel::<shared::repository::VerifyRequest>();
    let faulty = Repository::new(&test_support::sdk_config_at(&proxy_url).await, &config)
        .with_verifier(Verifier::Queue(asked_tx));
    let clean = store.another_repository().with_verifier(Verifier::Deferred);
    let history = Arc::new(History::default());
    let client = Client {
        repo: faulty,
        history: history.clone(),
    };
    let (verify_tx, verify_rx) = mpsc::unbounded_channel::<VerifyJob>();
    let dead = Arc::new(Mutex::new(Vec::new()));
    let locks = workload::locks();
    let world = World {
        client: client.clone(),
        locks: locks.clone(),
        verify: verify_tx.clone(),
        versions: Arc::default(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client"),
        crash_rate: options.crash_rate,
    };
    let until = options.duration.as_millis() as u64;
    let asked = {
        let verify = verify_tx.clone();
        tokio::spawn(async move {
            while let Some(request) = asked_rx.recv().await {
                let _ = verify.send(VerifyJob {
                    name: request.name,
                    upload_id: request.upload_id,
                    attempt: 0,
                });
            }
        })
    };
    let driver = tokio::spawn(workload::verify_driver(
        client.clone(),
        locks.clone(),
        verify_rx,
        verify_tx.clone(),
        dead.clone(),
        options.seed,
        options.crash_rate,
    ));
    let faults = tokio::spawn(workload::fault_schedule(
        plan.clone(),
        options.seed,
        until,
        history.clone(),
    ));
    let mirror = {
        let (store, history) = (store.clone(), history.clone());
        tokio::spawn(async move {
            while history.now() < until {
                workload::drain_mirror(&store, &history, "mirror-retry").await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let library = if options.library {
        match workload::Library::start(&store).await {
            Ok(library) => Some(library),
            Err(e) => panic!("{e}"),
        }
    } else {
        None
    };
    let library_task = library.map(|library| {
        tokio::spawn(workload::library_writer(
            library,
            store.clone(),
            clean.clone(),
            locks.clone(),
            history.clone(),
            options.seed,
            until,
        ))
    });
    let ticker = {
        let history = history.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let events = history.events();
                let last: Vec<String> = events
                    .iter()
                    .rev()
                    .take(3)
                    .map(|e| format!("{} {}", e.op, e.name))
                    .collect();
                let running = history
                    .running
                    .lock()
                    .map(|r| r.clone())
                    .unwrap_or_default();
                eprintln!(
                    "check: {} s, {} events so far (last: {last:?}); under way: {running:?}",
                    history.now() / 1000,
                    events.len()
                );
            }
        })
    };
    let workers: Vec<_> = (0..options.workers)
        .map(|id| tokio::spawn(Worker::new(id, options.seed, world.clone()).run(until)))
        .collect();
    for worker in workers {
        worker.await.expect("a worker panicked");
    }
    if let Some(task) = library_task {
        task.await.expect("the library writer panicked");
    }
    faults.await.expect("the fault schedule panicked");
    mirror.await.expect("the mirror panicked");
    plan.clear();
    ticker.abort();
    let adopting = history
        .events()
        .iter()
        .filter(|e| e.op == "publish" && e.outcome.status() == Some(202))
        .count();
    println!(
        "check: workload done after {:.0?}; {}; {adopting} publishes answered 202 (adopting in the background)",
        began.elapsed(),
        counts.summary()
    );

    // Background work drains as Lambda would run it: invocations in flight
    // finish (their retries too), then the on-failure queue is redriven.
    let mut quiet_since = Instant::now();
    let mut seen = 0;
    let drain_started = Instant::now();
    while drain_started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let steps = history
            .events()
            .iter()
            .filter(|e| e.op == "verify-step")
            .count();
        if steps != seen {
            seen = steps;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    driver.abort();
    asked.abort();
    let redrive = Client {
        repo: clean.clone(),
        history: history.clone(),
    };
    let parked: Vec<VerifyJob> = dead.lock().map(|d| d.clone()).unwrap_or_default();
    for job in parked {
        let mut job = VerifyJob { attempt: 0, ..job };
        for _ in 0..64 {
            match workload::verify_step(&redrive, &locks, &job, None).await {
                Some(next) if next.attempt == 0 => job = next,
                Some(retry) if retry.attempt < 6 => job = retry,
                _ => break,
            }
        }
    }
    // A purge whose client saw no end of it is finished, as its client
    // would retry it once the fence's lease lapses.
    for name in NAMES {
        let last = history
            .events()
            .iter()
            .rfind(|e| e.name == name && e.op == "purge")
            .map(|e| e.outcome.ok() || e.outcome.status() == Some(404));
        if last == Some(false) {
            workload::finish_purge(&redrive, name).await;
        }
    }
    for name in NAMES {
        workload::reclaim(&redrive, "bg", name, None).await;
    }
    workload::drain_mirror(&store, &history, "mirror").await;

    let events = history.events();
    let mut library = if options.library {
        workload::Library::start(&store).await.ok()
    } else {
        None
    };
    let mut checker = checker::Checker {
        events: &events,
        repo: &clean,
        store: &store,
        violations: Vec::new(),
        notes: Vec::new(),
        known: Vec::new(),
        checks: 0,
    };
    checker.run(library.as_mut()).await;
    let by_op = events
        .iter()
        .fold(std::collections::BTreeMap::new(), |mut m, e| {
            let key = format!(
                "{} {}",
                e.op,
                e.outcome
                    .status()
                    .map_or("crashed".to_owned(), |s| s.to_string())
            );
            *m.entry(key).or_insert(0u32) += 1;
            m
        });
    println!("check: {} events: {by_op:?}", events.len());
    for note in &checker.notes {
        println!("check: note: {note}");
    }
    for known in &checker.known {
        println!("check: KNOWN DEFECT: {known}");
    }
    for violation in &checker.violations {
        println!(
            "\nVIOLATION (invariant {}) on {}: {}\n  seed {}; replay: {}\n  history excerpt:",
            violation.invariant,
            violation.name,
            violation.what,
            options.seed,
            options.replay_command()
        );
        for line in checker::excerpt(&events, violation, 14) {
            println!("    {line}");
        }
    }
    let report = Report {
        violations: checker.violations.len(),
        events: events.len(),
        checks: checker.checks,
        elapsed: began.elapsed(),
    };
    println!(
        "check seed {}: {} passed, {} failed ({} events, {:.0?})",
        options.seed,
        report.checks - report.violations as u64,
        report.violations,
        report.events,
        report.elapsed
    );
    report
}
