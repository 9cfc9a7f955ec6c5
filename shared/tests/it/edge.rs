//! The edge's own rules, without the emulator: the route table, request
//! headers, the stream records the mirror reads, the local driver's
//! period.

mod routes {
    use lambda_http::Body;
    use shared::access::Action;
    use shared::api::{Operation, ROUTES, integer};

    #[test]
    fn each_operation_and_each_function_has_exactly_one_route() {
        let operations: std::collections::HashSet<_> = ROUTES.iter().map(|r| r.operation).collect();
        let functions: std::collections::HashSet<_> = ROUTES.iter().map(|r| r.function).collect();
        assert_eq!(operations.len(), ROUTES.len());
        assert_eq!(functions.len(), ROUTES.len());
        for route in ROUTES {
            assert_eq!(route.operation.function_name(), route.function);
        }
    }

    #[test]
    fn every_route_needs_a_permission_but_the_listings_which_filter() {
        use lambda_http::RequestExt;
        for route in ROUTES {
            let params: std::collections::HashMap<String, String> = [
                ("name", "app"),
                ("alias", "prod"),
                ("version", "1"),
                ("upload_id", "u"),
                ("id", "r"),
                ("action", "pause"),
            ]
            .into_iter()
            .filter(|(k, _)| route.path.contains(&format!("{{{k}}}")))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            let request = lambda_http::http::Request::builder()
                .body(Body::Text(r#"{"alias": {"name": "prod"}}"#.into()))
                .expect("a request")
                .with_path_parameters(params);
            let needs = route.operation.needs(&request);
            let actions: Vec<Action> = needs.iter().map(|(a, _, _)| *a).collect();
            let want: &[Action] = match route.operation {
                Operation::ListArtifacts | Operation::SearchVersions => &[],
                Operation::StartUpload
                | Operation::GetUploadParts
                | Operation::CommitUpload
                | Operation::PublishVersion => &[Action::Write, Action::Promote],
                Operation::DeleteVersion
                | Operation::ApplyRetention
                | Operation::SetVersionStatus => &[Action::Delete],
                Operation::PurgeArtifact
                | Operation::GetAccess
                | Operation::PutAccess
                | Operation::GetAccessHistory => &[Action::Admin],
                Operation::PutAlias
                | Operation::DeleteAlias
                | Operation::RollbackAlias
                | Operation::StartRollout
                | Operation::ControlRollout => &[Action::Promote],
                _ => &[Action::Read],
            };
            assert_eq!(actions, want, "{}", route.function);
            for (action, name, alias) in needs {
                let on_name = route.path.contains("{name}");
                assert_eq!(name.is_some(), on_name, "{}: the name", route.function);
                if action == Action::Promote {
                    assert_eq!(
                        alias.as_deref(),
                        Some("prod"),
                        "{}: the alias",
                        route.function
                    );
                }
            }
        }
    }

    #[test]
    fn a_whole_number_written_with_a_fraction_is_an_integer_to_the_last_digit() {
        let parse = |text: &str| integer(&serde_json::from_str(text).expect("a JSON number"));
        assert_eq!(parse("12"), Some(12));
        assert_eq!(parse("12.0"), Some(12));
        assert_eq!(parse("12.5"), None);
        // Found by schemathesis: without exact float parsing this read as
        // ...718.5 and a valid purge body was refused.
        assert_eq!(parse("3874786900552718.0"), Some(3874786900552718));
        assert_eq!(parse("1e3"), Some(1000));
    }
}

mod headers {
    use lambda_http::Body;
    use lambda_http::http::header;
    use shared::ErrorKind;
    use shared::http::{
        IDEMPOTENCY_KEY, idempotency_key, idempotency_key_header, precondition, status_of,
    };
    use shared::model::Precondition;

    #[test]
    fn an_alias_etag_of_a_library_row_parses_back_as_that_row() {
        let at = time::macros::datetime!(2026-12-07 01:02:03.456789 UTC);
        let tag = shared::model::alias_etag(0, at);
        assert_eq!(tag, "\"0.1796605323456789\"");
        let request = lambda_http::http::Request::builder()
            .header(header::IF_MATCH, &tag)
            .body(Body::Empty)
            .unwrap();
        assert_eq!(
            precondition(&request).unwrap(),
            Precondition::LibraryRow(1_796_605_323_456_789)
        );
        assert_eq!(shared::model::alias_etag(4, at), "\"4\"");
    }

    #[test]
    fn an_idempotency_key_is_visible_ascii_quoted_or_not_and_anything_else_a_400() {
        let key = |value: &str| {
            let request = lambda_http::http::Request::builder()
                .header(IDEMPOTENCY_KEY, value)
                .body(Body::Empty)
                .unwrap();
            idempotency_key_header(&request).map_err(|e| e.code())
        };
        assert_eq!(key("k-1"), Ok(Some("k-1".into())));
        assert_eq!(key("\"8e03978e-40d5\""), Ok(Some("8e03978e-40d5".into())));
        assert_eq!(key("\""), Ok(Some("\"".into())));
        assert_eq!(key("\"\""), Ok(Some("\"\"".into())));
        assert_eq!(key(&"k".repeat(255)), Ok(Some("k".repeat(255))));
        assert_eq!(
            key(&format!("\"{}\"", "k".repeat(255))),
            Ok(Some("k".repeat(255)))
        );
        for bad in ["", "a b", "\ttab", &"k".repeat(256)] {
            assert_eq!(key(bad), Err("InvalidRequest"), "{bad:?}");
        }
        let none = lambda_http::http::Request::builder()
            .body(Body::Empty)
            .unwrap();
        assert_eq!(idempotency_key(&none).map_err(|e| e.code()), Ok(None));
        // The same request sent again is the same; another body, route or
        // method under the same key is another request.
        let sent = |method: &str, path: &str, body: &str| {
            let request = lambda_http::http::Request::builder()
                .method(method)
                .uri(path)
                .header(IDEMPOTENCY_KEY, "k")
                .body(Body::Text(body.into()))
                .unwrap();
            idempotency_key(&request).unwrap().unwrap()
        };
        let first = sent("PUT", "/artifacts/app/aliases/prod", r#"{"version":"2"}"#);
        assert_eq!(
            first,
            sent("PUT", "/artifacts/app/aliases/prod", r#"{"version":"2"}"#)
        );
        for other in [
            sent("PUT", "/artifacts/app/aliases/prod", r#"{"version":"5"}"#),
            sent(
                "PUT",
                "/artifacts/app/aliases/staging",
                r#"{"version":"2"}"#,
            ),
            sent(
                "DELETE",
                "/artifacts/app/aliases/prod",
                r#"{"version":"2"}"#,
            ),
        ] {
            assert_ne!(first, other);
        }
    }

    #[test]
    fn a_bug_is_a_500_and_an_aws_failure_a_502() {
        assert_eq!(
            status_of(ErrorKind::Internal).as_u16(),
            500,
            "a bug is a 500"
        );
        assert_eq!(status_of(ErrorKind::Upstream).as_u16(), 502);
    }
}

mod stream_records {
    use aws_lambda_events::dynamodb::Event;
    use shared::mirror::{MirrorRecord, mirror_record};
    use time::OffsetDateTime;

    #[test]
    fn records_give_their_keys_and_a_remove_the_sha256_it_held_and_when() {
        let event: Event = serde_json::from_value(serde_json::json!({
        "Records": [
            {
                "eventID": "1", "eventName": "INSERT", "eventVersion": "1.1",
                "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1_700_000_000.0,
                    "Keys": {"pk": {"S": "app"}, "sk": {"S": "LATEST"}},
                    "NewImage": {"pk": {"S": "app"}, "sk": {"S": "LATEST"}, "sha256": {"S": "new"}},
                    "SequenceNumber": "100", "SizeBytes": 10,
                    "StreamViewType": "NEW_AND_OLD_IMAGES"
                }
            },
            {
                "eventID": "2", "eventName": "REMOVE", "eventVersion": "1.1",
                "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1_700_000_001.0,
                    "Keys": {"pk": {"S": "app"}, "sk": {"S": "000001"}},
                    "OldImage": {"pk": {"S": "app"}, "sk": {"S": "000001"}, "sha256": {"S": "old"}},
                    "SequenceNumber": "200", "SizeBytes": 10,
                    "StreamViewType": "NEW_AND_OLD_IMAGES"
                }
            }
        ]
    }))
    .unwrap();
        let records: Vec<MirrorRecord> = event.records.iter().filter_map(mirror_record).collect();
        assert_eq!(
            records,
            [
                MirrorRecord {
                    name: "app".into(),
                    sort_key: "LATEST".into(),
                    removed_sha256: None,
                    removed_at: None,
                    sequence_number: "100".into(),
                },
                MirrorRecord {
                    name: "app".into(),
                    sort_key: "000001".into(),
                    removed_sha256: Some("old".into()),
                    removed_at: OffsetDateTime::from_unix_timestamp(1_700_000_001).ok(),
                    sequence_number: "200".into(),
                },
            ]
        );
    }
}

mod driver {
    #[test]
    fn the_local_period_is_a_second_unless_configured() {
        assert_eq!(
            shared::rollout_driver::local_period(|_| None).unwrap(),
            std::time::Duration::from_secs(1)
        );
        assert_eq!(
            shared::rollout_driver::local_period(|_| Some("250".into())).unwrap(),
            std::time::Duration::from_millis(250)
        );
        assert!(shared::rollout_driver::local_period(|_| Some("0".into())).is_err());
        assert!(shared::rollout_driver::local_period(|_| Some("1s".into())).is_err());
    }
}
