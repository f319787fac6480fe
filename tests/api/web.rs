//! The files roomd serves to browsers, from its own binary.

use crate::helpers::{fresh_database, spawn_app, spawn_app_with, test_config};

async fn get(url: &str, if_none_match: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(tag) = if_none_match {
        request = request.header("if-none-match", tag);
    }
    request.send().await.expect("HTTP request")
}

#[tokio::test]
async fn the_chat_page_and_the_client_are_served_from_the_binary() {
    let app = spawn_app().await;
    for (path, content_type, needle, file) in [
        (
            "/",
            "text/html",
            "<html",
            include_str!("../../web/index.html"),
        ),
        (
            "/chat.js",
            "text/javascript",
            "/sdk/roomd.js",
            include_str!("../../web/chat.js"),
        ),
        (
            "/chat.css",
            "text/css",
            "{",
            include_str!("../../web/chat.css"),
        ),
        (
            "/sdk/roomd.js",
            "text/javascript",
            "export class RoomdClient",
            include_str!("../../clients/js/roomd.js"),
        ),
        (
            "/sdk/roomd.d.ts",
            "application/typescript",
            "declare",
            include_str!("../../clients/js/roomd.d.ts"),
        ),
    ] {
        let response = get(&app.http(path), None).await;
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type),
            "{path}: {:?}",
            headers["content-type"]
        );
        assert_eq!(headers["cache-control"], "no-cache", "{path}");
        let body = response.text().await.unwrap();
        assert_eq!(body, file, "{path} is the file in the repository");
        assert!(body.contains(needle), "{path} lacks {needle:?}");

        // Revalidation: the same tag means nothing changed.
        let tag = headers["etag"].to_str().unwrap().to_owned();
        let again = get(&app.http(path), Some(&tag)).await;
        assert_eq!(again.status(), 304, "{path}");
        let other = get(&app.http(path), Some("\"stale\"")).await;
        assert_eq!(other.status(), 200, "{path}");
    }
    // Every file has its own tag.
    let mut tags = Vec::new();
    for path in [
        "/",
        "/chat.js",
        "/chat.css",
        "/sdk/roomd.js",
        "/sdk/roomd.d.ts",
    ] {
        tags.push(get(&app.http(path), None).await.headers()["etag"].clone());
    }
    tags.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    tags.dedup();
    assert_eq!(tags.len(), 5);
    // Anything else is still a JSON 404.
    let (status, body) = app.get("/sdk/other.js").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], 1002);
    app.stop().await;
}

#[tokio::test]
async fn info_tells_the_page_whether_to_ask_for_a_token() {
    let app = spawn_app().await;
    let (status, info) = app.get("/v1/info").await;
    assert_eq!(status, 200);
    assert_eq!(info["authRequired"], false);
    assert_eq!(info["server"], "roomd");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    app.stop().await;

    let mut config = test_config(&fresh_database().await);
    config.auth_secret = Some("page-secret-of-at-least-thirty-two-bytes".into());
    let app = spawn_app_with(config).await;
    let (status, info) = app.get("/v1/info").await;
    assert_eq!(status, 200);
    assert_eq!(info["authRequired"], true);
    app.stop().await;
}
