//! The embedded default: no DATABASE_URL, a private cluster in the data dir.

use serde_json::json;

use crate::helpers::{spawn_app_with, test_config};

#[tokio::test]
async fn embedded_postgres_keeps_data_across_runs() {
    let data_dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut config = test_config("");
        config.database_url = None;
        config.data_dir = data_dir.path().to_path_buf();
        config
    };
    let app = spawn_app_with(config()).await;
    let mut a = app.client("a").await;
    a.create("durable").await;
    let sent = a.say("durable", "persisted").await;
    app.stop().await;
    assert!(data_dir.path().join("pg/data/PG_VERSION").exists());

    let app = spawn_app_with(config()).await;
    let (status, page) = app.get("/v1/rooms/durable/messages").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["messages"], json!([sent]));
    app.stop().await;
}
