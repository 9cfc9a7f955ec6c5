//! The integration tests of `shared` against the emulator, as one test
//! binary (one link instead of one per file; crates.io's `src/tests`
//! layout). Each module is one subject; helpers shared between them live
//! in `test-support`. `contract` holds the code to `openapi.yaml`,
//! `template.yaml` and `samconfig.toml`; its tests run beside the others
//! rather than in a binary of their own afterwards.

mod blobs;
mod concurrency;
mod contract;
mod edge;
mod event_order;
mod events;
mod hardening;
mod integrity;
mod interop;
mod mirror;
mod multipart;
mod repository;
mod safety;
mod scheduled;
