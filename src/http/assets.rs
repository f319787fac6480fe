//! The files roomd serves to browsers: the JavaScript client at
//! `/sdk/roomd.js` (with its types) and the chat page at `/`.
//!
//! They are compiled into the binary with `include_str!`, so a release build
//! is one file to ship and the page always matches the server it came from.

use serde::Serialize;
use warp::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use warp::http::{Response as HttpResponse, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../../web/index.html"),
    },
    Asset {
        path: "chat.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../web/chat.js"),
    },
    Asset {
        path: "chat.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../web/chat.css"),
    },
    Asset {
        path: "sdk/roomd.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../clients/js/roomd.js"),
    },
    Asset {
        path: "sdk/roomd.d.ts",
        content_type: "application/typescript; charset=utf-8",
        body: include_str!("../../clients/js/roomd.d.ts"),
    },
];

/// The tag browsers revalidate against: a hash of the file's contents, so
/// any change to a file (even one that keeps its length) reaches browsers
/// that cached the old one.
fn etag(asset: &Asset) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    asset.body.hash(&mut hasher);
    format!("\"{:016x}\"", hasher.finish())
}

fn serve(asset: &'static Asset, if_none_match: Option<String>) -> Response {
    let tag = etag(asset);
    let builder = HttpResponse::builder()
        .header(CACHE_CONTROL, "no-cache")
        .header(ETAG, &tag);
    let response = if if_none_match.as_deref() == Some(tag.as_str()) {
        builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Default::default())
    } else {
        builder
            .header(CONTENT_TYPE, asset.content_type)
            .body(asset.body.into())
    };
    response.expect("static headers are valid")
}

/// `GET /v1/info`: what the page needs to know before it connects.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Info {
    server: &'static str,
    version: &'static str,
    /// Whether `login` needs a token (the page then asks for one).
    auth_required: bool,
}

/// `GET /`, `/chat.js`, `/chat.css`, `/sdk/roomd.js`, `/sdk/roomd.d.ts`, and
/// `GET /v1/info`.
pub(crate) fn routes(
    auth_required: bool,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let assets = super::get()
        .and(warp::path::full())
        .and(warp::header::optional::<String>(IF_NONE_MATCH.as_str()))
        .and_then(
            |path: warp::path::FullPath, tag: Option<String>| async move {
                let wanted = path.as_str().trim_start_matches('/');
                match ASSETS.iter().find(|asset| asset.path == wanted) {
                    Some(asset) => Ok::<_, warp::Rejection>(serve(asset, tag)),
                    None => Err(warp::reject::not_found()),
                }
            },
        );
    let info = warp::path!("v1" / "info").and(super::get()).map(move || {
        let info = Info {
            server: "roomd",
            version: env!("CARGO_PKG_VERSION"),
            auth_required,
        };
        warp::reply::json(&info).into_response()
    });
    info.or(assets).unify()
}
