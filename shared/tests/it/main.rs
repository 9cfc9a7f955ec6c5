//! The integration tests of `shared` against the emulator, as one test
//! binary (one link instead of one per file; crates.io's `src/tests`
//! layout). Each module is one subject; helpers shared between them live
//! in `test-support`. (`contract.rs`, which reads `template.yaml` and
//! needs no emulator, stays a binary of its own.)

mod blobs;
mod concurrency;
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
