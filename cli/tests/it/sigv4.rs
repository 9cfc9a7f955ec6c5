//! SigV4: what the CLI signs is what an independent implementation
//! (botocore's `SigV4Auth`, service `execute-api`) computes for the same
//! request, credentials and time, byte for byte.

use crate::support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use serde_json::{Value, json};

/// botocore's headers for this request, signed at `timestamp`.
fn botocore(request: Value) -> BTreeMap<String, String> {
    let mut child = std::process::Command::new(test_support::venv_python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/botocore_sigv4.py"
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run the venv's python");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "botocore failed");
    serde_json::from_slice(&output.stdout).unwrap()
}

fn signed_by_cli(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
    credentials: &Credentials,
    time: SystemTime,
) -> BTreeMap<String, String> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    cli::sign::sign_request(
        method,
        url,
        &headers,
        body.as_bytes(),
        credentials,
        "eu-west-1",
        time,
    )
    .unwrap()
    .into_iter()
    .collect()
}

#[test]
fn the_cli_signature_is_the_one_botocore_computes_for_the_same_request() {
    // 2023-11-14T22:13:20Z
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let cases = [
        (
            "POST",
            "https://abc123.execute-api.eu-west-1.amazonaws.com/artifacts/my-app/uploads",
            vec![("content-type", "application/json")],
            r#"{"sha256":"ab","size":3}"#,
            Some("SESSION/TOKEN+="),
        ),
        (
            "GET",
            "https://abc123.execute-api.eu-west-1.amazonaws.com/artifacts/my-app/aliases/prod/resolve?key=runner%201&limit=1000",
            vec![],
            "",
            None,
        ),
        (
            "PUT",
            "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/artifacts/my-app/aliases/prod",
            vec![("content-type", "application/json"), ("if-match", "\"3\"")],
            r#"{"version":"2"}"#,
            None,
        ),
    ];
    for (method, url, headers, body, token) in cases {
        let credentials = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            token.map(str::to_owned),
            None,
            "test",
        );
        let ours = signed_by_cli(method, url, &headers, body, &credentials, time);
        let theirs = botocore(json!({
            "method": method,
            "url": url,
            "headers": headers.iter().cloned().collect::<BTreeMap<_, _>>(),
            "body": body,
            "access_key": "AKIDEXAMPLE",
            "secret_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "token": token,
            "region": "eu-west-1",
            "timestamp": "20231114T221320Z",
        }));
        assert_eq!(ours["x-amz-date"], "20231114T221320Z");
        assert_eq!(
            ours["authorization"], theirs["authorization"],
            "{method} {url}"
        );
        assert_eq!(
            ours.get("x-amz-security-token"),
            theirs.get("x-amz-security-token")
        );
    }
}

/// The request the capturing server saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path_and_query: String,
    headers: BTreeMap<String, String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_binary_sends_carry_a_signature_botocore_agrees_with() {
    // A server that records the request and answers an empty listing.
    let (listener, api) = support::listener().await;
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let record = seen.clone();
    support::serve(listener, move |request| {
        record.lock().unwrap().push(Seen {
            method: request.method().to_string(),
            path_and_query: request.uri().path_and_query().unwrap().to_string(),
            headers: request
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
                .collect(),
        });
        async { support::respond(200, r#"{"items":[],"next_cursor":null}"#) }
    });

    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        ),
        ("AWS_SESSION_TOKEN", "session-token"),
        ("AWS_REGION", "ap-southeast-2"),
        ("AWS_CONFIG_FILE", "/nonexistent"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let run = support::artifact(dir.path(), &["--api", &api, "--sign", "--json", "ls"], &env).await;
    assert_eq!(run.code, 0, "{run:?}");
    // Without --sign a loopback API gets no signature.
    support::artifact(dir.path(), &["--api", &api, "ls"], &env)
        .await
        .ok();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let signed = &seen[0];
    assert!(!seen[1].headers.contains_key("authorization"));
    let authorization = &signed.headers["authorization"];
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
            && authorization.contains("/ap-southeast-2/execute-api/aws4_request"),
        "{authorization}"
    );
    // botocore signs the request as the server received it, at its x-amz-date.
    let theirs = botocore(json!({
        "method": signed.method,
        "url": format!("{api}{}", signed.path_and_query),
        "headers": {},
        "body": "",
        "access_key": "AKIDEXAMPLE",
        "secret_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "token": "session-token",
        "region": "ap-southeast-2",
        "timestamp": signed.headers["x-amz-date"],
    }));
    assert_eq!(authorization, &theirs["authorization"]);
    assert_eq!(signed.headers["x-amz-security-token"], "session-token");
}
