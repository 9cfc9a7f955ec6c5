//! The API contract in one place: the route table in code and `openapi.yaml`
//! must describe the same routes, operation ids (= function names) and
//! success statuses, and every error code the code can produce is documented.

use std::collections::BTreeSet;

use shared::api::ROUTES;
use shared::model::LOCAL_ACTOR;
use test_support::workspace_root;
use yaml_rust2::{Yaml, YamlLoader};

fn load(file: &str) -> Yaml {
    let text = std::fs::read_to_string(workspace_root().join(file)).unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
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
            let success = ROUTES
                .iter()
                .find(|r| r.function == id)
                .map_or(0, |r| r.success)
                .to_string();
            assert!(
                responses.contains_key(&Yaml::String(success.clone())),
                "{id} documents its success status {success}"
            );
            documented.insert((method.to_uppercase(), path.as_str().unwrap().to_owned(), id));
        }
    }
    let in_code = routes_in_code();
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
        Error::RolloutNotFound {
            name: String::new(),
            alias: String::new(),
            id: String::new(),
        },
        Error::RolloutInProgress {
            name: String::new(),
            alias: String::new(),
            id: String::new(),
        },
        Error::RolloutConflict(String::new()),
        Error::ConcurrentModification(String::new()),
        Error::AliasModified {
            name: String::new(),
            alias: String::new(),
            detail: String::new(),
        },
        Error::TargetGone(String::new()),
        Error::NothingToRollBack(String::new()),
        Error::UploadMismatch(String::new()),
        Error::TooLarge(String::new()),
        Error::Throttled {
            operation: "x",
            source: boxed(),
        },
        Error::UpstreamError {
            operation: "x",
            source: boxed(),
        },
        Error::internal("x", "x"),
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

/// The functions that no route serves, and the module whose `serve` each runs.
const BACKGROUND_FUNCTIONS: [(&str, &str); 5] = [
    ("verify-upload", "verifier"),
    ("scheduled-purge", "scheduled"),
    ("rollout-driver", "rollout_driver"),
    ("mirror-seed-layout", "mirror"),
    ("publish-events", "events"),
];

// Every function's `main` is the one call that serves its handler and
// nothing else (doc comments aside): the handlers are what the tests run.
// `make test` lints while it builds the tests, which never build these 33
// binaries; this holds them to a shape with nothing left to lint.
#[test]
fn every_function_main_is_the_one_call_that_serves_its_handler() {
    for package in function_packages() {
        let path = workspace_root().join(format!("functions/{package}/src/main.rs"));
        let source = std::fs::read_to_string(&path).unwrap();
        let code: Vec<&str> = source
            .lines()
            .filter(|l| !l.starts_with("//!") && !l.trim().is_empty())
            .collect();
        let (error, call) = match ROUTES.iter().find(|r| r.function == package) {
            Some(route) => (
                "lambda_http",
                format!(
                    "shared::api::serve(shared::api::Operation::{:?}).await",
                    route.operation
                ),
            ),
            None => {
                let module = BACKGROUND_FUNCTIONS
                    .iter()
                    .find(|(f, _)| *f == package)
                    .map(|(_, m)| *m)
                    .unwrap_or_else(|| {
                        panic!("{package}: neither routed nor a background function")
                    });
                ("lambda_runtime", format!("shared::{module}::serve().await"))
            }
        };
        let expected = [
            "#[tokio::main]".to_owned(),
            format!("async fn main() -> Result<(), {error}::Error> {{"),
            format!("    {call}"),
            "}".to_owned(),
        ];
        assert_eq!(code, expected, "{}", path.display());
    }
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
        let Some(events) = function["Properties"]["Events"].as_hash() else {
            // Invoked by commit-upload (and by itself), not by an event source.
            assert_eq!(package, "verify-upload", "{package} has no events");
            continue;
        };
        for (_, event) in events {
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
                    let schedule = match package.as_str() {
                        "scheduled-purge" => "RetentionSchedule",
                        // Every minute: the driver's period (SPEC 10.1).
                        "rollout-driver" => "rate(1 minute)",
                        other => panic!("{other} is not scheduled"),
                    };
                    assert_eq!(event["Properties"]["Schedule"].as_str(), Some(schedule));
                }
                Some("DynamoDB") => {
                    assert!(
                        ["mirror-seed-layout", "publish-events"].contains(&package.as_str()),
                        "{package} reads the stream"
                    );
                    assert_eq!(
                        event["Properties"]["Stream"].as_str(),
                        Some("ArtifactTable.StreamArn")
                    );
                }
                other => panic!("{package}: unexpected event type {other:?}"),
            }
        }
    }
    let in_code = routes_in_code();
    assert_eq!(
        routes, in_code,
        "template routes = code routes (= openapi.yaml, checked above)"
    );
    assert_eq!(
        template["Resources"]["ArtifactApi"]["Properties"]["Auth"]["DefaultAuthorizer"].as_str(),
        Some("AWS_IAM")
    );
}

/// The S3 keys a call acts on: the store (`{prefix}/…`, the library's
/// layout) or the blob store beside it (`{prefix}.blobs/…`).
#[derive(Debug, Clone, Copy)]
enum Keys {
    Store,
    Blobs,
}

impl Keys {
    /// The object resource the template grants object actions on.
    fn objects(self) -> &'static str {
        match self {
            Keys::Store => "${ArtifactBucket.Arn}/${S3Prefix}/*",
            Keys::Blobs => "${ArtifactBucket.Arn}/${S3Prefix}.blobs/*",
        }
    }

    /// The `s3:prefix` a bucket-level grant is scoped to (`StringLike`).
    fn prefix(self) -> &'static str {
        match self {
            Keys::Store => "${S3Prefix}/*",
            Keys::Blobs => "${S3Prefix}.blobs/*",
        }
    }
}

/// Which object version an S3 call addresses.
#[derive(Debug, Clone, Copy)]
enum At {
    /// Always a `versionId` (taken from a response of the same bucket).
    Version,
    /// The pinned `versionId` when the row has one (rows the library wrote
    /// have none), else the current version.
    PinnedOrCurrent,
    /// Always the current version (a content-addressed blob: every version
    /// holds the same bytes).
    Current,
}

/// One item of a `TransactWriteItems`.
#[derive(Debug, Clone, Copy)]
enum TxItem {
    ConditionCheck,
    Put,
    Update,
    Delete,
}

/// An AWS API call a function makes. DynamoDB calls all act on the table.
/// A presigned URL counts as the call it signs: S3 authorizes it as the
/// function's role when the client uses it.
#[derive(Debug, Clone, Copy)]
enum Call {
    GetItem,
    BatchGetItem,
    Query,
    PutItem,
    UpdateItem,
    DeleteItem,
    BatchWriteItem,
    TransactWriteItems(&'static [TxItem]),
    ListObjectsV2(Keys),
    ListObjectVersions(Keys),
    HeadObject(Keys, At),
    GetObject(Keys, At),
    PutObject(Keys),
    CopyObject {
        from: Keys,
        at: At,
        to: Keys,
    },
    DeleteObject(Keys, At),
    DeleteObjects(Keys, At),
    CreateMultipartUpload(Keys),
    UploadPartCopy {
        from: Keys,
        at: At,
        to: Keys,
    },
    CompleteMultipartUpload(Keys),
    AbortMultipartUpload(Keys),
    ListParts(Keys),
    /// A part of a multipart upload (presigned for the client).
    UploadPart(Keys),
    /// An on-failure destination (of a stream event source mapping, or of
    /// asynchronous invocations): Lambda sends to it with the function's
    /// role.
    SendMessage(&'static str),
    /// An invocation of a function of the stack, by its ARN.
    Invoke(&'static str),
    /// CloudWatch alarm states (the rollout driver), of the alarms the
    /// deployment lets rollouts watch.
    DescribeAlarms,
    /// Events onto the deployment's bus.
    PutEvents,
    /// A Query of one of the table's indexes, by name (the recorded
    /// operation is `Query`).
    QueryIndex(&'static str),
    /// The tags of a caller's role or user (permission targets naming
    /// `tag:KEY=VALUE`), in the deployment's account.
    ListRoleTags,
    ListUserTags,
}

/// The alarms rollouts may watch: those named with the deployment's prefix.
const ALARMS: &str = "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:${RolloutAlarmPrefix}*";
/// The bus events go to.
const BUS: &str =
    "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${EventBusName}";

/// The name `verify-upload` is deployed under (`FunctionName`): a name, not
/// a reference, so that its own policy can name it (it invokes itself).
const VERIFY_FUNCTION: &str = "${AWS::StackName}-verify-upload";
/// Its ARN, as the policies that invoke it name it.
const VERIFY_FUNCTION_ARN: &str = "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${AWS::StackName}-verify-upload";

/// An IAM grant: action, resource, and the `s3:prefix` it is scoped to.
type Grant = (String, String, Option<String>);

const TABLE: &str = "ArtifactTable.Arn";
const BUCKET: &str = "ArtifactBucket.Arn";

/// The IAM actions one AWS call needs — the one place that knows them.
///
/// Reading a key that may be missing also needs `s3:ListBucket`: "If the
/// object you request doesn't exist, the error that Amazon S3 returns depends
/// on whether you also have the s3:ListBucket permission. If you have the
/// s3:ListBucket permission on the bucket, Amazon S3 returns an HTTP status
/// code 404 Not Found error. If you don't have the s3:ListBucket permission,
/// Amazon S3 returns an HTTP status code 403 Forbidden error."
/// (<https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html> and
/// `API_GetObject.html`, "Permissions"). Without it a retried commit, or one
/// with an unknown upload id, becomes a 502 instead of its answer or a 404.
/// S3 evaluates that implicit check with the object key as `s3:prefix` (not
/// spelled out in the API reference; Ceph RGW copied the behaviour in
/// ceph/ceph#68577), so a grant scoped to the prefixes the function reads is
/// enough. A copy reads
/// its source like a GetObject (`s3:GetObject`, `s3:GetObjectVersion` with a
/// `versionId`) and writes its destination (`s3:PutObject`, API_CopyObject).
/// `TransactWriteItems` and `BatchWriteItem` need the action of each item
/// (DynamoDB API permissions reference); `DeleteObjects` needs the delete
/// action of each object (API_DeleteObjects).
fn iam_actions(call: Call) -> Vec<Grant> {
    let table = |action: &str| (format!("dynamodb:{action}"), TABLE.to_owned(), None);
    let object = |action: &str, keys: Keys| (action.to_owned(), keys.objects().to_owned(), None);
    let list = |action: &str, keys: Keys| {
        (
            action.to_owned(),
            BUCKET.to_owned(),
            Some(keys.prefix().to_owned()),
        )
    };
    let versions = |keys: Keys, at: At, current: &str, version: &str| match at {
        At::Version => vec![object(version, keys)],
        At::PinnedOrCurrent => vec![object(current, keys), object(version, keys)],
        At::Current => vec![object(current, keys)],
    };
    let read = |keys: Keys, at: At| {
        let mut grants = versions(keys, at, "s3:GetObject", "s3:GetObjectVersion");
        grants.push(list("s3:ListBucket", keys));
        grants
    };
    match call {
        Call::GetItem => vec![table("GetItem")],
        Call::BatchGetItem => vec![table("BatchGetItem")],
        Call::Query => vec![table("Query")],
        Call::QueryIndex(index) => vec![(
            "dynamodb:Query".to_owned(),
            format!("${{ArtifactTable.Arn}}/index/{index}"),
            None,
        )],
        Call::PutItem => vec![table("PutItem")],
        Call::UpdateItem => vec![table("UpdateItem")],
        Call::DeleteItem => vec![table("DeleteItem")],
        Call::BatchWriteItem => vec![table("BatchWriteItem")],
        Call::TransactWriteItems(items) => items
            .iter()
            .map(|item| {
                table(match item {
                    TxItem::ConditionCheck => "ConditionCheckItem",
                    TxItem::Put => "PutItem",
                    TxItem::Update => "UpdateItem",
                    TxItem::Delete => "DeleteItem",
                })
            })
            .collect(),
        Call::ListObjectsV2(keys) => vec![list("s3:ListBucket", keys)],
        Call::ListObjectVersions(keys) => vec![list("s3:ListBucketVersions", keys)],
        Call::HeadObject(keys, at) | Call::GetObject(keys, at) => read(keys, at),
        Call::PutObject(keys) => vec![object("s3:PutObject", keys)],
        // A part copy reads its source and writes its upload, which
        // CreateMultipartUpload and CompleteMultipartUpload authorize as
        // s3:PutObject (API_UploadPartCopy, API_CreateMultipartUpload).
        Call::CopyObject { from, at, to } | Call::UploadPartCopy { from, at, to } => {
            let mut grants = read(from, at);
            grants.push(object("s3:PutObject", to));
            grants
        }
        // UploadPart too: S3 authorizes a part as s3:PutObject on the
        // object (API_UploadPart, "Permissions").
        Call::CreateMultipartUpload(keys)
        | Call::CompleteMultipartUpload(keys)
        | Call::UploadPart(keys) => {
            vec![object("s3:PutObject", keys)]
        }
        Call::AbortMultipartUpload(keys) => vec![object("s3:AbortMultipartUpload", keys)],
        // API_ListParts: s3:ListMultipartUploadParts, on the object.
        Call::ListParts(keys) => vec![object("s3:ListMultipartUploadParts", keys)],
        Call::SendMessage(queue) => vec![("sqs:SendMessage".to_owned(), queue.to_owned(), None)],
        Call::Invoke(function) => vec![(
            "lambda:InvokeFunction".to_owned(),
            function.to_owned(),
            None,
        )],
        // DescribeAlarms authorizes each alarm it answers by its ARN
        // (Service Authorization Reference, Amazon CloudWatch: resource
        // type `alarm`); PutEvents the bus it puts on (`event-bus`).
        Call::DescribeAlarms => vec![(
            "cloudwatch:DescribeAlarms".to_owned(),
            ALARMS.to_owned(),
            None,
        )],
        Call::PutEvents => vec![("events:PutEvents".to_owned(), BUS.to_owned(), None)],
        // Service Authorization Reference, IAM: ListRoleTags acts on `role`,
        // ListUserTags on `user` resources.
        Call::ListRoleTags => vec![(
            "iam:ListRoleTags".to_owned(),
            "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/*".to_owned(),
            None,
        )],
        Call::ListUserTags => vec![(
            "iam:ListUserTags".to_owned(),
            "arn:${AWS::Partition}:iam::${AWS::AccountId}:user/*".to_owned(),
            None,
        )],
        Call::DeleteObject(keys, at) | Call::DeleteObjects(keys, at) => {
            versions(keys, at, "s3:DeleteObject", "s3:DeleteObjectVersion")
        }
    }
}

/// The AWS calls each function makes (the `AWS calls:` of the repository
/// methods its handler reaches). Its IAM grants are derived from these.
fn calls(package: &str) -> Vec<Call> {
    let mut calls = operation_calls(package);
    // Every route reads the permission targets first (SPEC 10.4), and the
    // caller's tags when a target names one; a route whose reads go beside
    // that read sends it in one BatchGetItem with its own gets
    // (`artifact_store::coalesce`).
    if let Some(route) = shared::api::ROUTES.iter().find(|r| r.function == package) {
        let beside = route.operation.reads_beside_authorization()
            || route.operation.writes_after_authorization();
        for read in [Call::GetItem, Call::BatchGetItem] {
            let declared = calls
                .iter()
                .any(|c| std::mem::discriminant(c) == std::mem::discriminant(&read));
            if !declared && (beside || matches!(read, Call::GetItem)) {
                calls.push(read);
            }
        }
        calls.extend([Call::ListRoleTags, Call::ListUserTags]);
    }
    calls
}

fn operation_calls(package: &str) -> Vec<Call> {
    use Call::*;
    use Keys::{Blobs, Store};
    use TxItem::{ConditionCheck, Delete, Put, Update};
    // A presigned download: the blob (every version of its key holds the
    // same bytes), or the library's key for rows the library or the
    // previous release wrote (pinned to an object version when recorded).
    let download = [
        GetObject(Blobs, At::Current),
        GetObject(Store, At::PinnedOrCurrent),
    ];
    // Adopting a LATEST whose bytes are at the library's key into the blob
    // store: one copy (the library writes single PUTs, at most 5 GiB), other
    // bytes found there removed again, then LATEST is marked.
    let adopt = [
        // Does the blob store hold the bytes already (a multipart blob: its
        // verified record)? Else the library's current object, pinned.
        HeadObject(Blobs, At::Current),
        HeadObject(Store, At::Current),
        GetItem,
        CopyObject {
            from: Store,
            at: At::PinnedOrCurrent,
            to: Blobs,
        },
        DeleteObject(Blobs, At::Version),
        // LATEST marked adopted, behind the purge fence and while no
        // reclaim deletes the blob.
        TransactWriteItems(&[Update, ConditionCheck]),
    ];
    // Reclaim: the library's objects of rows without a blob; a blob behind
    // its condemned item (put, taken down when still referenced, stamped).
    let reclaim = [
        Query,
        UpdateItem,
        TransactWriteItems(&[ConditionCheck, Update]),
        PutItem,
        DeleteItem,
        ListObjectVersions(Store),
        DeleteObjects(Store, At::Version),
        ListObjectVersions(Blobs),
        DeleteObjects(Blobs, At::Version),
    ];
    // Purging: the fence first, then LATEST, the partitions, the bytes.
    let purge = [
        PutItem,
        // The fence, renewed before every step.
        UpdateItem,
        // LATEST read (with the artifact's event log: a mark is reused
        // only while no change was logged after it), marked purged with
        // the event in the event log, then deleted while so marked.
        GetItem,
        BatchGetItem,
        TransactWriteItems(&[Update]),
        DeleteItem,
        Query,
        BatchWriteItem,
        ListObjectVersions(Store),
        ListObjectVersions(Blobs),
        DeleteObjects(Store, At::Version),
        DeleteObjects(Blobs, At::Version),
        // Multipart uploads in progress are aborted before the blobs go.
        AbortMultipartUpload(Blobs),
        // The library's objects of the purge's own second: kept unless
        // the mirror wrote them (HeadObject by version); rows landed
        // during the purge: kept only while their object is there.
        HeadObject(Store, At::PinnedOrCurrent),
        HeadObject(Blobs, At::Current),
    ];
    // Publishing LATEST: the number, the version row (LATEST unchanged, the
    // blob not condemned); unchanged LATEST reads the version it was
    // published as (or the newest, for the library's rows).
    let publish = [
        vec![
            UpdateItem,
            GetItem,
            Query,
            TransactWriteItems(&[Put, ConditionCheck]),
        ],
        adopt.to_vec(),
    ]
    .concat();
    // Alias changes: the alias row, its history entry and the version
    // rows' references in one transaction; the history is queried for the
    // last revision and read back to recognise a landed write.
    let alias_change = [
        BatchGetItem,
        GetItem,
        Query,
        TransactWriteItems(&[Put, Update, ConditionCheck]),
    ];
    // A change by hand may cancel the rollout holding the alias (SPEC
    // 10.1): its item updated, its registry entry deleted, in the same
    // transaction.
    let alias_change_cancelling = [
        BatchGetItem,
        GetItem,
        Query,
        TransactWriteItems(&[Put, Update, ConditionCheck, Delete]),
    ];
    // A rollout's own alias changes: its item and its registry entry
    // written (or deleted) with the alias.
    let rollout_change = [
        GetItem,
        BatchGetItem,
        Query,
        TransactWriteItems(&[Put, Update, ConditionCheck, Delete]),
    ];
    // The one-request pipeline (SPEC 4.1): after a commit, a publish and an
    // alias move.
    let pipeline = [publish.clone(), alias_change.to_vec()].concat();
    // A single PUT's commit: the blob ∥ the upload and LATEST rows, then one
    // transaction; onto a LATEST the library wrote, the highest version first.
    let commit = [
        HeadObject(Blobs, At::Current),
        BatchGetItem,
        GetItem,
        Query,
        TransactWriteItems(&[Update, ConditionCheck, Put]),
    ];
    match package {
        // The registry of names beside the library's listing.
        "list-artifacts" => vec![Query, ListObjectsV2(Store)],
        // Does the artifact hold the bytes? ∥ the pending-upload row, behind
        // the purge fence and the blob's condemned item; the PUT it signs.
        // Multipart: the S3 side of the upload, given up when the bytes are
        // there.
        // With `commit`, bytes the artifact holds are committed at once, then
        // published and aliased.
        "start-upload" => [
            vec![
                HeadObject(Blobs, At::Current),
                // The verified record of a multipart blob.
                GetItem,
                TransactWriteItems(&[ConditionCheck, Put]),
                PutObject(Blobs),
                CreateMultipartUpload(Blobs),
                AbortMultipartUpload(Blobs),
            ],
            commit.to_vec(),
            pipeline.clone(),
        ]
        .concat(),
        // The upload row; a pending multipart upload's parts.
        // (A verification stalled is asked for again.)
        "get-upload" => vec![GetItem, ListParts(Blobs), Invoke(VERIFY_FUNCTION_ARN)],
        // The upload row; the parts it signs.
        "get-upload-parts" => vec![GetItem, UploadPart(Blobs)],
        // The blob ∥ the upload and LATEST rows, then one transaction: the
        // upload committed, LATEST, the registry entry, the blob not
        // condemned. Onto a LATEST the library wrote (no counter), the
        // highest version first. Multipart: the parts, the upload completed
        // (or given up when the key holds the bytes already), the row
        // `verifying`, and verify-upload invoked.
        // (GetItem: the verified record of a multipart blob; the upload
        // that wrote an unverified one.) Then the pipeline, when asked.
        "commit-upload" => [
            commit.to_vec(),
            vec![
                ListParts(Blobs),
                CompleteMultipartUpload(Blobs),
                AbortMultipartUpload(Blobs),
                UpdateItem,
                Invoke(VERIFY_FUNCTION_ARN),
            ],
            pipeline.clone(),
        ]
        .concat(),
        "list-versions" | "list-aliases" => vec![Query],
        // The number, then the version row with LATEST unchanged and the
        // blob not condemned; unchanged LATEST reads the version it was
        // published as (or the newest, for the library's rows).
        // A LATEST of the library above `ADOPT_COPY_MAX_BYTES` is adopted
        // in the background: a multipart upload of the same bytes (the
        // blob's HeadObject ∥ CreateMultipartUpload, its row behind the
        // purge fence), recorded on LATEST, its parts copied by S3 from
        // the pinned library object, committed, and handed to verify-upload.
        "publish-version" => [
            publish.clone(),
            vec![
                TransactWriteItems(&[ConditionCheck, Put]),
                CreateMultipartUpload(Blobs),
                AbortMultipartUpload(Blobs),
                HeadObject(Store, At::PinnedOrCurrent),
                UploadPartCopy {
                    from: Store,
                    at: At::PinnedOrCurrent,
                    to: Blobs,
                },
                ListParts(Blobs),
                CompleteMultipartUpload(Blobs),
                Invoke(VERIFY_FUNCTION_ARN),
            ],
        ]
        .concat(),
        "get-version" | "get-version-content" => [vec![GetItem], download.to_vec()].concat(),
        // Stale alias references are cleaned in a transaction that checks the
        // alias rows and updates the version row.
        // The soft delete and its event in the artifact's event log, one
        // transaction; stale alias references cleaned in another.
        "delete-version" => vec![
            GetItem,
            Query,
            TransactWriteItems(&[ConditionCheck, Update]),
        ],
        "purge-artifact" => purge.to_vec(),
        "apply-retention" => vec![
            GetItem,
            Query,
            TransactWriteItems(&[ConditionCheck, Update]),
        ],
        // Alias changes: the alias row, its history entry and the version
        // rows' references in one transaction; the history is queried for
        // the last revision and read back to recognise a landed write.
        "put-alias" | "rollback-alias" => alias_change_cancelling.to_vec(),
        // The alias row, the registry entry and the alarms it watches,
        // then the rollout's first change (an orphaned rollout's end first).
        "start-rollout" => [rollout_change.to_vec(), vec![DescribeAlarms]].concat(),
        "list-rollouts" => vec![Query],
        "get-rollout" => vec![GetItem],
        // Pause and resume rewrite the rollout item alone; abort and
        // promote are rollout changes.
        "control-rollout" => [rollout_change.to_vec(), vec![PutItem]].concat(),
        // The registry of held aliases, each rollout, the alarms; then the
        // due changes; entries of rollouts gone (purged) or over dropped.
        // A failed pass is the next minute's to retry: no queue.
        "rollout-driver" => [rollout_change.to_vec(), vec![DescribeAlarms, DeleteItem]].concat(),
        // Events from the records' images: no read; batches given up on
        // go to the queue.
        "publish-events" => vec![PutEvents, SendMessage("EventsFailuresQueue.Arn")],
        // The row's status and its history entry in one transaction, then
        // the row read back.
        // The aliases targeting the version get its status (resolve warns).
        "set-version-status" => vec![GetItem, TransactWriteItems(&[Update, Put]), UpdateItem],
        // One index Query per page (by content the table's by-sha256 index,
        // by metadata an index partition), then the rows, read back.
        "search-versions" => vec![Query, QueryIndex("by-sha256"), BatchGetItem],
        // The targets' item (read by every route), replaced with its
        // history entry in one transaction; the history queried (for its
        // newest entry when the item was deleted by hand).
        "get-access" => vec![GetItem],
        "put-access" => vec![GetItem, Query, TransactWriteItems(&[Put])],
        "get-access-history" => vec![GetItem, Query],
        "get-alias" | "get-alias-history" => vec![GetItem, Query],
        "delete-alias" => alias_change_cancelling.to_vec(),
        "resolve-alias" => [vec![BatchGetItem, GetItem], download.to_vec()].concat(),
        // Names from the registry and the library's listing; its
        // bookkeeping row (cursor, failures, lease) takes conditional
        // UpdateItems only; retention, then reclaim. Runs Lambda gives up
        // on go to the queue.
        // A purge that stopped part-way (the library's, or one cut off) is
        // finished as purge-artifact runs it.
        "scheduled-purge" => [
            vec![GetItem, ListObjectsV2(Store)],
            reclaim.to_vec(),
            purge.to_vec(),
            vec![SendMessage("ScheduledPurgeFailuresQueue.Arn")],
        ]
        .concat(),
        // Rows are re-read; a blob is copied to the library key (in parts
        // above 5 GiB); purged and reclaimed rows lose their library
        // objects, version by version.
        "mirror-seed-layout" => vec![
            GetItem,
            HeadObject(Store, At::PinnedOrCurrent),
            CopyObject {
                from: Blobs,
                at: At::Current,
                to: Store,
            },
            CreateMultipartUpload(Store),
            UploadPartCopy {
                from: Blobs,
                at: At::Current,
                to: Store,
            },
            CompleteMultipartUpload(Store),
            AbortMultipartUpload(Store),
            ListObjectVersions(Store),
            DeleteObject(Store, At::Version),
            SendMessage("MirrorFailuresQueue.Arn"),
        ],
        // The upload row; ranged GETs of the completed object version; a
        // checkpoint (UpdateItem) and the next invocation of itself; at the
        // end commit's own reads and transaction, or the upload failed
        // (UpdateItem) and that object version deleted. Invocations given
        // up on go to the queue.
        // Then the pipeline the upload was committed with.
        "verify-upload" => [
            vec![
                GetItem,
                GetObject(Blobs, At::Version),
                UpdateItem,
                Invoke(VERIFY_FUNCTION_ARN),
                BatchGetItem,
                Query,
                TransactWriteItems(&[Update, ConditionCheck, Put]),
                DeleteObject(Blobs, At::Version),
                SendMessage("VerifyFailuresQueue.Arn"),
            ],
            pipeline,
        ]
        .concat(),
        other => panic!("no AWS calls recorded for {other}"),
    }
}

/// The list above is declared, so it is checked against what each handler
/// really sends: every sample event runs through its handler on a repository
/// that records the AWS operations it calls or presigns, and each must be one
/// the function's grants are derived from. A call added to the code without
/// its IAM would fail here, not as AccessDenied on AWS.
#[tokio::test]
async fn every_aws_call_a_handler_makes_is_one_its_iam_is_derived_from() {
    for route in ROUTES {
        let run = test_support::run_sample_event(route).await;
        assert_calls_declared(route.function, &run.repo);
    }
}

/// Every AWS operation `repo` called or presigned is one of the calls the
/// IAM of `function` is derived from.
fn assert_calls_declared(function: &str, repo: &shared::Repository) {
    let declared: BTreeSet<String> = calls(function)
        .iter()
        .map(|call| {
            format!("{call:?}")
                .split(|c: char| !c.is_ascii_alphanumeric())
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let made = repo.operations();
    assert!(!made.is_empty(), "{function}: no AWS call recorded");
    let undeclared: Vec<&String> = made.difference(&declared).collect();
    assert!(
        undeclared.is_empty(),
        "{function} calls {undeclared:?}, which its IAM is not derived from"
    );
}

/// The same check for the functions that are not routes: the stream's
/// mirror (its sample event copies a blob and deletes a purged row's
/// object), the schedule's retention pass, and the verification of a
/// multipart upload (its sample event verifies and commits one).
#[tokio::test]
async fn every_aws_call_a_non_http_handler_makes_is_one_its_iam_is_derived_from() {
    let mirror = test_support::run_mirror_sample_event().await;
    let verify = test_support::run_verify_sample_event().await;
    // The schedule's pass over the sample artifact, and over one whose
    // rows a purge left (LATEST gone, the rest there): it finishes it.
    let scheduled_pass = |purged: bool| async move {
        let store = test_support::TestStore::with_sample_artifact().await;
        if purged {
            store.delete_raw_key("my-app", "LATEST").await;
        }
        let repo = store.another_repository();
        let text =
            std::fs::read_to_string(workspace_root().join("events/scheduled-purge.json")).unwrap();
        let mut context = lambda_runtime::Context::default();
        context.deadline = (std::time::SystemTime::now() + std::time::Duration::from_secs(60))
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let event = lambda_runtime::LambdaEvent::new(serde_json::from_str(&text).unwrap(), context);
        let summary = shared::scheduled::handle_event(&repo, repo.retention(), event)
            .await
            .unwrap();
        assert_eq!(summary.purges_finished, u64::from(purged), "{summary:?}");
        repo
    };
    let scheduled = scheduled_pass(false).await;
    let finishing = scheduled_pass(true).await;
    // The driver's sample pass finds the sample rollout, whose alarm has
    // gone into ALARM since it started: it aborts it.
    let driver = {
        let store = test_support::TestStore::with_sample_artifact().await;
        let alarm = format!("contract-{}", &store.config.table[5..]);
        store.alarm(&alarm, "OK").await;
        store
            .repo
            .start_rollout(
                &test_support::name("my-app"),
                &"prod".parse().unwrap(),
                shared::model::RolloutRequest {
                    version: shared::Version::Number(2),
                    steps: shared::rollout::preset("canary-10-5m").unwrap(),
                    alarms: vec![alarm.clone()],
                    message: None,
                },
                "ci",
            )
            .await
            .unwrap();
        store.alarm(&alarm, "ALARM").await;
        let repo = store.another_repository();
        let driver = shared::rollout_driver::Driver::new(repo.clone(), &store.sdk);
        let text =
            std::fs::read_to_string(workspace_root().join("events/rollout-driver.json")).unwrap();
        let event = lambda_runtime::LambdaEvent::new(
            serde_json::from_str(&text).unwrap(),
            lambda_runtime::Context::default(),
        );
        let report = shared::rollout_driver::handle_event(&driver, event)
            .await
            .unwrap();
        assert_eq!(report.aborted, 1, "{report:?}");
        repo
    };
    // The events' sample batch onto the emulator's default bus.
    let events = {
        let store = test_support::TestStore::new().await;
        let repo = store.another_repository();
        let sink = shared::events::eventbridge_sink(&repo, &store.sdk, &store.config);
        let text =
            std::fs::read_to_string(workspace_root().join("events/publish-events.json")).unwrap();
        let event = lambda_runtime::LambdaEvent::new(
            serde_json::from_str(&text).unwrap(),
            lambda_runtime::Context::default(),
        );
        let response = shared::events::handle_event(&sink, event).await.unwrap();
        assert!(response.batch_item_failures.is_empty());
        repo
    };
    for (function, repo) in [
        ("mirror-seed-layout", &mirror.repo),
        ("scheduled-purge", &scheduled),
        ("scheduled-purge", &finishing),
        ("verify-upload", &verify.repo),
        ("rollout-driver", &driver),
        ("publish-events", &events),
    ] {
        assert_calls_declared(function, repo);
    }
    for operation in ["DescribeAlarms", "TransactWriteItems", "Query"] {
        assert!(driver.operations().contains(operation), "{operation}");
    }
    assert!(events.operations().contains("PutEvents"));
    for operation in ["BatchWriteItem", "DeleteObjects", "ListObjectVersions"] {
        assert!(
            finishing.operations().contains(operation),
            "the finished purge exercises {operation}"
        );
    }
    for operation in ["BatchGetItem", "GetItem", "GetObject", "TransactWriteItems"] {
        assert!(
            verify.repo.operations().contains(operation),
            "the verifier's sample event exercises {operation}"
        );
    }
    for operation in ["CopyObject", "DeleteObject", "GetItem", "HeadObject"] {
        assert!(
            mirror.repo.operations().contains(operation),
            "the mirror's sample event exercises {operation}"
        );
    }
}

/// The paths the sample events do not take, through the repository each
/// function's handler calls, each on a repository of its own that records
/// its calls: a multipart start (and one of bytes the artifact holds, whose
/// S3 upload is given up), its parts, its state, its commit, a failed
/// verification, and a commit onto a LATEST without a version counter (as
/// the library writes it).
#[tokio::test]
async fn the_multipart_paths_make_only_calls_their_iam_is_derived_from() {
    use shared::Verifier;
    use shared::model::{CommitOutcome, UploadRequest};
    use test_support::{name, send_parts, sha256_hex, start_multipart};
    let store = test_support::TestStore::new().await;
    let fresh = || store.another_repository().with_verifier(Verifier::Deferred);
    let n = name("big");
    let content = b"bytes in parts";

    let start = fresh();
    let (id, plan) = start_multipart(&start, &n, content).await;
    assert_calls_declared("start-upload", &start);
    assert!(start.operations().contains("CreateMultipartUpload"));

    let parts = fresh();
    send_parts(&parts, &store.http, &n, &id, content, &plan).await;
    assert_calls_declared("get-upload-parts", &parts);
    assert!(parts.operations().contains("UploadPart"));

    let state = fresh();
    let status = state.upload_state(&n, &id).await.unwrap();
    assert_eq!(status.parts_received, Some(vec![1]));
    assert_calls_declared("get-upload", &state);
    assert!(state.operations().contains("ListParts"));

    let commit = fresh();
    let outcome = commit.commit(&n, &id, "ci").await.unwrap();
    assert!(matches!(outcome, CommitOutcome::Verifying { .. }));
    assert_calls_declared("commit-upload", &commit);
    for operation in ["ListParts", "CompleteMultipartUpload", "UpdateItem"] {
        assert!(commit.operations().contains(operation), "{operation}");
    }

    let verify = fresh();
    let step = shared::verifier::handle(
        &verify,
        &shared::repository::VerifyRequest {
            name: n.to_string(),
            upload_id: id.clone(),
        },
        None,
    )
    .await
    .unwrap();
    assert!(matches!(step, shared::VerifyStep::Committed(_)), "{step:?}");
    assert_calls_declared("verify-upload", &verify);

    // Bytes the artifact holds (a single PUT put them there): a multipart
    // start gives its S3 side up.
    let held = name("held");
    store.upload(&held, content).await;
    let repo = fresh();
    let ticket = repo
        .create_upload(
            &held,
            UploadRequest {
                part_size: Some(shared::repository::MIN_PART_SIZE),
                ..test_support::declare(content)
            },
            LOCAL_ACTOR,
        )
        .await
        .unwrap();
    assert!(ticket.exists);
    assert_calls_declared("start-upload", &repo);
    assert!(repo.operations().contains("AbortMultipartUpload"));

    // A whole-object digest that is not the bytes': failed, bytes deleted.
    let liar = name("liar");
    let declared = sha256_hex(b"other bytes");
    let ticket = store
        .repo
        .create_upload(
            &liar,
            UploadRequest {
                sha256: declared,
                part_size: Some(shared::repository::MIN_PART_SIZE),
                ..test_support::declare(content)
            },
            LOCAL_ACTOR,
        )
        .await
        .unwrap();
    let plan = ticket.multipart.unwrap();
    send_parts(
        &store.repo,
        &store.http,
        &liar,
        &ticket.upload_id,
        content,
        &plan,
    )
    .await;
    fresh()
        .commit(&liar, &ticket.upload_id, "ci")
        .await
        .unwrap();
    let verify = fresh();
    let request = shared::repository::VerifyRequest {
        name: liar.to_string(),
        upload_id: ticket.upload_id.clone(),
    };
    let step = shared::verifier::handle(&verify, &request, None)
        .await
        .unwrap();
    assert!(
        matches!(step, shared::VerifyStep::Failed { .. }),
        "{step:?}"
    );
    assert_calls_declared("verify-upload", &verify);
    assert!(verify.operations().contains("DeleteObject"));

    // LATEST as the library leaves it (no counter): a commit, and a
    // verification, first read the highest version.
    for (function, multipart) in [("commit-upload", false), ("verify-upload", true)] {
        let app = name(&format!("library-{function}"));
        store
            .put_blob_row(&app, shared::Version::Latest, b"old", &[])
            .await;
        let repo = fresh();
        if multipart {
            let (id, plan) = start_multipart(&store.repo, &app, b"new").await;
            send_parts(&store.repo, &store.http, &app, &id, b"new", &plan).await;
            fresh().commit(&app, &id, "ci").await.unwrap();
            let request = shared::repository::VerifyRequest {
                name: app.to_string(),
                upload_id: id,
            };
            let step = shared::verifier::handle(&repo, &request, None)
                .await
                .unwrap();
            assert!(matches!(step, shared::VerifyStep::Committed(_)), "{step:?}");
        } else {
            let ticket = store
                .repo
                .create_upload(&app, test_support::declare(b"new"), LOCAL_ACTOR)
                .await
                .unwrap();
            test_support::put_bytes(&store.http, &ticket, b"new").await;
            repo.commit(&app, &ticket.upload_id, "ci").await.unwrap();
        }
        assert_calls_declared(function, &repo);
        assert!(repo.operations().contains("Query"), "{function}");
    }
}

/// verify-upload is invoked by commit-upload, by itself and by get-upload
/// (a stalled verification), asynchronously, under the name their policies
/// and their `VERIFY_FUNCTION_NAME`s give it;
/// Lambda retries a failed invocation and then keeps it in a queue.
#[test]
fn verify_upload_is_invoked_by_name_retried_and_kept_on_failure() {
    let template = load("template.yaml");
    let resources = &template["Resources"];
    let verify = &resources["VerifyUploadFunction"]["Properties"];
    assert_eq!(verify["FunctionName"].as_str(), Some(VERIFY_FUNCTION));
    assert_eq!(
        VERIFY_FUNCTION_ARN.strip_suffix(VERIFY_FUNCTION),
        Some("arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:"),
        "the ARN the policies name is the function's"
    );
    for caller in [
        "CommitUploadFunction",
        "VerifyUploadFunction",
        "GetUploadFunction",
    ] {
        assert_eq!(
            resources[caller]["Properties"]["Environment"]["Variables"]["VERIFY_FUNCTION_NAME"]
                .as_str(),
            Some(VERIFY_FUNCTION),
            "{caller}"
        );
    }
    // The deadline the handler keeps in hand fits in Lambda's longest timeout.
    assert_eq!(verify["Timeout"].as_i64(), Some(900));
    assert!(shared::verifier::DEADLINE_MARGIN.as_secs() < 900);
    assert!(verify["Events"].is_badvalue(), "no event source");
    let invoke = &verify["EventInvokeConfig"];
    assert_eq!(invoke["MaximumRetryAttempts"].as_i64(), Some(2));
    assert!(
        invoke["MaximumEventAgeInSeconds"]
            .as_i64()
            .is_some_and(|age| (60..=21_600).contains(&age))
    );
    let failure = &invoke["DestinationConfig"]["OnFailure"];
    assert_eq!(failure["Type"].as_str(), Some("SQS"));
    assert_eq!(
        failure["Destination"].as_str(),
        Some("VerifyFailuresQueue.Arn")
    );
    assert_eq!(
        resources["VerifyFailuresQueue"]["Type"].as_str(),
        Some("AWS::SQS::Queue")
    );
    // Only a deployment with a verifier hands multipart uploads on; the
    // functions that reach a multipart commit have one.
    let global = &template["Globals"]["Function"]["Environment"]["Variables"];
    assert!(global["VERIFY_FUNCTION_NAME"].is_badvalue());
}

#[test]
fn the_table_streams_both_images_to_the_mirror_and_expires_uploads_by_ttl() {
    let template = load("template.yaml");
    let table = &template["Resources"]["ArtifactTable"]["Properties"];
    assert_eq!(
        table["StreamSpecification"]["StreamViewType"].as_str(),
        Some("NEW_AND_OLD_IMAGES")
    );
    assert_eq!(
        table["TimeToLiveSpecification"]["AttributeName"].as_str(),
        Some("expires_at")
    );
    assert_eq!(
        table["TimeToLiveSpecification"]["Enabled"].as_bool(),
        Some(true)
    );
    let function = &template["Resources"]["MirrorSeedLayoutFunction"]["Properties"];
    assert_eq!(
        function["Environment"]["Variables"]["SEED_LAYOUT_MIRROR"].as_str(),
        Some("SeedLayoutMirror")
    );
    let parameter = &template["Parameters"]["SeedLayoutMirror"];
    assert_eq!(parameter["Default"].as_str(), Some("on"));
    let allowed: Vec<&str> = parameter["AllowedValues"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(allowed, ["on", "off"]);
    for value in allowed {
        let config = shared::config::Config::from_lookup(|k| match k {
            "BUCKET_NAME" => Some("ok-bucket".to_owned()),
            "SEED_LAYOUT_MIRROR" => Some(value.to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.seed_layout_mirror, value == "on");
    }
    let stream = &function["Events"]["Stream"]["Properties"];
    // Retried until done, in order per item, a failing record isolated and
    // reported by itself, given up on into a queue rather than blocking.
    assert_eq!(stream["StartingPosition"].as_str(), Some("TRIM_HORIZON"));
    assert_eq!(stream["ParallelizationFactor"].as_i64(), Some(1));
    assert_eq!(stream["MaximumBatchingWindowInSeconds"].as_i64(), Some(0));
    assert_eq!(stream["BisectBatchOnFunctionError"].as_bool(), Some(true));
    assert!(
        stream["MaximumRetryAttempts"]
            .as_i64()
            .is_some_and(|n| n > 0)
    );
    assert!(
        stream["MaximumRecordAgeInSeconds"]
            .as_i64()
            .is_some_and(|n| n > 0)
    );
    assert_eq!(
        stream["FunctionResponseTypes"][0].as_str(),
        Some("ReportBatchItemFailures")
    );
    assert_eq!(
        stream["DestinationConfig"]["OnFailure"]["Destination"].as_str(),
        Some("MirrorFailuresQueue.Arn")
    );
    let enabled = stream["Enabled"].as_vec().expect("an !If on the parameter");
    assert_eq!(enabled[0].as_str(), Some("MirrorOn"));
    assert_eq!(enabled[1].as_bool(), Some(true));
    assert_eq!(enabled[2].as_bool(), Some(false));
    let condition = template["Conditions"]["MirrorOn"].as_vec().unwrap();
    assert_eq!(condition[0].as_str(), Some("SeedLayoutMirror"));
    assert_eq!(condition[1].as_str(), Some("on"));
}

/// Functions that only read: no write or delete action may appear.
const READ_ONLY: [&str; 13] = [
    "get-access",
    "get-access-history",
    "get-upload",
    "list-rollouts",
    "get-rollout",
    "get-alias-history",
    "list-artifacts",
    "list-versions",
    "get-version",
    "get-version-content",
    "list-aliases",
    "get-alias",
    "resolve-alias",
];

/// Bucket-level actions: only ever granted scoped to the store's prefixes.
const BUCKET_LEVEL: [&str; 2] = ["s3:ListBucket", "s3:ListBucketVersions"];

/// The statements a function's handler acts with: its SAM `Policies`, or,
/// for a function with its own role (`Role: !GetAtt XRole.Arn`), that role's
/// policy named `data` (the role's `runtime` policy is what Lambda itself
/// does with the role, checked on its own).
fn data_statements<'a>(package: &str, template: &'a Yaml) -> Vec<&'a Yaml> {
    let function = &template["Resources"][logical_id(package).as_str()]["Properties"];
    if let Some(role) = function["Role"].as_str() {
        let role = role.strip_suffix(".Arn").expect("Role: !GetAtt <role>.Arn");
        assert!(
            function["Policies"].is_badvalue(),
            "{package}: Role and Policies"
        );
        let policies = template["Resources"][role]["Properties"]["Policies"]
            .as_vec()
            .unwrap_or_else(|| panic!("{package}: {role} has inline policies"));
        let data = policies
            .iter()
            .find(|p| p["PolicyName"].as_str() == Some("data"))
            .unwrap_or_else(|| panic!("{package}: {role} has a `data` policy"));
        return data["PolicyDocument"]["Statement"]
            .as_vec()
            .unwrap()
            .iter()
            .collect();
    }
    function["Policies"]
        .as_vec()
        .unwrap()
        .iter()
        .flat_map(|policy| {
            policy["Statement"]
                .as_vec()
                .unwrap_or_else(|| panic!("{package}: inline statements only"))
        })
        .collect()
}

/// What a function's inline policy statements grant, one entry per action,
/// resource and `s3:prefix`.
fn granted(package: &str, template: &Yaml) -> BTreeSet<Grant> {
    let mut granted = BTreeSet::new();
    for statement in data_statements(package, template) {
        // The Deny of the permission targets' keys: its own test below.
        if statement["Effect"].as_str() == Some("Deny") {
            continue;
        }
        assert_eq!(statement["Effect"].as_str(), Some("Allow"));
        let resource = statement["Resource"]
            .as_str()
            .unwrap_or_else(|| panic!("{package}: one resource per statement"));
        assert!(
            !resource.contains('*') || resource.ends_with("/*") || resource == ALARMS,
            "{package}: wildcard resource {resource}"
        );
        let prefixes: Vec<Option<String>> = match &statement["Condition"] {
            Yaml::BadValue => vec![None],
            condition => {
                let keys: Vec<&str> = condition
                    .as_hash()
                    .unwrap()
                    .keys()
                    .filter_map(Yaml::as_str)
                    .collect();
                assert_eq!(keys, ["StringLike"], "{package}: only s3:prefix conditions");
                let like = condition["StringLike"].as_hash().unwrap();
                assert_eq!(like.len(), 1, "{package}: only s3:prefix conditions");
                condition["StringLike"]["s3:prefix"]
                    .as_vec()
                    .unwrap_or_else(|| panic!("{package}: s3:prefix is a list"))
                    .iter()
                    .map(|p| Some(p.as_str().unwrap().to_owned()))
                    .collect()
            }
        };
        for action in statement["Action"].as_vec().unwrap() {
            let action = action.as_str().unwrap();
            assert!(!action.contains('*'), "{package}: wildcard action {action}");
            let bucket_level = BUCKET_LEVEL.contains(&action);
            for prefix in &prefixes {
                assert_eq!(
                    prefix.is_some(),
                    bucket_level,
                    "{package}: {action} must be scoped by s3:prefix exactly when it \
                     acts on the bucket"
                );
                granted.insert((action.to_owned(), resource.to_owned(), prefix.clone()));
            }
        }
    }
    granted
}

/// The permission targets are put-access's alone (SPEC 10.4): every other
/// function whose role writes the table carries the Deny of
/// `iam/access-targets-deny.json` (which `iam/outer-gate.test.mjs` evaluates
/// with a policy simulator) on the table, over exactly the keys of the
/// targets and their history; no other Deny is anywhere.
#[test]
fn every_role_writing_the_table_but_put_access_denies_writes_to_the_permission_targets() {
    let template = load("template.yaml");
    let text = std::fs::read_to_string(workspace_root().join("iam/access-targets-deny.json"))
        .expect("iam/access-targets-deny.json");
    let expected: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let keys = strings(&expected["Condition"]["ForAnyValue:StringEquals"]["dynamodb:LeadingKeys"]);
    assert_eq!(
        keys,
        [shared::layout::ACCESS_PK, shared::layout::ACCESS_HISTORY_PK]
    );
    let writes = strings(&expected["Action"]);
    let mut checked = 0;
    for package in function_packages() {
        let statements = data_statements(&package, &template);
        let writes_table = statements.iter().any(|s| {
            s["Effect"].as_str() == Some("Allow")
                && s["Resource"].as_str() == Some(TABLE)
                && s["Action"]
                    .as_vec()
                    .unwrap()
                    .iter()
                    .any(|a| writes.iter().any(|w| Some(w.as_str()) == a.as_str()))
        });
        let denies: Vec<&&Yaml> = statements
            .iter()
            .filter(|s| s["Effect"].as_str() == Some("Deny"))
            .collect();
        if package == "put-access" || !writes_table {
            assert!(denies.is_empty(), "{package}: a Deny it does not need");
            continue;
        }
        assert_eq!(
            denies.len(),
            1,
            "{package}: the Deny of the permission targets"
        );
        let deny = denies[0];
        assert_eq!(deny["Resource"].as_str(), Some(TABLE), "{package}");
        let yaml_strings = |v: &Yaml| -> Vec<String> {
            v.as_vec()
                .unwrap_or_else(|| panic!("{package}: a list"))
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(yaml_strings(&deny["Action"]), writes, "{package}");
        let condition = deny["Condition"].as_hash().unwrap();
        assert_eq!(condition.len(), 1, "{package}");
        assert_eq!(
            yaml_strings(&deny["Condition"]["ForAnyValue:StringEquals"]["dynamodb:LeadingKeys"]),
            keys,
            "{package}"
        );
        checked += 1;
    }
    assert!(checked >= 10, "{checked} writing functions");
}

#[test]
fn every_function_holds_exactly_the_iam_actions_its_operation_needs() {
    let template = load("template.yaml");
    for package in function_packages() {
        let granted = granted(&package, &template);
        let needed: BTreeSet<Grant> = calls(&package).into_iter().flat_map(iam_actions).collect();
        let wider: Vec<_> = granted.difference(&needed).collect();
        let narrower: Vec<_> = needed.difference(&granted).collect();
        assert!(
            wider.is_empty(),
            "{package} holds more than it needs: {wider:?}"
        );
        assert!(narrower.is_empty(), "{package} lacks: {narrower:?}");
        if READ_ONLY.contains(&package.as_str()) {
            for (action, _, _) in &granted {
                let read = ["Get", "List", "Query", "BatchGetItem"].iter().any(|verb| {
                    action
                        .split(':')
                        .nth(1)
                        .is_some_and(|a| a.starts_with(verb) || a == *verb)
                });
                // get-upload writes nothing itself: it may only ask
                // verify-upload to go on with a stalled verification.
                let asks = package == "get-upload" && action == "lambda:InvokeFunction";
                assert!(read || asks, "read-only {package} holds {action}");
            }
        }
    }
}

#[test]
fn reading_a_key_that_may_be_missing_grants_list_bucket_on_its_prefix_only() {
    // The rule itself, so that a change of the mapping cannot drop it.
    for read in [
        Call::HeadObject(Keys::Blobs, At::Current),
        Call::GetObject(Keys::Blobs, At::Version),
        Call::CopyObject {
            from: Keys::Blobs,
            at: At::Version,
            to: Keys::Store,
        },
    ] {
        let lists: Vec<Grant> = iam_actions(read)
            .into_iter()
            .filter(|(action, _, _)| action == "s3:ListBucket")
            .collect();
        assert_eq!(
            lists,
            [(
                "s3:ListBucket".to_owned(),
                BUCKET.to_owned(),
                Some("${S3Prefix}.blobs/*".to_owned())
            )],
            "{read:?}"
        );
    }
    let template = load("template.yaml");
    let commit = granted("commit-upload", &template);
    assert!(commit.contains(&(
        "s3:ListBucket".to_owned(),
        BUCKET.to_owned(),
        Some("${S3Prefix}.blobs/*".to_owned())
    )));
}

/// Whether CloudFormation accepts `value` for a String parameter: its
/// `MinLength`/`MaxLength` and its `AllowedPattern`, which must match the
/// whole value.
fn template_accepts(parameter: &Yaml, value: &str) -> bool {
    let pattern = parameter["AllowedPattern"]
        .as_str()
        .expect("the parameter has an AllowedPattern");
    let whole = regex::Regex::new(&format!("^(?:{pattern})$")).unwrap();
    let length = value.chars().count() as i64;
    parameter["MinLength"]
        .as_i64()
        .is_none_or(|min| length >= min)
        && parameter["MaxLength"]
            .as_i64()
            .is_none_or(|max| length <= max)
        && whole.is_match(value)
}

#[test]
fn the_template_accepts_exactly_the_prefixes_and_suffixes_that_config_accepts() {
    let template = load("template.yaml");
    let config = |key: &str, value: &str| {
        shared::config::Config::from_lookup(|k| match k {
            "BUCKET_NAME" => Some("ok-bucket".to_owned()),
            k if k == key => Some(value.to_owned()),
            _ => None,
        })
        .is_ok()
    };
    let long = |n: usize| "a".repeat(n);
    // (value, accepted): both sides must agree with each other and with this.
    let prefixes: Vec<(String, bool)> = [
        ("versioned-artifacts", true),
        ("team/ci/artifacts", true),
        ("A.b_c-d!e'f(g)", true),
        (".hidden/..x", true),
        ("", false),
        ("/x", false),
        ("x/", false),
        ("a//b", false),
        ("a/./b", false),
        ("a/..", false),
        ("a/...", false),
        ("a*", false),
        ("a?", false),
        ("a b", false),
        (" a", false),
        ("a%2F", false),
        ("a+b", false),
        ("a$b", false),
        ("é", false),
    ]
    .into_iter()
    .map(|(v, ok)| (v.to_owned(), ok))
    .chain([(long(512), true), (long(513), false)])
    .collect();
    let suffixes: Vec<(String, bool)> = [
        ("", true),
        (".zip", true),
        (".tar.gz", true),
        ("-x_1", true),
        ("a/b", false),
        (" ", false),
        (".zip ", false),
        ("*", false),
        ("(1)", false),
        ("%20", false),
        ("é", false),
    ]
    .into_iter()
    .map(|(v, ok)| (v.to_owned(), ok))
    .chain([(long(32), true), (long(33), false)])
    .collect();
    for (name, variable, examples) in [
        ("S3Prefix", "S3_PREFIX", &prefixes),
        ("ArtifactSuffix", "ARTIFACT_SUFFIX", &suffixes),
    ] {
        let parameter = &template["Parameters"][name];
        for (value, accepted) in examples {
            let (in_template, in_config) =
                (template_accepts(parameter, value), config(variable, value));
            assert_eq!(in_template, *accepted, "template, {name} {value:?}");
            assert_eq!(in_config, *accepted, "config, {variable} {value:?}");
        }
        let default = parameter["Default"].as_str().unwrap();
        assert!(config(variable, default), "the default {name} is valid");
    }
}

#[test]
fn scheduled_retention_runs_never_overlap() {
    // Runs share one resume cursor; a second concurrent run would purge the
    // same artifacts and move the cursor under the first.
    // The lease (shared/tests/scheduled.rs) keeps them apart; a reserved
    // concurrency of 1 is an option, off by default because Lambda refuses
    // reservations on accounts with little unreserved concurrency.
    let template = load("template.yaml");
    let reserved = &template["Resources"]["ScheduledPurgeFunction"]["Properties"]["ReservedConcurrentExecutions"];
    let choice = reserved.as_vec().expect("an !If on the parameter");
    assert_eq!(choice[0].as_str(), Some("ReserveScheduledPurge"));
    assert_eq!(choice[1].as_i64(), Some(1));
    assert!(
        template["Conditions"]["ReserveScheduledPurge"]
            .as_vec()
            .is_some(),
        "the condition exists"
    );
    assert_eq!(
        template["Parameters"]["ReserveScheduledPurgeConcurrency"]["Default"].as_str(),
        Some("false")
    );
}

#[test]
fn every_resource_that_holds_data_is_retained_with_the_stack() {
    let template = load("template.yaml");
    // Failure queues hold the only record of work given up on. The
    // functions' own log groups are operational logs with a retention, not
    // the audit trail (ApiAccessLogGroup): they go with the stack.
    let holds_data = [
        "AWS::S3::Bucket",
        "AWS::S3::BucketPolicy",
        "AWS::DynamoDB::Table",
        "AWS::Logs::LogGroup",
        "AWS::SQS::Queue",
    ];
    let mut retained = BTreeSet::new();
    for (id, resource) in template["Resources"].as_hash().unwrap() {
        let id = id.as_str().unwrap();
        if !holds_data.contains(&resource["Type"].as_str().unwrap())
            || id.ends_with("FunctionLogGroup")
        {
            continue;
        }
        for policy in ["DeletionPolicy", "UpdateReplacePolicy"] {
            assert_eq!(resource[policy].as_str(), Some("Retain"), "{id} {policy}");
        }
        retained.insert(id);
    }
    for id in [
        "ArtifactBucket",
        "ArtifactBucketPolicy",
        "ArtifactTable",
        "AccessLogBucket",
        "AccessLogBucketPolicy",
        "ApiAccessLogGroup",
        "MirrorFailuresQueue",
        "VerifyFailuresQueue",
        "ScheduledPurgeFailuresQueue",
    ] {
        assert!(retained.contains(id), "{id} is retained");
    }
}

#[test]
fn api_requests_and_object_access_are_logged_for_audit() {
    let template = load("template.yaml");
    let resources = &template["Resources"];

    // The HTTP API: one JSON line per request into a log group with retention.
    let access_log = &resources["ArtifactApi"]["Properties"]["AccessLogSettings"];
    assert_eq!(
        access_log["DestinationArn"].as_str(),
        Some("ApiAccessLogGroup.Arn")
    );
    let format = access_log["Format"].as_str().unwrap();
    let line: serde_json::Value =
        serde_json::from_str(format).expect("the access log format is one JSON object");
    let fields: BTreeSet<&str> = line
        .as_object()
        .unwrap()
        .values()
        .filter_map(|v| v.as_str())
        .collect();
    for variable in [
        "$context.requestId",
        "$context.identity.userArn",
        "$context.routeKey",
        "$context.status",
        "$context.responseLatency",
    ] {
        assert!(
            fields.contains(variable),
            "the access log records {variable}"
        );
    }
    let group = &resources["ApiAccessLogGroup"];
    assert_eq!(group["Type"].as_str(), Some("AWS::Logs::LogGroup"));
    assert_eq!(
        group["Properties"]["RetentionInDays"].as_str(),
        Some("AuditLogRetentionDays")
    );

    // The artifact bucket: S3 server access logs into a private log bucket.
    let logging = &resources["ArtifactBucket"]["Properties"]["LoggingConfiguration"];
    assert_eq!(
        logging["DestinationBucketName"].as_str(),
        Some("AccessLogBucket")
    );
    let log_prefix = logging["LogFilePrefix"].as_str().unwrap();
    let logs = &resources["AccessLogBucket"];
    assert_eq!(logs["Type"].as_str(), Some("AWS::S3::Bucket"));
    let properties = &logs["Properties"];
    assert_eq!(
        properties["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
            ["ServerSideEncryptionByDefault"]["SSEAlgorithm"]
            .as_str(),
        Some("AES256"),
        "log delivery supports SSE-S3 only"
    );
    for block in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(
            properties["PublicAccessBlockConfiguration"][block].as_bool(),
            Some(true),
            "{block}"
        );
    }
    assert_eq!(
        properties["OwnershipControls"]["Rules"][0]["ObjectOwnership"].as_str(),
        Some("BucketOwnerEnforced")
    );
    // A log object overwritten or deleted stays as a noncurrent version
    // for as long as the logs are kept.
    assert_eq!(
        properties["VersioningConfiguration"]["Status"].as_str(),
        Some("Enabled")
    );
    let expiry = properties["LifecycleConfiguration"]["Rules"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|rule| rule["Status"].as_str() == Some("Enabled"))
        .expect("an enabled lifecycle rule");
    assert_eq!(
        expiry["ExpirationInDays"].as_str(),
        Some("AuditLogRetentionDays")
    );
    assert_eq!(
        expiry["NoncurrentVersionExpiration"]["NoncurrentDays"].as_str(),
        Some("AuditLogRetentionDays")
    );
    // With ACLs disabled (BucketOwnerEnforced) the logging service may only
    // write through the bucket policy, and only for the artifact bucket.
    let policy = &resources["AccessLogBucketPolicy"]["Properties"];
    assert_eq!(policy["Bucket"].as_str(), Some("AccessLogBucket"));
    let delivery = policy["PolicyDocument"]["Statement"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|s| s["Principal"]["Service"].as_str() == Some("logging.s3.amazonaws.com"))
        .expect("a statement for logging.s3.amazonaws.com");
    assert_eq!(delivery["Effect"].as_str(), Some("Allow"));
    assert_eq!(delivery["Action"].as_str(), Some("s3:PutObject"));
    assert_eq!(
        delivery["Resource"].as_str(),
        Some(format!("${{AccessLogBucket.Arn}}/{log_prefix}*").as_str())
    );
    assert_eq!(
        delivery["Condition"]["ArnLike"]["aws:SourceArn"].as_str(),
        Some("ArtifactBucket.Arn")
    );
    assert_eq!(
        delivery["Condition"]["StringEquals"]["aws:SourceAccount"].as_str(),
        Some("AWS::AccountId")
    );
}

#[test]
fn sam_build_does_not_hash_the_checkout_and_needs_no_beta_features() {
    let text = std::fs::read_to_string(workspace_root().join("samconfig.toml")).unwrap();
    let config: toml::Table = text.parse().unwrap();
    let build = &config["default"]["build"]["parameters"];
    // Every function has `CodeUri: .`: a cached build hashes the whole
    // checkout (target/ and .venv/ included) once per function.
    assert_eq!(build.get("cached").and_then(|v| v.as_bool()), Some(false));
    // SAM CLI (requirements.txt) builds rust-cargolambda without beta features.
    for (command, parameters) in config["default"].as_table().unwrap() {
        assert!(
            parameters
                .get("parameters")
                .and_then(|p| p.get("beta_features"))
                .is_none(),
            "{command} enables beta features"
        );
    }
    let template = load("template.yaml");
    for package in function_packages() {
        assert_eq!(
            template["Resources"][logical_id(&package).as_str()]["Properties"]["CodeUri"].as_str(),
            Some("."),
            "{package}: the reason the cache is off"
        );
    }
}

#[test]
fn nothing_in_the_project_points_at_the_directory_beside_the_checkout() {
    // The project documents its own contract (README, openapi.yaml): no
    // tracked file may send the reader to the directory beside the checkout,
    // which a clone does not have. (The needle is built so this file passes.)
    let root = workspace_root();
    let files = std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(&root)
        .output()
        .expect("git ls-files");
    assert!(files.status.success());
    let needle = ["..", "shared"].join("/");
    let mut offenders = Vec::new();
    for path in files.stdout.split(|&b| b == 0).filter(|p| !p.is_empty()) {
        let path = String::from_utf8_lossy(path).into_owned();
        let Ok(bytes) = std::fs::read(root.join(&path)) else {
            continue; // deleted in the work tree
        };
        if String::from_utf8_lossy(&bytes).contains(&needle) {
            offenders.push(path);
        }
    }
    assert!(offenders.is_empty(), "{needle} appears in {offenders:?}");
}

/// Lifecycle rules never delete bytes a row references (SPEC 3.1, issue 9):
/// no expiration of current or noncurrent versions outside the previous
/// release's staging prefix, and an incomplete multipart upload is aborted
/// after the same number of days as its pending upload lives: never one
/// that can still be committed, and no later than that.
#[test]
fn lifecycle_rules_never_delete_referenced_bytes_and_abort_only_dead_uploads() {
    let template = load("template.yaml");
    let rules =
        template["Resources"]["ArtifactBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
            .as_vec()
            .unwrap();
    // The days are the parameter; UPLOAD_EXPIRES_SECS is looked up from them.
    let parameter = &template["Parameters"]["UploadExpiresDays"];
    assert_eq!(parameter["Type"].as_str(), Some("Number"));
    assert_eq!(parameter["Default"].as_i64(), Some(1));
    let days: Vec<i64> = parameter["AllowedValues"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_i64)
        .collect();
    assert_eq!(days, (1..=7).collect::<Vec<_>>());
    // The default is the code's default; the longest, the code's longest.
    use shared::config::Config;
    let default = parameter["Default"].as_i64().unwrap();
    assert_eq!(default * 86_400, Config::DEFAULT_UPLOAD_SECS as i64);
    assert_eq!(
        days.iter().max().unwrap() * 86_400,
        Config::MAX_UPLOAD_SECS as i64
    );
    let lifetimes = &template["Mappings"]["UploadLifetime"];
    assert_eq!(lifetimes.as_hash().unwrap().len(), days.len());
    for day in &days {
        let seconds = lifetimes[day.to_string().as_str()]["Seconds"]
            .as_i64()
            .unwrap_or_else(|| panic!("no lifetime for {day} days"));
        assert_eq!(seconds, day * 86_400, "{day} days");
        let config = shared::config::Config::from_lookup(|k| match k {
            "BUCKET_NAME" => Some("ok-bucket".to_owned()),
            "UPLOAD_EXPIRES_SECS" => Some(seconds.to_string()),
            _ => None,
        });
        assert!(config.is_ok(), "UPLOAD_EXPIRES_SECS={seconds} is accepted");
    }
    let lookup: Vec<&str> =
        template["Globals"]["Function"]["Environment"]["Variables"]["UPLOAD_EXPIRES_SECS"]
            .as_vec()
            .expect("a !FindInMap")
            .iter()
            .filter_map(Yaml::as_str)
            .collect();
    assert_eq!(lookup, ["UploadLifetime", "UploadExpiresDays", "Seconds"]);
    let mut aborts = 0;
    for rule in rules {
        let id = rule["Id"].as_str().unwrap();
        let prefix = rule["Prefix"].as_str();
        let expires = !rule["ExpirationInDays"].is_badvalue()
            || !rule["ExpirationDate"].is_badvalue()
            || !rule["NoncurrentVersionExpiration"].is_badvalue()
            || !rule["NoncurrentVersionExpirationInDays"].is_badvalue();
        if expires {
            assert_eq!(
                prefix,
                Some("${S3Prefix}.uploads/"),
                "{id} expires objects outside the legacy staging prefix"
            );
        }
        let abort = &rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"];
        if !abort.is_badvalue() {
            aborts += 1;
            assert_eq!(
                abort.as_str(),
                Some("UploadExpiresDays"),
                "{id} aborts after the upload's own lifetime"
            );
        }
    }
    assert_eq!(aborts, 1, "abandoned multipart uploads are aborted");
}

// ---- Production operations (issue 24): logs, alarms, protected blobs,
// throttling, failure destinations, scoped roles.

/// The logical ids of the resources of one type.
fn resources_of<'a>(template: &'a Yaml, kind: &str) -> Vec<(&'a str, &'a Yaml)> {
    template["Resources"]
        .as_hash()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(id, r)| (id.as_str().unwrap(), r))
        .collect()
}

/// Whether `id` is `!Ref`ed or `!GetAtt`ed by a value (tags are dropped by
/// the YAML loader: `!Ref X` reads as `X`, `!GetAtt X.Arn` as `X.Arn`).
fn names(value: &Yaml, id: &str) -> bool {
    value
        .as_str()
        .is_some_and(|v| v == id || v.strip_prefix(id).is_some_and(|rest| rest.starts_with('.')))
}

#[test]
fn every_function_logs_to_its_own_log_group_with_retention_and_report_lines() {
    let template = load("template.yaml");
    let global = &template["Globals"]["Function"]["LoggingConfig"];
    // START/REPORT (duration, memory) are system logs at INFO; a system log
    // level needs the JSON format.
    assert_eq!(global["SystemLogLevel"].as_str(), Some("INFO"));
    assert_eq!(global["LogFormat"].as_str(), Some("JSON"));
    assert_eq!(global["ApplicationLogLevel"].as_str(), Some("LogLevel"));
    let retention = &template["Parameters"]["FunctionLogRetentionDays"];
    assert_eq!(retention["Type"].as_str(), Some("Number"));
    assert!(
        retention["AllowedValues"]
            .as_vec()
            .is_some_and(|v| !v.is_empty())
    );
    let mut groups = BTreeSet::new();
    for package in function_packages() {
        let id = logical_id(&package);
        let config = &template["Resources"][id.as_str()]["Properties"]["LoggingConfig"];
        let group = config["LogGroup"]
            .as_str()
            .unwrap_or_else(|| panic!("{package} names its log group"));
        assert_eq!(group, format!("{id}LogGroup"), "{package}");
        let resource = &template["Resources"][group];
        assert_eq!(resource["Type"].as_str(), Some("AWS::Logs::LogGroup"));
        assert_eq!(
            resource["Properties"]["RetentionInDays"].as_str(),
            Some("FunctionLogRetentionDays"),
            "{group} keeps logs for the parameter's days"
        );
        // Unnamed: no clash with an /aws/lambda/<name> group a previous
        // release left behind.
        assert!(resource["Properties"]["LogGroupName"].is_badvalue());
        assert!(groups.insert(group.to_owned()), "{group} is one function's");
    }
    // And every log group of the stack has a retention.
    for (id, group) in resources_of(&template, "AWS::Logs::LogGroup") {
        assert!(
            !group["Properties"]["RetentionInDays"].is_badvalue(),
            "{id} has a retention"
        );
    }
}

/// The alarm watching `metric` of `namespace` with the dimension `name` =
/// a reference to `target`, if any.
fn alarm_on<'a>(
    template: &'a Yaml,
    namespace: &str,
    metric: &str,
    dimension: &str,
    target: &str,
) -> Option<(&'a str, &'a Yaml)> {
    resources_of(template, "AWS::CloudWatch::Alarm")
        .into_iter()
        .find(|(_, alarm)| {
            let p = &alarm["Properties"];
            p["Namespace"].as_str() == Some(namespace)
                && p["MetricName"].as_str() == Some(metric)
                && p["Dimensions"].as_vec().is_some_and(|ds| {
                    ds.iter().any(|d| {
                        d["Name"].as_str() == Some(dimension) && names(&d["Value"], target)
                    })
                })
        })
}

#[test]
fn every_alarm_notifies_the_topic_and_every_queue_and_function_has_alarms() {
    let template = load("template.yaml");
    let resources = &template["Resources"];
    // The topic, and an optional e-mail subscription by parameter.
    assert_eq!(
        resources["AlarmTopic"]["Type"].as_str(),
        Some("AWS::SNS::Topic")
    );
    let subscription = &resources["AlarmEmailSubscription"];
    assert_eq!(subscription["Condition"].as_str(), Some("HasAlarmEmail"));
    assert_eq!(
        subscription["Properties"]["Protocol"].as_str(),
        Some("email")
    );
    assert_eq!(
        subscription["Properties"]["Endpoint"].as_str(),
        Some("AlarmEmail")
    );
    assert_eq!(
        template["Parameters"]["AlarmEmail"]["Default"].as_str(),
        Some("")
    );
    let alarms = resources_of(&template, "AWS::CloudWatch::Alarm");
    assert!(!alarms.is_empty());
    for (id, alarm) in &alarms {
        let actions = alarm["Properties"]["AlarmActions"].as_vec().unwrap();
        assert!(
            actions.iter().any(|a| a.as_str() == Some("AlarmTopic")),
            "{id} notifies the topic"
        );
        assert!(
            alarm["Properties"]["AlarmDescription"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{id} says what it means"
        );
        // Quiet periods (no invocations, an empty queue) are not alarms.
        assert_eq!(
            alarm["Properties"]["TreatMissingData"].as_str(),
            Some("notBreaching"),
            "{id}"
        );
    }
    // Every queue: one message is worth an alarm.
    let queues = resources_of(&template, "AWS::SQS::Queue");
    assert_eq!(
        queues.len(),
        4,
        "mirror, verify, scheduled-purge and events failures"
    );
    for (queue, _) in &queues {
        let (id, alarm) = alarm_on(
            &template,
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            "QueueName",
            &format!("{queue}.QueueName"),
        )
        .unwrap_or_else(|| panic!("{queue} has an alarm"));
        assert_eq!(alarm["Properties"]["Threshold"].as_i64(), Some(1), "{id}");
        assert_eq!(
            alarm["Properties"]["ComparisonOperator"].as_str(),
            Some("GreaterThanOrEqualToThreshold")
        );
    }
    // Every function: errors and throttles.
    for package in function_packages() {
        let function = logical_id(&package);
        for metric in ["Errors", "Throttles"] {
            let (id, alarm) = alarm_on(&template, "AWS/Lambda", metric, "FunctionName", &function)
                .unwrap_or_else(|| panic!("{package} has a {metric} alarm"));
            assert_eq!(
                alarm["Properties"]["Statistic"].as_str(),
                Some("Sum"),
                "{id}"
            );
            assert_eq!(alarm["Properties"]["Threshold"].as_i64(), Some(1), "{id}");
        }
    }
    // The mirror's lag behind the stream, well before the mapping gives up.
    let (_, age) = alarm_on(
        &template,
        "AWS/Lambda",
        "IteratorAge",
        "FunctionName",
        "MirrorSeedLayoutFunction",
    )
    .expect("an IteratorAge alarm on the mirror");
    let threshold_ms = age["Properties"]["Threshold"].as_i64().unwrap();
    let give_up_s = resources["MirrorSeedLayoutFunction"]["Properties"]["Events"]["Stream"]
        ["Properties"]["MaximumRecordAgeInSeconds"]
        .as_i64()
        .unwrap();
    assert!(threshold_ms > 0 && threshold_ms < give_up_s * 1000);
    assert_eq!(age["Properties"]["Statistic"].as_str(), Some("Maximum"));
}

/// The scheduled job's `failed_total` is one WARN line per failed artifact;
/// the metric filter counts those lines, so its phrase must be the one the
/// code logs.
#[test]
fn scheduled_retention_failures_are_counted_from_the_jobs_log_and_alarmed() {
    let template = load("template.yaml");
    let filters = resources_of(&template, "AWS::Logs::MetricFilter");
    let (_, filter) = filters
        .iter()
        .find(|(_, f)| {
            f["Properties"]["LogGroupName"].as_str() == Some("ScheduledPurgeFunctionLogGroup")
        })
        .expect("a metric filter on scheduled-purge's log group");
    let pattern = filter["Properties"]["FilterPattern"].as_str().unwrap();
    let phrase = pattern
        .strip_prefix('"')
        .and_then(|p| p.strip_suffix('"'))
        .expect("a quoted phrase: a substring of the line, JSON or text");
    let source = std::fs::read_to_string(workspace_root().join("shared/src/scheduled.rs")).unwrap();
    let logged: Vec<&str> = source
        .lines()
        .filter(|l| l.contains("tracing::warn!") && l.contains(phrase))
        .collect();
    assert_eq!(
        logged.len(),
        1,
        "scheduled.rs warns {phrase:?} once per failed artifact"
    );
    let counted = source
        .lines()
        .skip_while(|l| !l.contains(logged[0]))
        .take(3)
        .any(|l| l.contains("failed_total += 1"));
    assert!(counted, "the same branch counts failed_total");
    let transform = &filter["Properties"]["MetricTransformations"][0];
    assert_eq!(transform["MetricValue"].as_str(), Some("1"));
    let (namespace, metric) = (
        transform["MetricNamespace"].as_str().unwrap(),
        transform["MetricName"].as_str().unwrap(),
    );
    let alarm = resources_of(&template, "AWS::CloudWatch::Alarm")
        .into_iter()
        .find(|(_, a)| {
            a["Properties"]["Namespace"].as_str() == Some(namespace)
                && a["Properties"]["MetricName"].as_str() == Some(metric)
        })
        .expect("an alarm on the counted failures");
    assert_eq!(alarm.1["Properties"]["Statistic"].as_str(), Some("Sum"));
    assert_eq!(alarm.1["Properties"]["Threshold"].as_i64(), Some(1));
}

#[test]
fn scheduled_purge_runs_given_up_on_land_in_a_retained_queue() {
    let template = load("template.yaml");
    let invoke =
        &template["Resources"]["ScheduledPurgeFunction"]["Properties"]["EventInvokeConfig"];
    let failure = &invoke["DestinationConfig"]["OnFailure"];
    assert_eq!(failure["Type"].as_str(), Some("SQS"));
    assert_eq!(
        failure["Destination"].as_str(),
        Some("ScheduledPurgeFailuresQueue.Arn")
    );
    assert!(invoke["MaximumRetryAttempts"].as_i64().is_some());
    // The grant is derived from the calls (every_function_holds_exactly…).
    assert!(
        calls("scheduled-purge")
            .iter()
            .any(|c| matches!(c, Call::SendMessage("ScheduledPurgeFailuresQueue.Arn")))
    );
}

/// Actions that change or remove what a blob key serves.
const BLOB_WRITES: [&str; 5] = [
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:AbortMultipartUpload",
    "s3:RestoreObject",
];

#[test]
fn only_the_roles_of_functions_that_write_blobs_may_write_or_delete_them() {
    let template = load("template.yaml");
    let statements = template["Resources"]["ArtifactBucketPolicy"]["Properties"]["PolicyDocument"]
        ["Statement"]
        .as_vec()
        .unwrap();
    let deny = statements
        .iter()
        .find(|s| s["Sid"].as_str() == Some("DenyBlobWritesExceptTheFunctions"))
        .expect("the blob-prefix deny");
    assert_eq!(deny["Effect"].as_str(), Some("Deny"));
    assert_eq!(deny["Principal"].as_str(), Some("*"));
    assert_eq!(
        deny["Resource"].as_str(),
        Some(Keys::Blobs.objects()),
        "the whole blob prefix, nothing else"
    );
    let denied: BTreeSet<&str> = deny["Action"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    for action in BLOB_WRITES {
        assert!(denied.contains(action), "{action} is denied");
    }
    for action in &denied {
        assert!(
            !action.contains("Get") && !action.contains("List"),
            "reads stay allowed: {action}"
        );
    }
    // The exception: exactly the roles of the functions granted a write or
    // delete under the blob prefix, and the optional break-glass role.
    let condition = deny["Condition"].as_hash().unwrap();
    assert_eq!(condition.len(), 1);
    let excepted = deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
        .as_vec()
        .expect("ArnNotEquals on aws:PrincipalArn");
    let mut roles = BTreeSet::new();
    let mut break_glass = 0;
    for arn in excepted {
        match arn {
            Yaml::String(role) => {
                roles.insert(
                    role.strip_suffix("Role.Arn")
                        .expect("a function role")
                        .to_owned(),
                );
            }
            Yaml::Array(choice) => {
                assert_eq!(choice[0].as_str(), Some("HasBlobBreakGlassRole"));
                assert_eq!(choice[1].as_str(), Some("BlobBreakGlassRoleArn"));
                assert_eq!(choice[2].as_str(), Some("AWS::NoValue"));
                break_glass += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(break_glass, 1, "the break-glass role, when one is given");
    assert_eq!(
        template["Parameters"]["BlobBreakGlassRoleArn"]["Default"].as_str(),
        Some("")
    );
    let writers: BTreeSet<String> = function_packages()
        .into_iter()
        .filter(|package| {
            calls(package)
                .into_iter()
                .flat_map(iam_actions)
                .any(|(action, resource, _)| {
                    resource == Keys::Blobs.objects() && BLOB_WRITES.contains(&action.as_str())
                })
        })
        .map(|package| logical_id(&package))
        .collect();
    assert!(writers.contains("StartUploadFunction"));
    assert_eq!(
        roles, writers,
        "excepted roles = functions that write blobs"
    );
    // Each excepted role is the writer's own (`<Function>Role`).
    for function in &roles {
        assert_eq!(
            template["Resources"][function.as_str()]["Properties"]["Role"].as_str(),
            Some(format!("{function}Role.Arn").as_str()),
            "{function}"
        );
    }
}

#[test]
fn the_api_throttles_every_route_and_verify_concurrency_is_optional() {
    let template = load("template.yaml");
    let settings = &template["Resources"]["ArtifactApi"]["Properties"]["DefaultRouteSettings"];
    assert_eq!(
        settings["ThrottlingRateLimit"].as_str(),
        Some("ApiThrottlingRateLimit")
    );
    assert_eq!(
        settings["ThrottlingBurstLimit"].as_str(),
        Some("ApiThrottlingBurstLimit")
    );
    for parameter in ["ApiThrottlingRateLimit", "ApiThrottlingBurstLimit"] {
        let p = &template["Parameters"][parameter];
        assert_eq!(p["Type"].as_str(), Some("Number"), "{parameter}");
        assert!(p["Default"].as_i64().is_some_and(|d| d >= 1), "{parameter}");
    }
    // Off (0) by default, as the scheduled job's reservation: Lambda
    // refuses reservations on accounts with little unreserved concurrency.
    let reserved = &template["Resources"]["VerifyUploadFunction"]["Properties"]["ReservedConcurrentExecutions"];
    let choice = reserved.as_vec().expect("an !If on the parameter");
    assert_eq!(choice[0].as_str(), Some("ReserveVerifyUpload"));
    assert_eq!(choice[1].as_str(), Some("VerifyUploadReservedConcurrency"));
    assert_eq!(choice[2].as_str(), Some("AWS::NoValue"));
    let condition = &template["Conditions"]["ReserveVerifyUpload"];
    assert_eq!(
        condition[0][0].as_str(),
        Some("VerifyUploadReservedConcurrency"),
        "!Not [!Equals [parameter, 0]]"
    );
    assert_eq!(condition[0][1].as_i64(), Some(0));
    assert_eq!(
        template["Parameters"]["VerifyUploadReservedConcurrency"]["Default"].as_i64(),
        Some(0)
    );
}

#[test]
fn presigned_urls_may_not_outlive_a_role_session() {
    // URLs signed with a role's temporary credentials die with the session
    // (at most 12 hours); the template refuses longer lifetimes. The code
    // accepts up to SigV4's 7 days, for long-term keys (local use).
    let template = load("template.yaml");
    let parameter = &template["Parameters"]["PresignExpiresSecs"];
    let max = parameter["MaxValue"].as_i64().unwrap();
    assert_eq!(max, 43_200);
    let config = shared::config::Config::from_lookup(|k| match k {
        "BUCKET_NAME" => Some("ok-bucket".to_owned()),
        "PRESIGN_EXPIRES_SECS" => Some(max.to_string()),
        _ => None,
    });
    assert!(
        config.is_ok(),
        "the functions accept the template's longest"
    );
    let default = parameter["Default"].as_i64().unwrap();
    assert_eq!(default as u64, shared::config::Config::DEFAULT_PRESIGN_SECS);
}

#[test]
fn the_mirror_reads_only_this_tables_stream_with_a_role_of_its_own() {
    let template = load("template.yaml");
    let function = &template["Resources"]["MirrorSeedLayoutFunction"]["Properties"];
    assert_eq!(
        function["Role"].as_str(),
        Some("MirrorSeedLayoutFunctionRole.Arn")
    );
    let role = &template["Resources"]["MirrorSeedLayoutFunctionRole"]["Properties"];
    assert!(role["ManagedPolicyArns"].is_badvalue(), "no managed policy");
    assert_eq!(
        role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"].as_str(),
        Some("lambda.amazonaws.com")
    );
    let runtime = role["Policies"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|p| p["PolicyName"].as_str() == Some("runtime"))
        .expect("a runtime policy");
    let mut grants = BTreeSet::new();
    for statement in runtime["PolicyDocument"]["Statement"].as_vec().unwrap() {
        assert_eq!(statement["Effect"].as_str(), Some("Allow"));
        assert!(statement["Condition"].is_badvalue());
        let resource = statement["Resource"].as_str().unwrap();
        for action in statement["Action"].as_vec().unwrap() {
            grants.insert((action.as_str().unwrap().to_owned(), resource.to_owned()));
        }
    }
    let expected: BTreeSet<(String, String)> = [
        ("dynamodb:DescribeStream", "ArtifactTable.StreamArn"),
        ("dynamodb:GetRecords", "ArtifactTable.StreamArn"),
        ("dynamodb:GetShardIterator", "ArtifactTable.StreamArn"),
        ("dynamodb:ListStreams", "ArtifactTable.StreamArn"),
        (
            "logs:CreateLogStream",
            "MirrorSeedLayoutFunctionLogGroup.Arn",
        ),
        ("logs:PutLogEvents", "MirrorSeedLayoutFunctionLogGroup.Arn"),
        // X-Ray's write actions take no resource but "*".
        ("xray:PutTelemetryRecords", "*"),
        ("xray:PutTraceSegments", "*"),
    ]
    .into_iter()
    .map(|(a, r)| (a.to_owned(), r.to_owned()))
    .collect();
    assert_eq!(grants, expected);
}

/// What SAM generates, not what the template says: the roles it creates and
/// the AWS managed policies it attaches (scripts/sam_transform.py runs the
/// SAM translator offline).
#[test]
fn sam_attaches_no_managed_policy_to_any_role() {
    let output = std::process::Command::new(test_support::venv_python())
        .arg(workspace_root().join("scripts/sam_transform.py"))
        .arg(workspace_root().join("template.yaml"))
        .output()
        .expect("the venv's python (make venv)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let transformed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    // Every function has its own role, so SAM generates none and attaches
    // no AWSLambdaBasicExecutionRole / AWSXrayWriteOnlyAccess (resources "*").
    let mut roles = 0;
    for (id, resource) in transformed["Resources"].as_object().unwrap() {
        if resource["Type"] != "AWS::IAM::Role" {
            continue;
        }
        roles += 1;
        let attached: Vec<&str> = resource["Properties"]["ManagedPolicyArns"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        assert!(attached.is_empty(), "{id}: {attached:?}");
    }
    assert_eq!(roles, function_packages().len(), "one role per function");
}

/// Every function runs with a role of its own whose `runtime` policy (what
/// Lambda does with the role, beside the handler's `data` policy) writes
/// only that function's log group, and X-Ray segments only when tracing is
/// on: X-Ray's write actions accept no resource but "*", the one wildcard.
#[test]
fn every_function_has_its_own_role_writing_only_its_own_log_group() {
    let template = load("template.yaml");
    let tracing = template["Globals"]["Function"]["Tracing"].as_str() == Some("Active");
    for package in function_packages() {
        let id = logical_id(&package);
        let function = &template["Resources"][id.as_str()]["Properties"];
        let role_id = format!("{id}Role");
        assert_eq!(
            function["Role"].as_str(),
            Some(format!("{role_id}.Arn").as_str()),
            "{package}: a role of its own"
        );
        assert!(function["Policies"].is_badvalue(), "{package}: Policies");
        let role = &template["Resources"][role_id.as_str()];
        assert_eq!(role["Type"].as_str(), Some("AWS::IAM::Role"), "{role_id}");
        let role = &role["Properties"];
        assert!(role["ManagedPolicyArns"].is_badvalue(), "{role_id}");
        assert_eq!(
            role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"].as_str(),
            Some("lambda.amazonaws.com"),
            "{role_id}"
        );
        let runtime = role["Policies"]
            .as_vec()
            .unwrap_or_else(|| panic!("{role_id}: inline policies"))
            .iter()
            .find(|p| p["PolicyName"].as_str() == Some("runtime"))
            .unwrap_or_else(|| panic!("{role_id}: a runtime policy"));
        let log_group = format!("{id}LogGroup.Arn");
        let (mut logs, mut xray) = (BTreeSet::new(), BTreeSet::new());
        for statement in runtime["PolicyDocument"]["Statement"].as_vec().unwrap() {
            assert_eq!(statement["Effect"].as_str(), Some("Allow"), "{role_id}");
            let resource = statement["Resource"].as_str().unwrap();
            for action in statement["Action"].as_vec().unwrap() {
                let action = action.as_str().unwrap();
                if action.starts_with("logs:") {
                    assert_eq!(resource, log_group, "{role_id}: {action}");
                    logs.insert(action);
                } else if action.starts_with("xray:") {
                    assert_eq!(resource, "*", "{role_id}: {action}");
                    xray.insert(action);
                } else {
                    // Only an event-source mapping's reads (this table's
                    // stream) besides logs and tracing.
                    assert_eq!(resource, "ArtifactTable.StreamArn", "{role_id}: {action}");
                }
            }
        }
        assert_eq!(
            logs,
            BTreeSet::from(["logs:CreateLogStream", "logs:PutLogEvents"]),
            "{role_id}"
        );
        let expected_xray = if tracing {
            BTreeSet::from(["xray:PutTelemetryRecords", "xray:PutTraceSegments"])
        } else {
            BTreeSet::new()
        };
        assert_eq!(xray, expected_xray, "{role_id}");
        // The function's log group is the one its logging config names.
        assert_eq!(
            function["LoggingConfig"]["LogGroup"].as_str(),
            Some(format!("{id}LogGroup").as_str()),
            "{package}"
        );
    }
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &std::path::Path, into: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// The module names of the `.rs` files under `dir`: a file's stem, or its
/// folder's name for `mod.rs`; the crate roots (`main.rs`, `lib.rs`) of
/// `dir` itself are not modules.
fn module_names(dir: &std::path::Path, root: bool, into: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            module_names(&path, false, into);
            continue;
        }
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        let Some(stem) = file.strip_suffix(".rs") else {
            continue;
        };
        let name = match stem {
            "main" | "lib" if root => continue,
            "mod" => dir.file_name().and_then(|f| f.to_str()).unwrap_or(stem),
            _ => stem,
        };
        into.push((name.to_owned(), path.display().to_string()));
    }
}

/// SPEC 2's layers, one way: the core (`core/`, package `artifact-core`)
/// depends on no AWS SDK, no Lambda crate, no async runtime and no other
/// crate of the workspace, so the compiler refuses any I/O or storage
/// detail in it; `shared` depends on it.
#[test]
fn the_core_layer_depends_on_no_sdk_runtime_or_upper_layer() {
    let root = workspace_root();
    let manifest = |path: &str| -> toml::Table {
        std::fs::read_to_string(root.join(path))
            .unwrap()
            .parse()
            .unwrap()
    };
    let core = manifest("core/Cargo.toml");
    assert_eq!(core["package"]["name"].as_str(), Some("artifact-core"));
    let workspace: Vec<String> = manifest("Cargo.toml")["workspace"]["dependencies"]
        .as_table()
        .unwrap()
        .iter()
        .filter(|(_, spec)| spec.get("path").is_some())
        .map(|(name, _)| name.clone())
        .collect();
    assert!(workspace.contains(&"shared".to_owned()), "{workspace:?}");
    let deps: Vec<&String> = core["dependencies"].as_table().unwrap().keys().collect();
    assert!(!deps.is_empty());
    for dep in deps {
        assert!(
            !(dep.starts_with("aws")
                || dep.starts_with("lambda")
                || ["tokio", "futures", "reqwest", "hyper", "tracing"].contains(&dep.as_str())
                || workspace.contains(dep)),
            "the core layer depends on {dep}"
        );
    }
    let shared = manifest("shared/Cargo.toml");
    assert!(
        shared["dependencies"].get("artifact-core").is_some(),
        "shared builds on the core"
    );
}

/// SPEC 2: core ← store ← service ← shared, one way. Each layer's manifest
/// names exactly the workspace crates below it (so the compiler refuses an
/// import upwards), and no upper one in its dev- or build-dependencies,
/// renamed or not; only the store names the S3 and DynamoDB SDKs (SPEC 2:
/// the service holds the store's clients and transaction members, opaque),
/// and nothing below the edge names a Lambda runtime or
/// event crate (the service's `aws-sdk-lambda` is a client: it invokes
/// `verify-upload`).
#[test]
fn the_layers_depend_one_way_core_store_service_shared() {
    let root = workspace_root();
    let manifest = |path: &str| -> toml::Table {
        std::fs::read_to_string(root.join(path))
            .unwrap()
            .parse()
            .unwrap()
    };
    let workspace: Vec<String> = manifest("Cargo.toml")["workspace"]["dependencies"]
        .as_table()
        .unwrap()
        .iter()
        .filter(|(_, spec)| spec.get("path").is_some())
        .map(|(name, _)| name.clone())
        .collect();
    let layers = [
        ("core", "artifact-core"),
        ("store", "artifact-store"),
        ("service", "artifact-service"),
        ("shared", "shared"),
    ];
    for (i, (dir, package)) in layers.iter().enumerate() {
        let m = manifest(&format!("{dir}/Cargo.toml"));
        assert_eq!(m["package"]["name"].as_str(), Some(*package), "{dir}");
        // A dependency by its key and, when renamed, by its package.
        let names = |section: &str| -> Vec<String> {
            m.get(section)
                .and_then(|s| s.as_table())
                .map(|t| {
                    t.iter()
                        .flat_map(|(key, spec)| {
                            let renamed = spec.get("package").and_then(|p| p.as_str());
                            [Some(key.clone()), renamed.map(str::to_owned)]
                        })
                        .flatten()
                        .collect()
                })
                .unwrap_or_default()
        };
        let deps = names("dependencies");
        let mut ours: Vec<&str> = deps
            .iter()
            .filter(|d| workspace.contains(d))
            .map(|d| d.as_str())
            .collect();
        ours.sort();
        let mut below: Vec<&str> = layers[..i].iter().map(|(_, p)| *p).collect();
        below.sort();
        assert_eq!(
            ours, below,
            "{package} must build on exactly the layers below it"
        );
        // Nor through its tests or build script (cargo allows a cycle there).
        let upper: Vec<&str> = layers[i + 1..].iter().map(|(_, p)| *p).collect();
        for section in ["dev-dependencies", "build-dependencies"] {
            for dep in names(section) {
                assert!(
                    !upper.contains(&dep.as_str()),
                    "{package} {section} names the upper layer {dep}"
                );
            }
        }
        assert!(
            m.get("target").is_none(),
            "{package}: target-specific dependencies escape this check"
        );
        if i < 3 {
            assert!(
                !deps
                    .iter()
                    .any(|d| d.starts_with("lambda") || d == "aws_lambda_events"),
                "{package} names a Lambda runtime or event crate"
            );
        }
        let names_sdk = deps
            .iter()
            .any(|d| d == "aws-sdk-s3" || d == "aws-sdk-dynamodb");
        assert_eq!(
            names_sdk,
            i == 1,
            "{package}: the S3/DynamoDB SDKs belong to the store alone"
        );
    }
    // No source file of a lower layer names an upper one.
    for (i, (dir, _)) in layers.iter().enumerate() {
        let mut files = Vec::new();
        rust_files(&root.join(dir).join("src"), &mut files);
        assert!(!files.is_empty(), "{dir}");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let code: Vec<&str> = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect();
            for (_, upper) in &layers[i + 1..] {
                let krate = upper.replace('-', "_");
                assert!(
                    !code.iter().any(|l| l.contains(&format!("{krate}::"))),
                    "{} names the upper layer {upper}",
                    file.display()
                );
            }
        }
    }
}

/// Issue 20: the store alone knows how the table is spelled. No file of
/// the service or the edge (nor the local server) builds an expression,
/// binds an expression attribute name or value, or names an attribute,
/// nor names the S3 or DynamoDB SDK at all (SPEC 2): each request is a
/// store function over typed values. (The local stream poller at the edge
/// reads DynamoDB Streams, a client of its own.)
#[test]
fn no_expression_or_attribute_name_outside_the_store() {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in ["service/src", "shared/src", "local-api/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    for dir in std::fs::read_dir(root.join("functions")).unwrap() {
        rust_files(&dir.unwrap().path(), &mut files);
    }
    assert!(files.len() > 40, "{} files", files.len());
    let forbidden = [
        "condition_expression(",
        "update_expression(",
        "key_condition_expression(",
        "filter_expression(",
        "projection_expression(",
        "expression_attribute_names(",
        "expression_attribute_values(",
        "attr::",
        "layout::attr",
        "aws_sdk_s3",
        "aws_sdk_dynamodb::",
    ];
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for word in forbidden {
                if code.contains(word) {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(found.is_empty(), "outside the store:\n{}", found.join("\n"));
}

/// One name per thing (the developers' guide): within a crate's sources,
/// and within one test binary, no two modules share a name.
#[test]
fn no_two_modules_of_a_crate_share_a_name() {
    let root = workspace_root();
    // The four layers are read as one namespace (the edge re-exports the
    // lower ones): a module name means one thing across them.
    let mut layers = Vec::new();
    for layer in ["core/src", "store/src", "service/src", "shared/src"] {
        module_names(&root.join(layer), true, &mut layers);
    }
    layers.sort();
    for pair in layers.windows(2) {
        assert_ne!(
            pair[0].0, pair[1].0,
            "two modules of the layers named {:?}: {} and {}",
            pair[0].0, pair[0].1, pair[1].1
        );
    }
    let mut trees = vec![
        "shared/tests/it",
        "cli/src",
        "cli/tests/it",
        "local-api/src",
        "local-api/tests/it",
        "stress/src",
        "bench/src",
        "test-support/src",
    ]
    .into_iter()
    .map(|d| root.join(d))
    .collect::<Vec<_>>();
    for package in function_packages() {
        trees.push(root.join("functions").join(package).join("src"));
    }
    let mut checked = 0;
    for tree in trees {
        let mut names = Vec::new();
        module_names(&tree, true, &mut names);
        checked += names.len();
        names.sort();
        for pair in names.windows(2) {
            assert_ne!(
                pair[0].0, pair[1].0,
                "two modules named {:?}: {} and {}",
                pair[0].0, pair[0].1, pair[1].1
            );
        }
    }
    assert!(checked > 50, "only {checked} modules found: wrong paths?");
}

/// The listings filter what they answer by the caller's grant, which the
/// request carries only when it was authorised before its handler ran: run
/// beside the authorisation, they would see no grant and filter nothing.
#[test]
fn the_routes_that_filter_by_the_caller_run_after_their_authorisation() {
    let api = std::fs::read_to_string(workspace_root().join("shared/src/api.rs")).unwrap();
    let filtering: Vec<&shared::api::Route> = ROUTES
        .iter()
        .filter(|route| {
            let handler = format!("async fn {}(", route.function.replace('-', "_"));
            api.split(&handler)
                .nth(1)
                .and_then(|rest| rest.split("\n}\n").next())
                .is_some_and(|body| body.contains("readable("))
        })
        .collect();
    let names: Vec<&str> = filtering.iter().map(|r| r.function).collect();
    assert_eq!(names, ["list-artifacts", "search-versions"]);
    for route in filtering {
        assert!(
            !route.operation.reads_beside_authorization()
                && !route.operation.writes_after_authorization(),
            "{} filters by the caller's grant but runs beside its authorisation",
            route.function
        );
    }
}

/// Every route as (method, path, function), from the route table.
fn routes_in_code() -> BTreeSet<(String, String, String)> {
    ROUTES
        .iter()
        .map(|r| {
            (
                r.method.to_owned(),
                r.path.to_owned(),
                r.operation.function_name().to_owned(),
            )
        })
        .collect()
}
