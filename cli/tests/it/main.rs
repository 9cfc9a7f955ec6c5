//! The CLI's tests, one binary (one link): each module a subject.

mod support;

mod commands;
mod doctor;
mod faults;
mod integrity;
mod push_pull;
mod readme;
mod renewal;
mod resume;
mod rollout;
mod sigv4;
