//! The JavaScript client's own tests and the chat page's browser test, run by
//! Node's test runner against the `roomd` binary this suite just built, on a
//! fresh database each.
//!
//! Where Node or Chromium is missing they are skipped with a message naming
//! what to install, unless `ROOMD_REQUIRE_JS` is set (CI sets it), which turns
//! the skip into a failure.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;
use tokio::sync::OnceCell;

use crate::helpers::fresh_database;

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js")
}

/// Skips the calling test loudly, or fails it when CI requires everything.
fn skip(what: &str, install: &str) {
    let message = format!(
        "SKIPPED: {what} is not available; install {install} to run the JavaScript and browser tests"
    );
    assert!(
        std::env::var_os("ROOMD_REQUIRE_JS").is_none(),
        "{message} (ROOMD_REQUIRE_JS is set, so this is a failure)"
    );
    eprintln!("\n!!!!!!!!!! {message} !!!!!!!!!!\n");
}

async fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|status| status.success())
}

/// Installs the client's development dependencies (`ws`, `playwright-core`,
/// `typescript`) from its lock file, once per test run, when missing.
async fn node_modules() -> Result<(), String> {
    static INSTALLED: OnceCell<Result<(), String>> = OnceCell::const_new();
    INSTALLED
        .get_or_init(|| async {
            let dir = client_dir();
            let lock = dir.join("package-lock.json");
            let marker = dir.join("node_modules/.package-lock.json");
            let fresh = match (marker.metadata(), lock.metadata()) {
                (Ok(installed), Ok(locked)) => installed.modified().ok() >= locked.modified().ok(),
                _ => false,
            };
            if fresh {
                return Ok(());
            }
            let output = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .output()
                .await
                .map_err(|e| format!("npm: {e}"))?;
            if output.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "npm ci in clients/js failed:\n{}",
                    String::from_utf8_lossy(&output.stderr)
                ))
            }
        })
        .await
        .clone()
}

/// Whether Node.js and the client's npm packages are there; skips the
/// calling test (loudly) when not.
async fn node_ready() -> bool {
    if !succeeds("node", &["--version"]).await {
        skip(
            "Node.js (node, npm)",
            "Node.js 20 or newer (Debian: nodejs npm)",
        );
        return false;
    }
    if let Err(e) = node_modules().await {
        skip(&format!("the client's npm packages ({e})"), "npm");
        return false;
    }
    true
}

/// Runs `node --test` on one folder of `clients/js/test` and fails with its
/// report when any test fails.
async fn node_test(folder: &str, chromium: Option<&str>) {
    let database_url = fresh_database().await;
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts folder");
    let mut command = Command::new("node");
    command
        .args([
            "--test",
            "--test-reporter=spec",
            "--test-concurrency=2",
            folder,
        ])
        .current_dir(client_dir())
        .env("ROOMD_BIN", env!("CARGO_BIN_EXE_roomd"))
        .env("ROOMD_TEST_DATABASE_URL", &database_url)
        .env("ROOMD_TEST_ARTIFACTS", &artifacts)
        .env_remove("DATABASE_URL")
        .env_remove("NODE_OPTIONS")
        .stdin(Stdio::null());
    if let Some(path) = chromium {
        command.env("CHROMIUM_PATH", path);
    }
    let output = command.output().await.expect("node runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "node --test {folder} failed:\n{report}"
    );
    println!("{report}");
}

#[tokio::test]
async fn javascript_client_suite_passes_against_real_roomd() {
    if !node_ready().await {
        return;
    }
    node_test("test/client/", None).await;
}

#[tokio::test]
async fn chat_page_works_for_two_users_in_headless_chromium() {
    if !node_ready().await {
        return;
    }
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !succeeds(&chromium, &["--version"]).await {
        return skip(
            &format!("Chromium ({chromium})"),
            "Chromium (Debian: apt-get install chromium) or set CHROMIUM_PATH",
        );
    }
    node_test("test/browser/", Some(&chromium)).await;
}
