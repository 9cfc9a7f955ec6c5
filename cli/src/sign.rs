//! SigV4 signing of API requests (service `execute-api`), and when to sign.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

use crate::error::{Error, Result};

pub const SERVICE: &str = "execute-api";

/// The headers SigV4 adds to a request (`authorization`, `x-amz-date`, and
/// `x-amz-security-token` with temporary credentials), for `method` on `url`
/// (already percent-encoded) with `headers` and `body`, signed at `time`.
pub fn sign_request(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>> {
    let identity: Identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| Error::Config(format!("cannot sign: {e}")))?
        .into();
    let request = SignableRequest::new(
        method,
        url,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .map_err(|e| Error::Config(format!("cannot sign {url}: {e}")))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| Error::Config(format!("cannot sign {url}: {e}")))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// The region of an API Gateway host: `{id}.execute-api.{region}.amazonaws.com`
/// (also `.amazonaws.com.cn`).
pub fn region_of_host(host: &str) -> Option<&str> {
    let mut labels = host.split('.');
    let (_id, service, region) = (labels.next()?, labels.next()?, labels.next()?);
    (service == SERVICE && labels.next() == Some("amazonaws") && !region.is_empty())
        .then_some(region)
}

/// Whether `host` is this machine (the local server needs no signing).
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_comes_from_an_execute_api_host() {
        assert_eq!(
            region_of_host("abc123.execute-api.eu-west-1.amazonaws.com"),
            Some("eu-west-1")
        );
        assert_eq!(
            region_of_host("abc.execute-api.cn-north-1.amazonaws.com.cn"),
            Some("cn-north-1")
        );
        assert_eq!(region_of_host("api.example.com"), None);
        assert_eq!(region_of_host("127.0.0.1"), None);
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in ["localhost", "127.0.0.1", "127.1.2.3", "[::1]", "::1"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "example.com",
            "10.0.0.1",
            "abc.execute-api.us-east-1.amazonaws.com",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn temporary_credentials_add_the_security_token_header() {
        let creds = Credentials::new("AKID", "SECRET", Some("TOKEN".into()), None, "test");
        let headers = sign_request(
            "GET",
            "https://abc.execute-api.us-east-1.amazonaws.com/artifacts",
            &[],
            b"",
            &creds,
            "us-east-1",
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
        )
        .unwrap();
        let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        assert!(names.contains(&"x-amz-security-token"), "{names:?}");
        assert!(names.contains(&"x-amz-date"), "{names:?}");
        assert!(names.contains(&"authorization"), "{names:?}");
    }
}
