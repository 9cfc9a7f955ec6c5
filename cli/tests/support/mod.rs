//! The harness of the CLI's tests: the local server over its own store on
//! the emulator, and the `artifact` binary run against it as a user would.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use test_support::TestStore;

/// A local API over a fresh store, and a working directory for the CLI.
pub struct Local {
    pub store: TestStore,
    pub api: String,
    pub dir: tempfile::TempDir,
}

/// What one run of `artifact` did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stdout as exactly one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}): {:?}\nstderr: {}",
                self.text(),
                self.stderr
            )
        })
    }

    /// Asserts success with nothing on stderr (no progress off a terminal).
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code,
            0,
            "exit {}: stderr {:?}, stdout {:?}",
            self.code,
            self.stderr,
            self.text()
        );
        assert_eq!(self.stderr, "", "stderr on success");
        self
    }
}

impl Local {
    pub async fn start() -> Self {
        let store = TestStore::new().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(local_api::serve(
            listener,
            Arc::new(store.another_repository()),
        ));
        Self {
            store,
            api,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A file of `bytes` in the working directory.
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `artifact --api <local> ARGS` in the working directory.
    pub async fn run(&self, args: &[&str]) -> Run {
        self.run_against(&self.api, args).await
    }

    /// `artifact --api <api> ARGS` in the working directory.
    pub async fn run_against(&self, api: &str, args: &[&str]) -> Run {
        artifact(self.dir.path(), &[&["--api", api], args].concat(), &[]).await
    }
}

/// Runs the binary in `dir` with `args` and extra environment `env`.
pub async fn artifact(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_artifact"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("ARTIFACT_API_URL")
        .env("ARTIFACT_STATE_DIR", dir.join(".state"))
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().await.unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Deterministic bytes of any length.
pub fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    test_support::sha256_hex(bytes)
}
