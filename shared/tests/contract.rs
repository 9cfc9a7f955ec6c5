//! The API contract in one place: the route table in code and `openapi.yaml`
//! must describe the same routes, operation ids (= function names) and
//! success statuses, and every error code the code can produce is documented.

use std::collections::BTreeSet;

use shared::api::ROUTES;
use test_support::workspace_root;
use yaml_rust2::{Yaml, YamlLoader};

fn load(file: &str) -> Yaml {
    let text = std::fs::read_to_string(workspace_root().join(file)).unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

fn success_status(function: &str) -> &'static str {
    match function {
        "start-upload" => "201",
        "publish-version" => "201",
        "get-version-content" => "302",
        "delete-version" | "delete-alias" | "purge-artifact" => "204",
        _ => "200",
    }
}

#[test]
fn openapi_documents_exactly_the_routes_of_the_code() {
    let doc = load("openapi.yaml");
    assert_eq!(doc["openapi"].as_str(), Some("3.1.0"));
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_hash().unwrap() {
        for (method, operation) in item.as_hash().unwrap() {
            let method = method.as_str().unwrap();
            if method == "parameters" {
                continue;
            }
            let id = operation["operationId"].as_str().unwrap().to_owned();
            let responses = operation["responses"].as_hash().unwrap();
            assert!(
                responses.contains_key(&Yaml::String(success_status(&id).into())),
                "{id} documents its success status {}",
                success_status(&id)
            );
            documented.insert((method.to_uppercase(), path.as_str().unwrap().to_owned(), id));
        }
    }
    let in_code: BTreeSet<(String, String, String)> = ROUTES
        .iter()
        .map(|r| {
            (
                r.method.to_owned(),
                r.path.to_owned(),
                r.operation.function_name().to_owned(),
            )
        })
        .collect();
    assert_eq!(documented, in_code);
}

#[test]
fn every_error_code_is_documented() {
    let doc = load("openapi.yaml");
    let documented: BTreeSet<&str> =
        doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
            .as_vec()
            .unwrap()
            .iter()
            .filter_map(Yaml::as_str)
            .collect();
    // Every variant of the error enum, built once each.
    use shared::Error;
    let boxed = || -> shared::error::BoxError { "x".into() };
    let errors = [
        Error::InvalidArtifactName(String::new()),
        Error::InvalidAliasName(String::new()),
        Error::InvalidVersion(String::new()),
        Error::InvalidWeight(String::new()),
        Error::InvalidRequest(String::new()),
        Error::ArtifactNotFound {
            name: String::new(),
        },
        Error::VersionNotFound {
            name: String::new(),
            version: String::new(),
        },
        Error::AliasNotFound {
            name: String::new(),
            alias: String::new(),
        },
        Error::UploadNotFound {
            name: String::new(),
            upload_id: String::new(),
        },
        Error::VersionInUse {
            name: String::new(),
            version: String::new(),
            aliases: String::new(),
        },
        Error::Conflict(String::new()),
        Error::UploadMismatch(String::new()),
        Error::TooLarge(String::new()),
        Error::Throttled {
            operation: "x",
            source: boxed(),
        },
        Error::Upstream {
            operation: "x",
            source: boxed(),
        },
    ];
    for error in &errors {
        assert!(
            documented.contains(error.code()),
            "{} is not in openapi.yaml",
            error.code()
        );
    }
    for routing in ["RouteNotFound", "MethodNotAllowed"] {
        assert!(documented.contains(routing));
    }
}
