//! Server-rendered pages (askama templates in `templates/`).

use super::auth::{SignedIn, Viewer};
use super::AppState;
use crate::gateway::Gateway;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/passkey", get(passkey))
        .route("/keys", get(keys))
        .route("/static/{name}", get(static_file))
}

/// What anyone may call: naming the identity of a pasted key.
pub fn open() -> Router<AppState> {
    Router::new().route("/identity", post(identity))
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage<'a> {
    origin: &'a str,
    methods: Vec<&'static str>,
    viewer: Viewer,
}

pub async fn index(State(gw): State<Arc<Gateway>>, who: SignedIn) -> Response {
    let methods = gw.methods().into_iter().map(|m| m.as_str()).collect();
    render(&IndexPage { origin: &gw.origin, methods, viewer: who.into() })
}

pub(super) fn render<T: Template>(page: &T) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "page rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    viewer: Viewer,
}

/// Key tools for anyone: the browser key, passkeys, and any key's identity.
pub async fn keys(who: SignedIn) -> Response {
    render(&KeysPage { viewer: who.into() })
}

#[derive(serde::Deserialize)]
pub struct IdentityRequest {
    key: String,
}

/// The normalized identity of any accepted key format.
pub async fn identity(axum::Json(body): axum::Json<IdentityRequest>) -> Response {
    use axum::Json;
    match crate::identity::Identity::parse(&body.key) {
        Ok(id) => {
            Json(serde_json::json!({"identity": id.did(), "keyFingerprint": id.fingerprint(), "kind": id.kind()}))
                .into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, Json(serde_json::json!({"error": e.to_string()}))).into_response(),
    }
}

#[derive(Template)]
#[template(path = "passkey.html")]
struct PasskeyPage<'a> {
    rp_id: &'a str,
    viewer: Viewer,
}

/// Register a passkey or security key and see the identity to send to a host.
pub async fn passkey(State(gw): State<Arc<Gateway>>, who: SignedIn) -> Response {
    render(&PasskeyPage { rp_id: &gw.settings.webauthn_rp_id(), viewer: who.into() })
}

/// The pages' static files, compiled into the binary so a deployment is one file.
pub async fn static_file(Path(name): Path<String>) -> Response {
    const JS: &str = "text/javascript; charset=utf-8";
    let (kind, body) = match name.as_str() {
        "style.css" => ("text/css; charset=utf-8", include_str!("../../static/style.css")),
        "proof.js" => (JS, include_str!("../../static/proof.js")),
        "passkey.js" => (JS, include_str!("../../static/passkey.js")),
        "signin.js" => (JS, include_str!("../../static/signin.js")),
        "keys.js" => (JS, include_str!("../../static/keys.js")),
        "invite.js" => (JS, include_str!("../../static/invite.js")),
        "room.js" => (JS, include_str!("../../static/room.js")),
        "call.js" => (JS, include_str!("../../static/call.js")),
        "rtc.js" => (JS, include_str!("../../static/rtc.js")),
        "identity.js" => (JS, include_str!("../../static/identity.js")),
        "e2ee.js" => (JS, include_str!("../../static/e2ee.js")),
        "e2ee-worker.js" => (JS, include_str!("../../static/e2ee-worker.js")),
        "sframe.js" => (JS, include_str!("../../static/sframe.js")),
        "sfu.js" => (JS, include_str!("../../static/sfu.js")),
        "secp256k1.js" => (JS, include_str!("../../static/secp256k1.js")),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}
