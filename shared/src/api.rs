//! The API of SPEC 4: one handler per route, and the route table.
//!
//! Each handler is a plain async function over a `lambda_http::Request`
//! (path parameters and query string as API Gateway delivers them). The
//! Lambda functions (`functions/<operation>`) and the local server call these
//! very functions; tests call them directly.

use std::collections::BTreeMap;
use std::time::Duration;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Deserialize;

use crate::access::{Action, Need, Targets};
use crate::error::Error;
use crate::error::Result;
use crate::http::{
    Object, actor, body, empty, error_response, idempotency_key, json, paging, path, precondition,
    query, redirect, with_alias_etag, with_etag,
};
use crate::model::{
    AliasMove, AliasTarget, ChangeRequest, PartRequest, Pipeline, PublishOutcome, RetentionPolicy,
    SearchQuery, UploadRequest, VersionStatus,
};
use crate::names::{AliasName, ArtifactName, Sha256, Version, Weight};
use crate::repository::{
    AliasAsk, Allowed, PipelineOutcome, Repository, StartOutcome, StatusChange, UploadId, Verifier,
};

/// Every operation, named as its function package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    ListArtifacts,
    StartUpload,
    GetUpload,
    GetUploadParts,
    CommitUpload,
    ListVersions,
    PublishVersion,
    GetVersion,
    GetVersionContent,
    DeleteVersion,
    PurgeArtifact,
    ApplyRetention,
    PutAlias,
    ListAliases,
    GetAlias,
    DeleteAlias,
    ResolveAlias,
    GetAliasHistory,
    RollbackAlias,
    StartRollout,
    ListRollouts,
    GetRollout,
    ControlRollout,
    SetVersionStatus,
    SearchVersions,
    GetAccess,
    PutAccess,
    GetAccessHistory,
}

/// One route: method, API Gateway path template, operation, the function
/// that serves it (package = binary = SAM logical id stem = event file stem)
/// and its success status. The one table every other list (functions,
/// events, template routes, IAM needs, OpenAPI operations) is checked
/// against.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub operation: Operation,
    pub function: &'static str,
    pub success: u16,
}

pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/artifacts",
        operation: Operation::ListArtifacts,
        function: "list-artifacts",
        success: 200,
    },
    Route {
        method: "POST",
        path: "/artifacts/{name}/uploads",
        operation: Operation::StartUpload,
        function: "start-upload",
        success: 201,
    },
    Route {
        method: "GET",
        path: "/artifacts/{name}/uploads/{upload_id}",
        operation: Operation::GetUpload,
        function: "get-upload",
        success: 200,
    },
    Route {
        method: "POST",
        path: "/artifacts/{name}/uploads/{upload_id}/parts",
        operation: Operation::GetUploadParts,
        function: "get-upload-parts",
        success: 200,
    },
    Route {
        method: "PUT",
        path: "/artifacts/{name}",
        operation: Operation::CommitUpload,
        function: "commit-upload",
        success: 200,
    },
    Route {
        method: "GET",
        path: "/artifacts/{name}/versions",
        operation: Operation::ListVersions,
        function: "list-versions",
        success: 200,
    },
    Route {
        method: "POST",
        path: "/artifacts/{name}/versions",
        operation: Operation::PublishVersion,
        function: "publish-version",
        success: 201,
    },
    Route {
        method: "GET",
        path: "/artifacts/{name}/versions/{version}",
        operation: Operation::GetVersion,
        function: "get-version",
        success: 200,
    },
    Route {
        method: "GET",
        path: "/artifacts/{name}/versions/{version}/content",
        operation: Operation::GetVersionContent,
        function: "get-version-content",
        success: 302,
    },
    Route {
        method: "DELETE",
        path: "/artifacts/{name}/versions/{version}",
        operation: Operation::DeleteVersion,
        function: "delete-version",
        success: 204,
    },
    Route {
        method: "DELETE",
        path: "/artifacts/{name}",
        operation: Operation::PurgeArtifact,
        function: "purge-artifact",
        success: 204,
    },
    Route {
        method: "POST",
        path: "/artifacts/{name}/purge",
        operation: Operation::ApplyRetention,
        function: "apply-retention",
        success: 200,
    },
    Route {
        method: "PUT",
        path: "/artifacts/{name}/aliases/{alias}",
        operation: Operation::PutAlias,
        function: "put-alias",
        success: 200,
    },
    Route {
        method: "GET",
        path: "/artifacts/{name}/aliases",
        operation: Operation::ListAliases,
        function: "list-aliases",
        success: 200,
    },
    Route {
        method: "GET",
        path: "/artifacts/{name}/aliases/{alias}",
        operation: Operation::GetAlias,
        function: "get-alias",
        success: 200,
    },
    Route {
        method: "DELETE",
        path: "/artifacts/{name}/aliases/{alias}",
        operation: Operation::DeleteAlias,
        function: "delete-alias",
        success: 204,
    },
    Route {
        method: "GET",
        path: "/artifacts/{name}/aliases/{alias}/resolve",
        operation: Operation::ResolveAlias,
        function: "resolve-alias",
        success: 200,
    },
    Route {
        method: "GET",
        path: "/artifacts/{name}/aliases/{alias}/history",
        operation: Operation::GetAliasHistory,
        function: "get-alias-history",
        success: 200,
    },
    Route {
        method: "POST",
        path: "/artifacts/{name}/aliases/{alias}/rollback",
        operation: Operation::RollbackAlias,
        function: "rollback-alias",
        success: 200,
    },
    Route {
        method: "POST",
        path: "/artifacts/{name}/aliases/{alias}/rollouts",
        operation: Operation::StartRollout,
        function: "start-rollout",
        success: 201,
    },
    Route {
        method: "GET",
        path: "/artifacts/{name}/aliases/{alias}/rollouts",
        operation: Operation::ListRollouts,
        function: "list-rollouts",
        success: 200,
    },
    Route {
        method: "GET",
        path: "/artifacts/{name}/aliases/{alias}/rollouts/{id}",
        operation: Operation::GetRollout,
        function: "get-rollout",
        success: 200,
    },
    // One route for pause, resume, abort and promote: each is a change of
    // the same rollout item with the same calls and the same IAM.
    Route {
        method: "POST",
        path: "/artifacts/{name}/aliases/{alias}/rollouts/{id}/{action}",
        operation: Operation::ControlRollout,
        function: "control-rollout",
        success: 200,
    },
    Route {
        method: "PATCH",
        path: "/artifacts/{name}/versions/{version}",
        operation: Operation::SetVersionStatus,
        function: "set-version-status",
        success: 200,
    },
    Route {
        method: "GET",
        path: "/search",
        operation: Operation::SearchVersions,
        function: "search-versions",
        success: 200,
    },
    // Access control (SPEC 10.4): the permission targets, one document.
    Route {
        method: "GET",
        path: "/access",
        operation: Operation::GetAccess,
        function: "get-access",
        success: 200,
    },
    Route {
        method: "PUT",
        path: "/access",
        operation: Operation::PutAccess,
        function: "put-access",
        success: 200,
    },
    Route {
        method: "GET",
        path: "/access/history",
        operation: Operation::GetAccessHistory,
        function: "get-access-history",
        success: 200,
    },
];

impl Operation {
    /// The function package (and binary, SAM id stem, event file stem).
    pub fn function_name(self) -> &'static str {
        self.route().map_or("unrouted", |r| r.function)
    }

    /// This operation's row of [`ROUTES`].
    pub fn route(self) -> Option<&'static Route> {
        ROUTES.iter().find(|r| r.operation == self)
    }

    /// What a request to this operation needs (SPEC 10.4): the action on
    /// the name in its path (none for the listings, which show only what
    /// the caller may read, and for the targets themselves), and `promote`
    /// on the alias it moves, including a pipeline's alias in a body.
    pub fn needs(self, request: &Request) -> Vec<(Action, Option<String>, Option<String>)> {
        let param = |k: &str| request.path_parameters().first(k).map(str::to_owned);
        let name = param("name");
        let on = |action| vec![(action, name.clone(), None)];
        match self {
            Self::ListArtifacts | Self::SearchVersions => Vec::new(),
            Self::GetUpload
            | Self::ListVersions
            | Self::GetVersion
            | Self::GetVersionContent
            | Self::ListAliases
            | Self::GetAlias
            | Self::ResolveAlias
            | Self::GetAliasHistory
            | Self::ListRollouts
            | Self::GetRollout => on(Action::Read),
            Self::StartUpload
            | Self::GetUploadParts
            | Self::CommitUpload
            | Self::PublishVersion => {
                let mut needs = on(Action::Write);
                // A one-request pipeline moving an alias promotes it too.
                // A body over the limit is not parsed here (the handler
                // refuses it, 413, before it acts): parsing megabytes into
                // a JSON tree would take many times their size in memory.
                let bytes: &[u8] = match request.body() {
                    Body::Text(t) => t.as_bytes(),
                    Body::Binary(b) => b,
                    _ => &[],
                };
                if bytes.len() <= crate::http::MAX_BODY_BYTES {
                    match moved_alias(bytes) {
                        MovedAlias::None => {}
                        MovedAlias::Named(alias) => {
                            needs.push((Action::Promote, name.clone(), Some(alias)));
                        }
                        MovedAlias::Unreadable => needs.push((Action::Promote, name.clone(), None)),
                    }
                }
                needs
            }
            Self::DeleteVersion | Self::ApplyRetention | Self::SetVersionStatus => {
                on(Action::Delete)
            }
            Self::PurgeArtifact => on(Action::Admin),
            Self::PutAlias
            | Self::DeleteAlias
            | Self::RollbackAlias
            | Self::StartRollout
            | Self::ControlRollout => vec![(Action::Promote, name.clone(), param("alias"))],
            Self::GetAccess | Self::PutAccess | Self::GetAccessHistory => {
                vec![(Action::Admin, None, None)]
            }
        }
    }

    /// Operations that only read and whose handler needs no [`Grant`] (it
    /// filters nothing by the caller): they may run beside the
    /// authorisation, which still decides whether their answer is given.
    pub fn reads_beside_authorization(self) -> bool {
        matches!(
            self,
            Self::GetVersion
                | Self::GetVersionContent
                | Self::ListVersions
                | Self::GetAlias
                | Self::ListAliases
                | Self::ResolveAlias
        )
    }

    /// Operations whose first round trip only reads and which write only
    /// after the authorisation said yes (they take an [`Allowed`]): their
    /// reads go beside it.
    pub fn writes_after_authorization(self) -> bool {
        matches!(
            self,
            Self::StartUpload
                | Self::CommitUpload
                | Self::PublishVersion
                | Self::DeleteVersion
                | Self::PutAlias
                | Self::DeleteAlias
                | Self::RollbackAlias
        )
    }

    /// The caller and the targets, if every need is granted; 403 if not.
    async fn authorize(self, repo: &Repository, request: &Request) -> Result<Grant> {
        let document = repo.access_targets().await?;
        let (targets, revision) = (document.targets, document.revision);
        let caller = repo.caller(&actor(request), &targets).await?;
        for (action, name, alias) in self.needs(request) {
            let need = Need {
                action,
                name: name.as_deref(),
                alias: alias.as_deref(),
            };
            crate::access::decide(&targets, &caller, &need).map_err(Error::AccessDenied)?;
        }
        Ok(Grant {
            caller,
            targets: std::sync::Arc::new(targets),
            revision,
        })
    }

    /// Runs this operation's handler, once the caller is authorised (SPEC
    /// 10.4: every route, one place). Never fails: errors become JSON bodies.
    ///
    /// Where reads go beside the authorisation, the gets issued together go
    /// as one BatchGetItem ([`artifact_store::coalesce`]): the read of the
    /// permission targets rides with the operation's own first gets, so
    /// access control costs no AWS call of its own on those routes. Only
    /// there: elsewhere every get is sent as asked (their IAM holds no
    /// BatchGetItem they do not otherwise need).
    pub async fn handle(self, repo: &Repository, mut request: Request) -> Response<Body> {
        use artifact_store::coalesce::coalescing;
        if self.reads_beside_authorization() {
            // The answer waits for the authorisation and is dropped when it
            // refuses; the reads need not wait: one round trip less.
            let answer = self.dispatch(repo, &request, Allowed::already());
            let (grant, answer) =
                coalescing(async { tokio::join!(self.authorize(repo, &request), answer) }).await;
            return match grant {
                Ok(_) => answer.unwrap_or_else(|e| error_response(&e)),
                Err(e) => error_response(&e),
            };
        }
        if self.writes_after_authorization() {
            // Its first round trip only reads: it goes beside the
            // authorisation, and nothing is written until it said yes.
            let (said, heard) = tokio::sync::oneshot::channel();
            let authorize = async {
                let grant = self.authorize(repo, &request).await;
                let _ = said.send(grant.is_ok());
                grant
            };
            let answer = self.dispatch(repo, &request, Allowed::when(heard));
            let (grant, answer) = coalescing(async { tokio::join!(authorize, answer) }).await;
            return match grant {
                Ok(_) => answer.unwrap_or_else(|e| error_response(&e)),
                Err(e) => error_response(&e),
            };
        }
        match self.authorize(repo, &request).await {
            Ok(grant) => {
                request.extensions_mut().insert(grant);
            }
            Err(e) => return error_response(&e),
        }
        // On the heap: the handlers' futures together are large, and a
        // caller polling several requests (the checker, a test) would
        // otherwise hold them all on its stack.
        self.dispatch(repo, &request, Allowed::already())
            .await
            .unwrap_or_else(|e| error_response(&e))
    }

    /// This operation's handler; `allowed`: the authorisation, for the
    /// handlers that write only after it (the others run after it).
    ///
    /// On the heap, each made by a call of its own: a debug build gives
    /// every arm's future a stack slot of its own in the frame that makes
    /// it, and an `async` match polled as deep as the SDK's calls overflowed
    /// a worker thread's stack; made here, the slots are on the stack only
    /// while the handler's future is made, not while it runs.
    fn dispatch<'a>(
        self,
        repo: &'a Repository,
        request: &'a Request,
        allowed: Allowed,
    ) -> futures::future::BoxFuture<'a, Result<Response<Body>>> {
        match self {
            Self::ListArtifacts => Box::pin(list_artifacts(repo, request)),
            Self::StartUpload => Box::pin(start_upload(repo, request, allowed)),
            Self::GetUpload => Box::pin(get_upload(repo, request)),
            Self::GetUploadParts => Box::pin(get_upload_parts(repo, request)),
            Self::CommitUpload => Box::pin(commit_upload(repo, request, allowed)),
            Self::ListVersions => Box::pin(list_versions(repo, request)),
            Self::PublishVersion => Box::pin(publish_version(repo, request, allowed)),
            Self::GetVersion => Box::pin(get_version(repo, request)),
            Self::GetVersionContent => Box::pin(get_version_content(repo, request)),
            Self::DeleteVersion => Box::pin(delete_version(repo, request, allowed)),
            Self::PurgeArtifact => Box::pin(purge_artifact(repo, request)),
            Self::ApplyRetention => Box::pin(apply_retention(repo, request)),
            Self::PutAlias => Box::pin(put_alias(repo, request, allowed)),
            Self::ListAliases => Box::pin(list_aliases(repo, request)),
            Self::GetAlias => Box::pin(get_alias(repo, request)),
            Self::DeleteAlias => Box::pin(delete_alias(repo, request, allowed)),
            Self::ResolveAlias => Box::pin(resolve_alias(repo, request)),
            Self::GetAliasHistory => Box::pin(get_alias_history(repo, request)),
            Self::RollbackAlias => Box::pin(rollback_alias(repo, request, allowed)),
            Self::StartRollout => Box::pin(start_rollout(repo, request)),
            Self::ListRollouts => Box::pin(list_rollouts(repo, request)),
            Self::GetRollout => Box::pin(get_rollout(repo, request)),
            Self::ControlRollout => Box::pin(control_rollout(repo, request)),
            Self::SetVersionStatus => Box::pin(set_version_status(repo, request)),
            Self::SearchVersions => Box::pin(search_versions(repo, request)),
            Self::GetAccess => Box::pin(get_access(repo, request)),
            Self::PutAccess => Box::pin(put_access(repo, request)),
            Self::GetAccessHistory => Box::pin(get_access_history(repo, request)),
        }
    }
}

/// Why a request matches no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoRoute {
    /// No route has this path.
    NotFound,
    /// The path exists with other methods (for the `Allow` header).
    MethodNotAllowed(Vec<&'static str>),
}

/// Matches a method and path against the route table: the operation and its
/// path parameters (still percent-encoded, as in the URL).
pub fn match_route(
    method: &Method,
    path: &str,
) -> std::result::Result<(Operation, BTreeMap<String, String>), NoRoute> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let mut allowed = Vec::new();
    for route in ROUTES {
        let pattern: Vec<&str> = route.path.split('/').collect();
        if pattern.len() != segments.len() {
            continue;
        }
        let mut params = BTreeMap::new();
        let fits = pattern.iter().zip(&segments).all(|(p, s)| {
            if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                params.insert(name.to_owned(), (*s).to_owned());
                !s.is_empty()
            } else {
                p == s
            }
        });
        if fits {
            if route.method == method.as_str() {
                return Ok((route.operation, params));
            }
            allowed.push(route.method);
        }
    }
    if allowed.is_empty() {
        Err(NoRoute::NotFound)
    } else {
        Err(NoRoute::MethodNotAllowed(allowed))
    }
}

pub async fn list_artifacts(repo: &Repository, request: &Request) -> Result<Response<Body>> {
    let (limit, cursor) = paging(request)?;
    let page = repo
        .list_artifact_names(limit, cursor.as_deref(), &|n| readable(request, n))
        .await?;
    Ok(json(StatusCode::OK, &page))
}

/// What an authorised request carries: the caller and the targets read for
/// it (listings show only names the caller may read).
#[derive(Debug, Clone)]
pub struct Grant {
    pub caller: crate::access::Caller,
    pub targets: std::sync::Arc<Targets>,
    /// The revision of the targets the decision read.
    pub revision: u64,
}

/// Whether the request's caller may read `name` (a request that was not
/// authorised, as in tests calling a handler directly: yes). Only the
/// routes authorised before their handler runs carry a [`Grant`]: a route
/// that filters with this never runs beside its authorisation (the
/// contract test `the_routes_that_filter_by_the_caller_run_after_their_authorisation`).
fn readable(request: &Request, name: &str) -> bool {
    request.extensions().get::<Grant>().is_none_or(|g| {
        let need = Need {
            action: Action::Read,
            name: Some(name),
            alias: None,
        };
        crate::access::decide(&g.targets, &g.caller, &need).is_ok()
    })
}

/// `GET /access`: the permission targets and their revision (`ETag`); with
/// `?principal=ARN&action=A&name=N[&alias=X]`, whether they let that
/// principal do that (`{"allowed", "reason"}`), as every route would decide.
pub async fn get_access(repo: &Repository, request: &Request) -> Result<Response<Body>> {
    let document = repo.access_targets().await?;
    let testing = ["principal", "action", "name", "alias"]
        .iter()
        .any(|k| query(request, k).is_some());
    if testing {
        let principal = query(request, "principal")
            .filter(|p| !p.is_empty())
            .ok_or_else(|| Error::InvalidRequest("a test needs principal=".into()))?;
        let action: Action = match query(request, "action") {
            Some(a) => {
                serde_json::from_value(serde_json::Value::String(a.clone())).map_err(|_| {
                    Error::InvalidRequest(format!(
                        "action {a:?} is not read, write, delete, promote or admin"
                    ))
                })?
            }
            None => return Err(Error::InvalidRequest("a test needs action=".into())),
        };
        let name = query(request, "name");
        if let Some(n) = &name {
            n.parse::<ArtifactName>()?;
        }
        let alias = query(request, "alias");
        if alias
            .as_ref()
            .is_some_and(|a| a.is_empty() || a.len() > 1000)
        {
            return Err(Error::InvalidRequest(
                "alias= must be 1 to 1000 characters".into(),
            ));
        }
        if principal.len() > 2048 {
            return Err(Error::InvalidRequest(
                "principal= is at most 2048 characters".into(),
            ));
        }
        // Every route that promotes names its alias; a test without one
        // would be answered for an alias no route moves.
        if action == Action::Promote && name.is_some() && alias.is_none() {
            return Err(Error::InvalidRequest(
                "a promote test names the alias (alias=): promote is granted per alias".into(),
            ));
        }
        let need = Need {
            action,
            name: name.as_deref(),
            alias: alias.as_deref(),
        };
        let principal = repo.caller(&principal, &document.targets).await?;
        let decision = crate::access::decide(&document.targets, &principal, &need);
        return Ok(json(
            StatusCode::OK,
            &serde_json::json!({
                "allowed": decision.is_ok(),
                "reason": decision.err(),
                "revision": document.revision,
            }),
        ));
    }
    if let Some(other) = request
        .query_string_parameters()
        .iter()
        .map(|(k, _)| k)
        .find(|k| !["principal", "action", "name", "alias"].contains(k))
    {
        return Err(Error::InvalidRequest(format!(
            "unknown parameter {other:?}: a test takes principal, action, name, alias"
        )));
    }
    Ok(with_etag(
        json(StatusCode::OK, &document),
        document.revision,
    ))
}

/// `PUT /access`: replaces the permission targets (`If-Match` on their
/// revision). A document that would leave the caller unable to manage
/// them is refused (400), so nobody locks themselves out.
pub async fn put_access(repo: &Repository, request: &Request) -> Result<Response<Body>> {
    let targets: Targets = body(request)?;
    let caller = actor(request);
    let manage = Need {
        action: Action::Admin,
        name: None,
        alias: None,
    };
    let as_caller = repo.caller(&caller, &targets).await?;
    if let Err(why) = crate::access::decide(&targets, &as_caller, &manage) {
        return Err(Error::InvalidRequest(format!(
            "these targets would lock you out ({why}); keep a target granting you admin on names [\"*\"]"
        )));
    }
    let asked = match precondition(request)? {
        crate::model::Precondition::Revision(r) => Some(r),
        crate::model::Precondition::None => None,
        _ => {
            return Err(Error::InvalidRequest(
                "PUT /access takes If-Match: \"<revision>\" only".into(),
            ));
        }
    };
    // The change is made on the targets that said the caller is an admin:
    // one landing between that decision and this write (say, another
    // admin's, taking this caller's admin away) is not overwritten by a
    // change it did not allow.
    let decided = request.extensions().get::<Grant>().map(|g| g.revision);
    let expected = match (asked, decided) {
        (Some(r), Some(d)) if r != d => {
            return Err(Error::AccessModified(format!(
                "the permission targets are at revision {d}, not {r}; read them again"
            )));
        }
        (Some(r), _) => Some(r),
        (None, d) => d,
    };
    let document = repo.put_access_targets(&targets, &caller, expected).await?;
    Ok(with_etag(
        json(StatusCode::OK, &document),
        document.revision,
    ))
}

/// `GET /access/history`: every change of the targets, newest first.
pub async fn get_access_history(repo: &Repository, request: &Request) -> Result<Response<Body>> {
    let (limit, cursor) = paging(request)?;
    let page = repo.access_history(limit, cursor.as_deref()).await?;
    Ok(json(StatusCode::OK, &page))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartUploadBody {
    sha256: String,
    #[serde(deserialize_with = "whole_number")]
    size: u64,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "optional_whole_number")]
    part_size: Option<u64>,
    /// Commit at once when the artifact holds the bytes (SPEC 4.1, v3).
    #[serde(default)]
    commit: bool,
    #[serde(default)]
    publish: bool,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    alias: Option<Object<AliasMoveBody>>,
}

/// The alias a start-upload or commit body moves, read as its handler
/// reads it (the same [`AliasMoveBody`], so no form of the body names one
/// alias to the authorisation and another, or none, to the handler).
#[derive(Debug, PartialEq, Eq)]
enum MovedAlias {
    None,
    Named(String),
    /// An `alias` the handler will refuse (400): authorised as a move of
    /// an alias no alias pattern names, so a caller only some aliases are
    /// granted for hears 403, never a 400 that tells it the rest is fine.
    Unreadable,
}

fn moved_alias(bytes: &[u8]) -> MovedAlias {
    #[derive(Deserialize)]
    struct Fields {
        #[serde(default)]
        alias: Option<Object<AliasMoveBody>>,
    }
    match serde_json::from_slice::<Fields>(bytes) {
        Ok(Fields {
            alias: Some(Object(a)),
        }) => MovedAlias::Named(a.name),
        Ok(Fields { alias: None }) => MovedAlias::None,
        // Not JSON, not an object: the handler refuses it whatever it
        // holds. An object with an alias (however given): a move.
        Err(_) => match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(v) if v.get("alias").is_some_and(|a| !a.is_null()) => MovedAlias::Unreadable,
            _ => MovedAlias::None,
        },
    }
}

/// The pipeline fields of a commit (and of a start upload with `commit`).
struct PipelineBody {
    publish: bool,
    force: bool,
    alias: Option<Object<AliasMoveBody>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasMoveBody {
    name: String,
    #[serde(default)]
    weight: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "optional_whole_number")]
    if_revision: Option<u64>,
    #[serde(default)]
    message: Option<String>,
}

impl PipelineBody {
    /// Parsed into core values; a force or an alias without publish is a 400.
    fn parse(self) -> Result<Pipeline> {
        if self.force && !self.publish {
            return Err(Error::InvalidRequest("force needs publish: true".into()));
        }
        let alias = match self.alias {
            None => None,
            Some(Object(a)) => {
                let message = a.message.filter(|m| !m.is_empty());
                check_message(message.as_deref())?;
                Some(AliasMove {
                    name: a.name.parse()?,
                    weight: match a.weight.filter(|w| !w.is_null()) {
                        Some(w) => Some(weight_field(w)?),
                        None => None,
                    },
                    if_revision: a.if_revision,
                    message,
                })
            }
        };
        if alias.is_some() && !self.publish {
            return Err(Error::InvalidRequest(
                "alias needs publish: true (the alias moves to the version published)".into(),
            ));
        }
        Ok(Pipeline {
            publish: self.publish,
            force: self.force,
            alias,
        })
    }
}

/// Starts an upload; nothing is written before `allowed` says yes.
pub async fn start_upload(
    repo: &Repository,
    request: &Request,
    mut allowed: Allowed,
) -> Result<Response<Body>> {
    let request_ref = request;
    let name: ArtifactName = path(request, "name")?;
    let b: StartUploadBody = body(request)?;
    let pipeline = PipelineBody {
        publish: b.publish,
        force: b.force,
        alias: b.alias,
    }
    .parse()?;
    if !b.commit && !pipeline.is_empty() {
        return Err(Error::InvalidRequest(
            "publish and alias at start upload need commit: true".into(),
        ));
    }
    let request = UploadRequest {
        sha256: b.sha256,
        size: b.size,
        content_type: b.content_type,
        metadata: b.metadata,
        part_size: b.part_size,
        key: idempotency_key(request_ref)?,
    };
    if b.commit {
        let outcome = repo
            .start_and_commit(&name, request, &actor(request_ref), &pipeline, allowed)
            .await?;
        let status = match outcome {
            StartOutcome::Committed { .. } => StatusCode::OK,
            StartOutcome::Ticket(_) => StatusCode::CREATED,
        };
        return Ok(json(status, &outcome));
    }
    allowed.wait().await?;
    let ticket = repo
        .create_upload(&name, request, &actor(request_ref))
        .await?;
    // A retry (same Idempotency-Key) of a start whose upload was committed
    // since: nothing is left to start.
    if ticket.state != crate::rows::UploadState::Pending.as_str() {
        return Err(Error::Replayed {
            code: "AlreadyApplied",
            kind: crate::error::ErrorKind::Conflict,
            message: format!(
                "upload {} of {name}, started by this request, is {} already",
                ticket.upload_id, ticket.state
            ),
        });
    }
    let status = if ticket.exists {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(json(status, &ticket))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitBody {
    upload_id: String,
    #[serde(default)]
    publish: bool,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    alias: Option<Object<AliasMoveBody>>,
}

/// Commits an upload; nothing is written before `allowed` says yes.
pub async fn commit_upload(
    repo: &Repository,
    request: &Request,
    allowed: Allowed,
) -> Result<Response<Body>> {
    let name: ArtifactName = path(request, "name")?;
    let b: CommitBody = body(request)?;
    let pipeline = PipelineBody {
        publish: b.publish,
        force: b.force,
        alias: b.alias,
    }
    .parse()?;
    let outcome = repo
        .commit_pipeline(&name, &b.upload_id, &actor(request), &pipeline, allowed)
        .await?;
    let status = match outcome {
        PipelineOutcome::Committed(_) => StatusCode::OK,
        PipelineOutcome::Verifying { .. } => StatusCode::ACCEPTED,
    };
    Ok(json(status, &outcome))
}

pub async fn get_upload(repo: &Repository, request: &Request) -> Result<Response<Body>> {
    let name: ArtifactName = path(request, "name")?;
    let upload_id: UploadId = path(request, "upload_id")?;
    Ok(json(
        StatusCode::OK,
        &repo.upload_state(&name, upload_id.as_str()).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartsBody {
    parts: Vec<Object<PartBody>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartBody {
    #[serde(deserialize_with = "whole_number")]
    number: u64,
    sha256: String,
}

pub async fn get_upload_parts(repo: &Repository, request: &Request) -> Result<Response<Body>> {
    let name: ArtifactName = path(request, "name")?;
    let upload_id: UploadId = path(request, "upload_id")?;
    let b: PartsBody = body(request)?;
    let parts = b
        .parts
        .into_iter()
        .map(|Object(p)| {
            let number = u32::try_from(p.number)
                .ok()
                .filter(|n| *n >= 1 && u64::from(*n) <= crate::repository::MAX_PARTS)
                .ok_or_else(|| {
                    Error::InvalidRequest(format!(
                        "part number {} is outside 1..={}",
                        p.number,
                        crate::repository::MAX_PARTS
                    ))
                })?;
            Ok(PartRequest {
                number,
                sha256: p.sha256.parse()?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(json(
        StatusCode::OK,
        &repo
            .upload_part_urls(&name, upload_id.as_str(), &parts)
            .await?,
    ))
}

pub async fn list_versions(repo: &Repository, request: &Request) -> Result<Response<Body>> {
    let name: ArtifactName = path(request, "name")?;
    let (limit, cursor) = paging(request)?;
    let content: Option<Sha256> = query(request, "sha256").map(|d| d.parse()).transpose()?;
    let metadata = meta_terms(request)?;
    let page = repo
        .list_versions_matching(&name, limit, cursor.as_deref(), content.as_ref(), &metadata)
        .await?;
    Ok(json(StatusCode::OK, &page))
}

/// The `?meta.KEY=VALUE` terms of a request (exact match, ANDed): keys as
/// uploads take them, at most `MAX_SEARCH_TERMS`, each key once.
fn meta_terms(request: &Request) -> Result<BTreeMap<String, String>> {
    let params = request.query_string_parameters();
    let mut terms = BTreeMap::new();
    for (key, value) in params.iter() {
        let Some(k) = key.strip_prefix("meta.") else {
            continue;
        };
        let valid = !k.is_empty()
            && k.len() <= crate::limits::metadata_limits::MAX_KEY_LEN
            && k.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b));
        if !valid {
            return Err(Error::InvalidRequest(format!(
                "meta.{k}: metadata keys are 1-64 of a-z 0-9 - _"
            )));
        }
        if value.len() > 1024 || value.chars().any(char::is_control) {
            return Err(Error::InvalidRequest(format!(
                "meta.{k}: the value must be at most 1024 printable characters"
            )));
        }
        if terms.insert(k.to_owned(), value.to_owned()).is_some() {
            return Err(Error::InvalidRequest(format!("meta.{k} is given twice")));
        }
    }
    if terms.len() > crate::repository::MAX_SEARCH_TERMS {
        return Err(Error::InvalidRequest(format!(
            "at most {} meta. terms",
            crate::repository::MAX_SEARCH_TERMS
        )));
    }
    Ok(terms)
}

/// `GET /search?sha256=…` or `?meta.k=v[&meta.k2=v2]` (SPEC 10.3).
pub async fn search_versions(repo: &Repository, request: &Request) -> Result<Response<Body>> {
    let (limit, cursor) = paging(request)?;
    if let Some(q) = query(request, "q") {
        if let Some(other) = request
            .query_string_parameters()
            .iter()
            .map(|(k, _)| k)
            .find(|k| !["q", "limit", "cursor"].contains(k))
        {
            return Err(Error::InvalidRequest(format!(
                "q= is the whole search: {other:?} cannot be added to it"
            )));
        }
        let parsed = crate::query::parse(&q)?;
        let page = repo
            .search_expression(&parsed, limit, cursor.as_deref(), &|n| readable(request, n))
            .await?;
        return Ok(json(StatusCode::OK, &page));
    }
    let content: Option<Sha256> = query(request, "sha256").map(|d| d.parse()).transpose()?;
    let metadata = meta_terms(request)?;
    if let Some(unknown) = request
        .query_string_parameters()
        .iter()
        .map(|(k, _)| k)
        .find(|k| !k.starts_with("meta.") && !["sha256", "limit", "cursor"].contains(k))
    {
        return Err(Error::InvalidRequest(format!(
            "unknown search parameter {unknown:?}: use sha256=, meta.KEY=VALUE or q="
        )));
    }
    let search = match (content, metadata.is_empty()) {
        (Some(digest), true) => SearchQuery::Sha256(digest),
        (None, false) => SearchQuery::Metadata(metadata),
        (Some(_), false) => {
            return Err(Error::InvalidRequest(
                "search by sha256= or by meta.KEY=VALUE, not both".into(),
            ));
        }
        (None, true) => {
            return Err(Error::InvalidRequest(
                "search needs sha256= or at least one meta.KEY=VALUE".into(),
            ));
        }
    };
    let page = repo
        .search(&search, limit, cursor.as_deref(), &|n| readable(request, n))
        .await?;
    Ok(json(StatusCode::OK, &page))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    expected_status: Option<String>,
}

/// `PATCH /artifacts/{name}/versions/{version}`: the version's status.
pub async fn set_version_status(repo: &Repository, request: &Request) -> Result<Response<Body>> {
    let name: ArtifactName = path(request, "name")?;
    let version: Version = path(request, "version")?;
    let b: StatusBody = body(request)?;
    let status: VersionStatus = b.status.parse()?;
    let expected = b
        .expected_status
        .map(|s| s.parse::<VersionStatus>())
        .transpose()?;
    let message = b.message.filter(|m| !m.is_empty());
    check_message(message.as_deref())?;
    let change = StatusChange {
        actor: actor(request),
        message,
        expected,
    };
    let artifact = repo
        .set_version_status(&name, version, status, &change)
        .await?;
    Ok(json(StatusCode::OK, &artifact))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    #[serde(default)]
    force: bool,
}

pub async fn publish_version(
    repo: &Repository,
    request: &Request,
    allowed: Allowed,
) -> Result<Response<Body>> {
    let name: ArtifactName = path(request, "name")?;
    let b: PublishBody = body(request)?;
    match repo
        .publish(
            &name,
            b.force,
            &actor(request),
            idempotency_key(request)?.as_deref(),
            allowed,
        )
        .await?
    {
        PublishOutcome::Published(published) => {
            let status = if published.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(json(status, &published.artifact))
        }
        // A large LATEST of the library, copied into the blob store and
        // verified in the background: its upload publishes it.
        PublishOutcome::Adopting { upload_id } => Ok(json(
            StatusCode::ACCEPTED,
            &serde_json::json!({
                "upload_id": upload_id,
                "state": crate::rows::UploadState::Verifying.as_str(),
            }),
        )),
    }
}

pub async fn get_version(repo: &Repository, request: &Request) -> Result<Response<Body>> {
    let name: ArtifactName = path(request, "name")?;
    let version: Version = path(request, "version")?;
    Ok(json(
        StatusCode::OK,
        &repo.get_version(&name, version).await?,
    ))
}

pub async fn get_version_content(repo: &Repository, request: &Request) -> Result<Response<Body>> {
    let name: ArtifactName = path(request, "name")?;
    let version: Version = path(request, "version")?;
    let artifact = repo.get_version(&name, version).await?;
    Ok(redirect(
        artifact.download_url.as_deref().unwrap_or_default(),
    ))
}

pub async fn delete_version(
    repo: &Repository,
    request: &Request,
    allowed: Allowed,
) -> Result<Response<Body>> {
    let name: ArtifactName = path(request, "name")?;
    let version: Version = path(request, "version")?;
    let key = idempotency_key(request)?;
    repo.delete_version(&name, version, key.as_deref(), allowed)
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

pub async fn purge_artifact(repo: &Repository, request: &Request) -> Result<Response<Body>> {
    let name: ArtifactName = path(request, "name")?;
    repo.purge_artifact(&name).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionBody {
    #[serde(default, deserialize_with = "optional_whole_number")]
    keep_last_n: Option<u32>,
    #[serde(default, deserialize_with = "optional_whole_number")]
    purge_older_than_secs: Option<u64>,
    #[serde(default)]
    dry_run: bool,
}

pub async fn apply_retention(repo: &Repository, request: &Request) -> Result<Response<Body>> {
    let name: ArtifactName = path(request, "name")?;
    let b: RetentionBody = body(request)?;
    let defaults = repo.retention().policy;
    let policy = RetentionPolicy {
        keep_last_n: b.keep_last_n.unwrap_or(defaults.keep_last_n),
        older_than: b
            .purge_older_than_secs
            .map(Duration::from_secs)
            .unwrap_or(defaults.older_than),
    };
    let report = repo.purge_versions(&name, policy, b.dry_run).await?;
    Ok(json(StatusCode::OK, &report))
}

/// Read loosely, then validated field by field, so that each mistake gets
/// its own error code (a weight of `1.5` is an `InvalidWeight`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutAliasBody {
    #[serde(default)]
    version: Option<serde_json::Value>,
    #[serde(default)]
    secondary_version: Option<serde_json::Value>,
    #[serde(default)]
    secondary_version_weight: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
    /// Cancels the rollout holding the alias (SPEC 10.1).
    #[serde(default)]
    cancel_rollout: bool,
}

/// Longest `message` of an alias change.
pub const MAX_MESSAGE_CHARS: usize = 1024;

/// A change's who, why and on which condition, from the request.
fn check_message(message: Option<&str>) -> Result<()> {
    if let Some(m) = message
        && (m.chars().count() > MAX_MESSAGE_CHARS || m.chars().any(char::is_control))
    {
        return Err(Error::InvalidRequest(format!(
            "message must be at most {MAX_MESSAGE_CHARS} printable characters"
        )));
    }
    Ok(())
}

fn change_request(
    request: &Request,
    message: Option<String>,
    cancel_rollout: bool,
) -> Result<ChangeRequest> {
    check_message(message.as_deref())?;
    Ok(ChangeRequest {
        actor: actor(request),
        message: message.filter(|m| !m.is_empty()),
        precondition: precondition(request)?,
        cancel_rollout,
        key: idempotency_key(request)?,
    })
}

fn version_field(field: &str, value: serde_json::Value) -> Result<Version> {
    match value {
        serde_json::Value::String(s) => s.parse(),
        other => Err(Error::InvalidVersion(format!(
            "{field} must be a string like \"3\", not {other}"
        ))),
    }
}

fn weight_field(value: serde_json::Value) -> Result<Weight> {
    match value
        .as_number()
        .and_then(integer)
        .and_then(|w| i64::try_from(w).ok())
    {
        Some(w) => Weight::new(w),
        None => Err(crate::Error::InvalidWeight(format!(
            "secondary_version_weight must be an integer 0..=99, not {value}"
        ))),
    }
}

/// A JSON number that is an integer in JSON Schema's sense: `12` or `12.0`
/// (OpenAPI 3.1 documents validate both), but not `12.5`.
pub fn integer(n: &serde_json::Number) -> Option<i128> {
    n.as_u64()
        .map(i128::from)
        .or_else(|| n.as_i64().map(i128::from))
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 1.0e20)
                .map(|f| f as i128)
        })
}

fn whole_number<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i128>,
{
    let n = serde_json::Number::deserialize(d)?;
    integer(&n)
        .and_then(|i| T::try_from(i).ok())
        .ok_or_else(|| {
            serde::de::Error::custom(format!("{n} is not a non-negative integer in range"))
        })
}

fn optional_whole_number<'de, D, T>(d: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i128>,
{
    whole_number(d).map(Some)
}

pub async fn put_alias(
    repo: &Repository,
    request: &Request,
    allowed: Allowed,
) -> Result<Response<Body>> {
    let name: ArtifactName = path(request, "name")?;
    let alias: AliasName = path(request, "alias")?;
    let b: PutAliasBody = body(request)?;
    let version = match b.version {
        None | Some(serde_json::Value::Null) => Version::Latest,
        Some(v) => version_field("version", v)?,
    };
    let secondary_version = b.secondary_version.filter(|v| !v.is_null());
    let weight = b.secondary_version_weight.filter(|v| !v.is_null());
    let secondary = match (secondary_version, weight) {
        (Some(v), Some(w)) => Some((version_field("secondary_version", v)?, weight_field(w)?)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(crate::Error::InvalidWeight(
                "secondary_version needs a secondary_version_weight".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(crate::Error::InvalidWeight(
                "secondary_version_weight needs a secondary_version".into(),
            ));
        }
    };
    let target = AliasTarget { version, secondary };
    let change = change_request(request, b.message, b.cancel_rollout)?;
    let ask = AliasAsk::Put(target);
    let alias = repo
        .change_alias_allowed(&name, &alias, ask, &change, allowed)
        .await?
        .ok_or_else(|| Error::internal("put alias", "a put left no alias"))?;
    Ok(with_alias_etag(json(StatusCode::OK, &alias), &alias))
}

pub async fn list_aliases(repo: &Repository, request: &Request) -> Result<Response<Body>> {
    let name: ArtifactName = path(request, "name")?;
    let (limit, cursor) = paging(request)?;
    Ok(json(
        StatusCode::OK,
        &repo.list_aliases(&name, limit, cursor.as_deref()).await?,
    ))
}

/// `GET …/aliases/{alias}`, or with `?at=<RFC 3339>` as it was then.
pub async fn get_alias(repo: &Repository, request: &Request) -> Result<Response<Body>> {
    let name: ArtifactName = path(request, "name")?;
    let alias: AliasName = path(request, "alias")?;
    let found = match query(request, "at") {
        None => repo.get_alias(&name, &alias).await?,
        Some(at) => {
            let at =
                time::OffsetDateTime::parse(&at, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| {
                        Error::InvalidRequest(format!(
                            "at {at:?} is not an RFC 3339 time like 2026-11-21T17:00:00Z"
                        ))
                    })?;
            repo.get_alias_at(&name, &alias, at).await?
        }
    };
    Ok(with_alias_etag(json(StatusCode::OK, &found), &found))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteAliasBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    cancel_rollout: bool,
}

pub async fn delete_alias(
    repo: &Repository,
    request: &Request,
    allowed: Allowed,
) -> Result<Response<Body>> {
    let name: ArtifactName = path(request, "name")?;
    let alias: AliasName = path(request, "alias")?;
    let b: DeleteAliasBody = body(request)?;
    let change = change_request(request, b.message, b.cancel_rollout)?;
    repo.change_alias_allowed(&name, &alias, AliasAsk::Delete, &change, allowed)
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

pub async fn get_alias_history(repo: &Repository, request: &Request) -> Result<Response<Body>> {
    let name: ArtifactName = path(request, "name")?;
    let alias: AliasName = path(request, "alias")?;
    let (limit, cursor) = paging(request)?;
    Ok(json(
        StatusCode::OK,
        &repo
            .alias_history(&name, &alias, limit, cursor.as_deref())
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    #[serde(default, deserialize_with = "optional_whole_number")]
    to_revision: Option<u64>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    cancel_rollout: bool,
}

pub async fn rollback_alias(
    repo: &Repository,
    request: &Request,
    allowed: Allowed,
) -> Result<Response<Body>> {
    let name: ArtifactName = path(request, "name")?;
    let alias: AliasName = path(request, "alias")?;
    let b: RollbackBody = body(request)?;
    if b.to_revision == Some(0) {
        return Err(Error::InvalidRequest(
            "to_revision counts from 1 (the alias's first change)".into(),
        ));
    }
    let change = change_request(request, b.message, b.cancel_rollout)?;
    let ask = AliasAsk::Rollback {
        to_revision: b.to_revision,
    };
    let alias = repo
        .change_alias_allowed(&name, &alias, ask, &change, allowed)
        .await?
        .ok_or_else(|| Error::internal("rollback", "a rollback left no alias"))?;
    Ok(with_alias_etag(json(StatusCode::OK, &alias), &alias))
}

pub async fn resolve_alias(repo: &Repository, request: &Request) -> Result<Response<Body>> {
    let name: ArtifactName = path(request, "name")?;
    let alias: AliasName = path(request, "alias")?;
    let key = query(request, "key");
    Ok(json(
        StatusCode::OK,
        &repo.resolve_alias(&name, &alias, key.as_deref()).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRolloutBody {
    version: serde_json::Value,
    #[serde(default)]
    steps: Option<Vec<Object<StepBody>>>,
    #[serde(default)]
    preset: Option<String>,
    #[serde(default)]
    alarms: Vec<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepBody {
    weight: serde_json::Value,
    #[serde(default)]
    hold: Option<String>,
}

/// `POST …/rollouts`: a plan (`steps` or `preset`), alarms, the version.
pub async fn start_rollout(repo: &Repository, request: &Request) -> Result<Response<Body>> {
    use crate::rollout;
    let name: ArtifactName = path(request, "name")?;
    let alias: AliasName = path(request, "alias")?;
    let b: StartRolloutBody = body(request)?;
    let version = version_field("version", b.version)?;
    let steps = match (b.steps, b.preset) {
        (Some(steps), None) => rollout::plan(
            steps
                .into_iter()
                .map(|Object(s)| {
                    let weight = s
                        .weight
                        .as_number()
                        .and_then(integer)
                        .and_then(|w| u8::try_from(w).ok())
                        .filter(|w| (1..=100).contains(w))
                        .ok_or_else(|| {
                            Error::InvalidWeight(format!(
                                "a step's weight is an integer 1..=100, not {}",
                                s.weight
                            ))
                        })?;
                    let hold = s.hold.as_deref().map(rollout::parse_hold).transpose()?;
                    Ok(rollout::Step { weight, hold })
                })
                .collect::<Result<Vec<_>>>()?,
        )?,
        (None, Some(preset)) => rollout::preset(&preset)?,
        _ => {
            return Err(Error::InvalidRequest(
                "give either steps or a preset (e.g. \"canary-10-5m\")".into(),
            ));
        }
    };
    if b.alarms.len() > rollout::MAX_ALARMS {
        return Err(Error::InvalidRequest(format!(
            "a rollout watches at most {} alarms",
            rollout::MAX_ALARMS
        )));
    }
    let (prefix, home) = (repo.rollout_alarm_prefix(), repo.alarm_home());
    let mut alarms = b
        .alarms
        .iter()
        .map(|a| rollout::alarm_name(a, prefix, home))
        .collect::<Result<Vec<_>>>()?;
    alarms.dedup();
    let message = b.message.filter(|m| !m.is_empty());
    check_message(message.as_deref())?;
    let started = repo
        .start_rollout(
            &name,
            &alias,
            crate::model::RolloutRequest {
                version,
                steps,
                alarms,
                message,
            },
            &actor(request),
        )
        .await?;
    Ok(with_etag(
        json(StatusCode::CREATED, &started),
        started.revision,
    ))
}

/// `GET …/rollouts[?state=active]`, newest first.
pub async fn list_rollouts(repo: &Repository, request: &Request) -> Result<Response<Body>> {
    let name: ArtifactName = path(request, "name")?;
    let alias: AliasName = path(request, "alias")?;
    let (limit, cursor) = paging(request)?;
    let state = query(request, "state")
        .map(|s| crate::rollout::RolloutState::parse(&s))
        .transpose()?;
    Ok(json(
        StatusCode::OK,
        &repo
            .list_rollouts(&name, &alias, state, limit, cursor.as_deref())
            .await?,
    ))
}

fn rollout_id(request: &Request) -> Result<String> {
    let id: RolloutIdParam = path(request, "id")?;
    Ok(id.0)
}

/// A rollout id from the path, checked.
struct RolloutIdParam(String);

impl std::str::FromStr for RolloutIdParam {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        crate::repository::check_rollout_id(s)?;
        Ok(Self(s.to_owned()))
    }
}

pub async fn get_rollout(repo: &Repository, request: &Request) -> Result<Response<Body>> {
    let name: ArtifactName = path(request, "name")?;
    let alias: AliasName = path(request, "alias")?;
    let id = rollout_id(request)?;
    let rollout = repo.get_rollout(&name, &alias, &id).await?;
    Ok(json(StatusCode::OK, &rollout))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlRolloutBody {
    #[serde(default)]
    message: Option<String>,
}

/// `POST …/rollouts/{id}/pause|resume|abort|promote`.
pub async fn control_rollout(repo: &Repository, request: &Request) -> Result<Response<Body>> {
    let name: ArtifactName = path(request, "name")?;
    let alias: AliasName = path(request, "alias")?;
    let id = rollout_id(request)?;
    let action: crate::rollout::RolloutAction = path(request, "action")?;
    let b: ControlRolloutBody = body(request)?;
    let message = b.message.filter(|m| !m.is_empty());
    check_message(message.as_deref())?;
    let rollout = repo
        .act_on_rollout(&name, &alias, &id, action, &actor(request), message)
        .await?;
    Ok(json(StatusCode::OK, &rollout))
}

/// Start-up shared by every function and the local server: tracing, config,
/// SDK clients. A bad setting is reported here, before serving.
pub async fn init() -> std::result::Result<Repository, crate::ConfigError> {
    let config = crate::Config::from_env()?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let repo = Repository::new(&sdk, &config);
    // Deployed, committed multipart uploads are verified by `verify-upload`;
    // without it (the local server), by a task of this process.
    Ok(match config.verify_function {
        Some(function) => repo.with_verifier(Verifier::Lambda {
            client: aws_sdk_lambda::Client::new(&sdk),
            function,
        }),
        None => repo,
    })
}

/// The whole `main` of a Lambda function: tracing (the runtime's default
/// subscriber: `AWS_LAMBDA_LOG_LEVEL`, `AWS_LAMBDA_LOG_FORMAT`), configuration
/// and clients once per cold start, then the handler for every event.
pub async fn serve(operation: Operation) -> std::result::Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let repo = match init().await {
        Ok(repo) => repo,
        Err(e) => {
            eprintln!("{}: {e}", operation.function_name());
            std::process::exit(1);
        }
    };
    let repo = &repo;
    lambda_http::run(lambda_http::service_fn(move |event: Request| async move {
        Ok::<_, std::convert::Infallible>(operation.handle(repo, event).await)
    }))
    .await
}
