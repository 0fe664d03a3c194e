//! Stream checkpoints (where a consumer group resumes a partition) on both stores.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use pricestream_store::Store;

async fn round_trip(store: Arc<dyn Store>, run: &str) {
    store.migrate().await.unwrap();
    let (g, other) = (format!("g{run}"), format!("other{run}"));
    let (g, other) = (g.as_str(), other.as_str());
    assert_eq!(store.load_checkpoint(g, "t", 0, 10).await.unwrap(), None);
    store
        .save_checkpoints(g, "t", &[(0, 10, "a".into()), (1, 20, "b".into())], 1)
        .await
        .unwrap();
    // a later save adds a row for its own offset; other groups and topics are apart
    store
        .save_checkpoints(g, "t", &[(0, 15, "c".into())], 2)
        .await
        .unwrap();
    store
        .save_checkpoints(other, "t", &[(0, 99, "x".into())], 2)
        .await
        .unwrap();
    let load = |g: &str, t: &str, p: i32, o: i64| {
        let store = Arc::clone(&store);
        let (g, t) = (g.to_string(), t.to_string());
        async move { store.load_checkpoint(&g, &t, p, o).await.unwrap() }
    };
    // the rules of the offset Kafka holds, even when a newer save was never committed
    assert_eq!(load(g, "t", 0, 10).await, Some("a".to_string()));
    assert_eq!(load(g, "t", 0, 15).await, Some("c".to_string()));
    assert_eq!(load(g, "t", 0, 12).await, None);
    assert_eq!(load(g, "t", 1, 20).await, Some("b".to_string()));
    assert_eq!(load(g, "u", 0, 10).await, None);
    assert_eq!(load(other, "t", 0, 99).await, Some("x".to_string()));
    // saving the same offset again replaces its rules
    store
        .save_checkpoints(g, "t", &[(0, 15, "d".into())], 3)
        .await
        .unwrap();
    assert_eq!(load(g, "t", 0, 15).await, Some("d".to_string()));
    // once 15 is committed, the rows below it go; the committed one and other
    // partitions and groups stay
    store.prune_checkpoints(g, "t", &[(0, 15)]).await.unwrap();
    assert_eq!(load(g, "t", 0, 10).await, None);
    assert_eq!(load(g, "t", 0, 15).await, Some("d".to_string()));
    assert_eq!(load(g, "t", 1, 20).await, Some("b".to_string()));
    assert_eq!(load(other, "t", 0, 99).await, Some("x".to_string()));
}

#[tokio::test]
async fn sqlite_checkpoints_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/s.db", dir.path().display());
    round_trip(pricestream_store::open(&url, 2).await.unwrap(), "").await;
}

#[tokio::test]
async fn postgres_checkpoints_round_trip() {
    let Ok(url) = std::env::var("PRICESTREAM_TEST_PG_URL") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "PRICESTREAM_TEST_PG_URL must be set in CI"
        );
        eprintln!("*** SKIPPED: PRICESTREAM_TEST_PG_URL is not set ***");
        return;
    };
    let store = pricestream_store::open(&url, 2).await.unwrap();
    // a group name of its own, so reruns against the same database start clean
    let group = format!("g{}", std::process::id());
    store.migrate().await.unwrap();
    store
        .save_checkpoints(&group, "t", &[(3, 7, "m".into())], 1)
        .await
        .unwrap();
    assert_eq!(
        store.load_checkpoint(&group, "t", 3, 7).await.unwrap(),
        Some("m".to_string())
    );
    round_trip(store, &group).await;
}
