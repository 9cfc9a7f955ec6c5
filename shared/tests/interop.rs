//! Interoperability with the Python library `versioned` 1.0.1 (SPEC 3): on
//! one emulator, bucket and table, each side reads what the other wrote.

use base64::Engine;
use shared::model::AliasTarget;
use shared::{AliasName, Version, Weight};
use test_support::{TestStore, name, sha256_hex};

fn alias(s: &str) -> AliasName {
    s.parse().unwrap()
}

#[tokio::test]
async fn the_repository_reads_what_the_library_wrote() {
    let store = TestStore::new().await;
    let written = store.library(&["write"]);
    let n = name("py-app");

    let names = store.repo.list_artifact_names(None, None).await.unwrap();
    assert_eq!(names.items, std::slice::from_ref(&n));

    let versions = store.repo.list_versions(&n, None, None).await.unwrap();
    let ours: Vec<(String, String, String)> = versions
        .items
        .iter()
        .map(|a| (a.version.to_string(), a.sha256.clone(), a.s3uri.clone()))
        .collect();
    let theirs: Vec<(String, String, String)> = written["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap().into(),
                v["sha256"].as_str().unwrap().into(),
                v["s3uri"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(ours, theirs);
    assert_eq!(
        ours.iter().map(|v| v.0.as_str()).collect::<Vec<_>>(),
        ["LATEST", "2", "1"]
    );

    for (version, content) in [
        (Version::Number(1), &b"python one"[..]),
        (Version::Number(2), b"python two"),
        (Version::Latest, b"python two"),
    ] {
        let artifact = store.repo.get_version(&n, version).await.unwrap();
        assert_eq!(artifact.sha256, sha256_hex(content));
        assert_eq!(
            store
                .download(artifact.download_url.as_deref().unwrap())
                .await,
            content
        );
    }

    let canary = store.repo.get_alias(&n, &alias("canary")).await.unwrap();
    assert_eq!(canary.version, Version::Number(1));
    assert_eq!(canary.secondary_version, Some(Version::Number(2)));
    assert_eq!(
        canary.secondary_version_weight,
        Some(Weight::new(20).unwrap())
    );
    assert_eq!(
        canary.version_s3uri,
        written["get_alias"]["canary"]["version_s3uri"]
            .as_str()
            .unwrap()
    );
    let listed: Vec<String> = store
        .repo
        .list_aliases(&n, None, None)
        .await
        .unwrap()
        .items
        .iter()
        .map(|a| a.alias.to_string())
        .collect();
    assert_eq!(listed, ["canary", "prod"]);
    let resolved = store
        .repo
        .resolve_alias(&n, &alias("prod"), None)
        .await
        .unwrap();
    assert_eq!(resolved.sha256, sha256_hex(b"python one"));
    assert_eq!(store.download(&resolved.download_url).await, b"python one");

    // The repository keeps writing where the library stopped: numbering
    // continues, and versions the library's aliases target stay protected.
    store.upload(&n, b"rust three").await;
    let published = store.repo.publish_version(&n, false).await.unwrap();
    assert_eq!(published.artifact.version, Version::Number(3));
    assert!(
        store
            .repo
            .delete_version(&n, Version::Number(1))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn the_library_reads_what_the_repository_wrote() {
    let store = TestStore::new().await;
    let n = name("rs-app");
    store.upload(&n, b"rust one").await;
    store.repo.publish_version(&n, false).await.unwrap();
    store.upload(&n, b"rust two").await;
    store.repo.publish_version(&n, false).await.unwrap();
    let prod = AliasTarget {
        version: Version::Number(1),
        secondary: Some((Version::Number(2), Weight::new(30).unwrap())),
    };
    store
        .repo
        .put_alias(&n, &alias("prod"), prod)
        .await
        .unwrap();
    store
        .repo
        .put_alias(
            &n,
            &alias("edge"),
            AliasTarget {
                version: Version::Latest,
                secondary: None,
            },
        )
        .await
        .unwrap();

    let read = store.library_after_mirror(&["read", "rs-app"]).await;
    assert_eq!(read["names"], serde_json::json!(["rs-app"]));
    let ours = store.repo.list_versions(&n, None, None).await.unwrap();
    let theirs = read["versions"].as_array().unwrap();
    assert_eq!(theirs.len(), ours.items.len());
    for (mine, lib) in ours.items.iter().zip(theirs) {
        assert_eq!(lib["version"].as_str().unwrap(), mine.version.to_string());
        assert_eq!(lib["sha256"].as_str().unwrap(), mine.sha256);
        assert_eq!(lib["s3uri"].as_str().unwrap(), mine.s3uri);
        let got = &read["get"][mine.version.to_string()];
        assert_eq!(got["sha256"].as_str().unwrap(), mine.sha256);
        let content = base64::engine::general_purpose::STANDARD
            .decode(read["content"][mine.version.to_string()].as_str().unwrap())
            .unwrap();
        assert_eq!(
            sha256_hex(&content),
            mine.sha256,
            "library downloads the bytes of {}",
            mine.version
        );
    }
    let lib_prod = &read["get_alias"]["prod"];
    assert_eq!(lib_prod["version"], "1");
    assert_eq!(lib_prod["secondary_version"], "2");
    assert_eq!(lib_prod["secondary_version_weight"], 30);
    assert_eq!(read["get_alias"]["edge"]["version"], "LATEST");
    assert_eq!(read["aliases"].as_array().unwrap().len(), 2);
}
