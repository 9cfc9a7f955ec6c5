//! The local server's tests over HTTP, one binary (one link): each module a subject.

mod access;
mod bad_input;
mod history;
mod pipeline;
mod rollouts;
