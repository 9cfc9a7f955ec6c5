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

/// The SAM logical id of a function package: `publish-version` → `PublishVersionFunction`.
fn logical_id(package: &str) -> String {
    let mut id: String = package
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    id.push_str("Function");
    id
}

fn function_packages() -> BTreeSet<String> {
    std::fs::read_dir(workspace_root().join("functions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn the_template_has_one_function_per_package_built_by_cargo_lambda_and_the_routes_of_the_code() {
    let template = load("template.yaml");
    let resources = template["Resources"].as_hash().unwrap();
    let functions: BTreeSet<String> = resources
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(id, _)| id.as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = function_packages().iter().map(|p| logical_id(p)).collect();
    assert_eq!(
        functions, expected,
        "one SAM function per package, named after it"
    );

    let mut routes = BTreeSet::new();
    for package in function_packages() {
        let function = &template["Resources"][logical_id(&package).as_str()];
        assert_eq!(
            function["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{package}"
        );
        assert_eq!(
            function["Metadata"]["BuildProperties"]["Binary"].as_str(),
            Some(package.as_str())
        );
        assert_eq!(
            function["Properties"]["CodeUri"].as_str(),
            Some("."),
            "{package} shares the workspace target"
        );
        for (_, event) in function["Properties"]["Events"].as_hash().unwrap() {
            match event["Type"].as_str() {
                Some("HttpApi") => {
                    let p = &event["Properties"];
                    routes.insert((
                        p["Method"].as_str().unwrap().to_owned(),
                        p["Path"].as_str().unwrap().to_owned(),
                        package.clone(),
                    ));
                }
                Some("Schedule") => {
                    assert_eq!(package, "scheduled-purge");
                    assert_eq!(
                        event["Properties"]["Schedule"].as_str(),
                        Some("RetentionSchedule")
                    );
                }
                other => panic!("{package}: unexpected event type {other:?}"),
            }
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
    assert_eq!(
        routes, in_code,
        "template routes = code routes (= openapi.yaml, checked above)"
    );
    assert_eq!(
        template["Resources"]["ArtifactApi"]["Properties"]["Auth"]["DefaultAuthorizer"].as_str(),
        Some("AWS_IAM")
    );
}

/// What each function's operation calls, and so all the IAM actions it may
/// hold (resources: the table, the bucket, or the store / staging prefixes).
fn needs(package: &str) -> BTreeSet<(&'static str, &'static str)> {
    const T: &str = "ArtifactTable.Arn";
    const B: &str = "ArtifactBucket.Arn";
    const STORE: &str = "${ArtifactBucket.Arn}/${S3Prefix}/*";
    const STAGING: &str = "${ArtifactBucket.Arn}/${S3Prefix}.uploads/*";
    let read_version = [
        ("s3:GetObject", STORE),
        ("s3:GetObjectVersion", STORE),
        ("dynamodb:GetItem", T),
    ];
    let list: Vec<(&str, &str)> = match package {
        "list-artifacts" => vec![("s3:ListBucket", B)],
        "start-upload" => vec![("s3:PutObject", STAGING)],
        "commit-upload" => vec![
            ("dynamodb:GetItem", T),
            ("dynamodb:Query", T),
            ("dynamodb:UpdateItem", T),
            ("s3:GetObject", STAGING),
            ("s3:GetObjectVersion", STAGING),
            ("s3:DeleteObjectVersion", STAGING),
            ("s3:PutObject", STORE),
        ],
        "list-versions" | "list-aliases" => vec![("dynamodb:Query", T)],
        "publish-version" => vec![
            ("dynamodb:GetItem", T),
            ("dynamodb:PutItem", T),
            ("dynamodb:Query", T),
            ("dynamodb:UpdateItem", T),
            ("s3:GetObject", STORE),
            ("s3:GetObjectVersion", STORE),
            ("s3:PutObject", STORE),
            ("s3:DeleteObjectVersion", STORE),
        ],
        "get-version" | "get-version-content" => read_version.to_vec(),
        "delete-version" => vec![
            ("dynamodb:GetItem", T),
            ("dynamodb:Query", T),
            ("dynamodb:UpdateItem", T),
        ],
        "purge-artifact" => vec![
            ("dynamodb:BatchWriteItem", T),
            ("dynamodb:Query", T),
            ("s3:ListBucketVersions", B),
            ("s3:DeleteObjectVersion", STORE),
            ("s3:DeleteObjectVersion", STAGING),
        ],
        "apply-retention" => vec![("dynamodb:Query", T), ("dynamodb:UpdateItem", T)],
        "put-alias" => vec![
            ("dynamodb:BatchGetItem", T),
            ("dynamodb:ConditionCheckItem", T),
            ("dynamodb:PutItem", T),
            ("dynamodb:UpdateItem", T),
        ],
        "get-alias" => vec![("dynamodb:GetItem", T)],
        "delete-alias" => vec![
            ("dynamodb:ConditionCheckItem", T),
            ("dynamodb:DeleteItem", T),
            ("dynamodb:GetItem", T),
            ("dynamodb:UpdateItem", T),
        ],
        "resolve-alias" => [read_version.to_vec(), vec![("dynamodb:BatchGetItem", T)]].concat(),
        "scheduled-purge" => vec![
            ("dynamodb:DeleteItem", T),
            ("dynamodb:GetItem", T),
            ("dynamodb:PutItem", T),
            ("dynamodb:Query", T),
            ("dynamodb:UpdateItem", T),
            ("s3:ListBucket", B),
            ("s3:ListBucketVersions", B),
            ("s3:DeleteObjectVersion", STORE),
        ],
        other => panic!("no IAM needs recorded for {other}"),
    };
    list.into_iter().collect()
}

/// Functions that only read: no write or delete action may appear.
const READ_ONLY: [&str; 7] = [
    "list-artifacts",
    "list-versions",
    "get-version",
    "get-version-content",
    "list-aliases",
    "get-alias",
    "resolve-alias",
];

#[test]
fn every_function_holds_exactly_the_iam_actions_its_operation_needs() {
    let template = load("template.yaml");
    for package in function_packages() {
        let function = &template["Resources"][logical_id(&package).as_str()];
        let mut granted = BTreeSet::new();
        for policy in function["Properties"]["Policies"].as_vec().unwrap() {
            let statements = policy["Statement"]
                .as_vec()
                .unwrap_or_else(|| panic!("{package}: inline statements only"));
            for statement in statements {
                assert_eq!(statement["Effect"].as_str(), Some("Allow"));
                let resource = statement["Resource"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{package}: one resource per statement"));
                assert!(
                    !resource.contains('*') || resource.ends_with("/*"),
                    "{package}: wildcard resource {resource}"
                );
                for action in statement["Action"].as_vec().unwrap() {
                    let action = action.as_str().unwrap();
                    assert!(!action.contains('*'), "{package}: wildcard action {action}");
                    granted.insert((action.to_owned(), resource.to_owned()));
                }
            }
        }
        let needed: BTreeSet<(String, String)> = needs(&package)
            .into_iter()
            .map(|(a, r)| (a.to_owned(), r.to_owned()))
            .collect();
        let wider: Vec<_> = granted.difference(&needed).collect();
        let narrower: Vec<_> = needed.difference(&granted).collect();
        assert!(
            wider.is_empty(),
            "{package} holds more than it needs: {wider:?}"
        );
        assert!(narrower.is_empty(), "{package} lacks: {narrower:?}");
        if READ_ONLY.contains(&package.as_str()) {
            for (action, _) in &granted {
                let read = ["Get", "List", "Query", "BatchGetItem"].iter().any(|verb| {
                    action
                        .split(':')
                        .nth(1)
                        .is_some_and(|a| a.starts_with(verb) || a == *verb)
                });
                assert!(read, "read-only {package} holds {action}");
            }
        }
    }
}
