//! The host pages, forms and uploads, through the real router over a real SQLite
//! file: hostile bodies never make the server fail (no 500), and without a signed-in
//! session nothing about who may enter changes.

use super::Outcome;
use crate::client::p256_key::P256Key;
use crate::config::Settings;
use crate::gateway::Gateway;
use crate::store::Store;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;

struct Site {
    runtime: tokio::runtime::Runtime,
    /// Kept so the gateway never sees a shutdown.
    _shutdown: tokio::sync::watch::Sender<bool>,
    app: Router,
    gateway: Arc<Gateway>,
    cookie: String,
    csrf: String,
    room: String,
}

static SITE: OnceLock<Result<Site, String>> = OnceLock::new();

/// One request at a time on the site: a request with a session from another thread
/// (the tests replay seeds and the corpus at once) must not land between the
/// before and after of a request without one.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const BOUNDARY: &str = "fuzzboundary";
const REMOTE: ([u8; 4], u16) = ([192, 0, 2, 7], 40_000);

/// How a route takes its input.
#[derive(Clone, Copy)]
enum Input {
    Form,
    Multipart,
    Json,
    Query,
}

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@b";
const DID: &str = "did%3Akey%3Az6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";

/// Each route, how it takes its input, and a typical body (the seed).
const ROUTES: &[(Method, &str, Input, &str)] = &[
    (Method::POST, "/rooms", Input::Form, "name=team"),
    (Method::POST, "/rooms/{room}/allow", Input::Multipart, "label"),
    (Method::POST, "/rooms/{room}/deny", Input::Form, "identity={did}"),
    (Method::POST, "/rooms/{room}/settings", Input::Form, "require_uv=on&max_peers=4&freshness=60&reverify_every=600"),
    (Method::POST, "/rooms/{room}/owners", Input::Form, "identity={did}"),
    (Method::POST, "/rooms/{room}/kick", Input::Form, "peer=0123456789abcdef"),
    (Method::POST, "/rooms/{room}/reverify", Input::Form, "peer=0123456789abcdef"),
    (Method::POST, "/rooms/{room}/invites", Input::Form, "label=guest&uses=2&hours=1"),
    (Method::GET, "/rooms/{room}", Input::Query, "q=team&after=did%3Akey%3Az"),
    (Method::GET, "/rooms/{room}/audit", Input::Query, "before=10"),
    (Method::GET, "/rooms/{room}/live", Input::Query, ""),
    (Method::GET, "/keys", Input::Query, ""),
    (
        Method::POST,
        "/identity",
        Input::Form,
        "key=ssh-ed25519+AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
    ),
    (Method::POST, "/signin/challenge", Input::Json, "{}"),
    (Method::POST, "/signin/verify", Input::Json, r#"{"challengeId":"x","method":"webcrypto","payload":{}}"#),
    (Method::POST, "/webauthn/register/start", Input::Json, r#"{"label":"k"}"#),
    (Method::POST, "/webauthn/register/finish", Input::Json, r#"{"registrationId":"x","credential":{}}"#),
    (Method::POST, "/i/x/challenge", Input::Json, "{}"),
    (Method::POST, "/i/x/verify", Input::Json, r#"{"method":"ssh","signature":""}"#),
    (Method::POST, "/rooms/{room}/delete", Input::Form, "confirm=x"),
    (Method::GET, "/rooms", Input::Query, "deleted=5i9U78HiRkrdWRYo2"),
];

/// Seeds: each route with its typical body, signed in with the form's token and not.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (route, (_, _, kind, body)) in ROUTES.iter().enumerate() {
        let body = match kind {
            Input::Multipart => format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"label\"\r\n\r\nteam\r\n\
                 --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"keys\"\r\n\r\n{KEY}\r\n--{BOUNDARY}--\r\n"
            ),
            _ => body.replace("{did}", DID),
        };
        for flags in [3u8, 0] {
            let mut input = vec![route as u8, flags];
            input.extend_from_slice(body.as_bytes());
            out.push(input);
        }
    }
    out
}

fn s<T: std::fmt::Display>(x: T) -> String {
    x.to_string()
}

async fn call(app: &Router, request: Request<Body>) -> Result<(StatusCode, axum::http::HeaderMap, Vec<u8>), String> {
    let mut request = request;
    request.extensions_mut().insert(ConnectInfo(SocketAddr::from(REMOTE)));
    let response = app.clone().oneshot(request).await.map_err(s)?;
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 16 * 1024 * 1024).await.map_err(s)?;
    Ok((parts.status, parts.headers, bytes.to_vec()))
}

fn post_json(path: &str, body: &Value) -> Result<Request<Body>, String> {
    Request::post(path).header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_string())).map_err(s)
}

fn site() -> Result<&'static Site, String> {
    SITE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(s)?;
        let site = runtime.block_on(async {
            let dir = scratch_dir().map_err(s)?;
            let mut settings = Settings {
                db: dir.join("keygate.db"),
                http_requests_per_minute: 1_000_000_000,
                max_rooms_per_identity_per_hour: 1_000_000_000,
                refusal_rows_per_minute: 1_000_000_000,
                ..Settings::default()
            };
            settings.listen = SocketAddr::from(([127, 0, 0, 1], 8080));
            let store = Store::open(&settings.db).await.map_err(s)?;
            let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
            let gateway = Arc::new(Gateway::build(settings, store, shutdown_rx).map_err(s)?);
            let app = crate::web::app(gateway.clone());
            // Sign in with a browser key, as the sign-in page does.
            let key = P256Key::generate().map_err(s)?;
            let (_, _, body) = call(&app, post_json("/signin/challenge", &json!({}))?).await?;
            let challenge: Value = serde_json::from_slice(&body).map_err(s)?;
            let signed = challenge["payload"].to_string();
            let answer = json!({"challengeId": challenge["challengeId"], "method": "webcrypto",
                "payload": challenge["payload"], "signature": key.sign_b64(signed.as_bytes()).map_err(s)?,
                "publicKey": key.public_jwk()});
            let (status, headers, _) = call(&app, post_json("/signin/verify", &answer)?).await?;
            let cookie = headers
                .get(header::SET_COOKIE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .ok_or(format!("sign-in answered {status} without a cookie"))?
                .to_owned();
            let (_, _, page) =
                call(&app, Request::get("/rooms").header(header::COOKIE, &cookie).body(Body::empty()).map_err(s)?)
                    .await?;
            let page = String::from_utf8_lossy(&page);
            let csrf = page
                .split("name=\"csrf\" value=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .ok_or("no CSRF token on /rooms")?
                .to_owned();
            let form = format!("csrf={csrf}&name=fuzz");
            let (_, headers, _) = call(
                &app,
                Request::post("/rooms")
                    .header(header::COOKIE, &cookie)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(form))
                    .map_err(s)?,
            )
            .await?;
            let room = headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| l.strip_prefix("/rooms/"))
                .ok_or("creating the room did not redirect to it")?
                .to_owned();
            Ok::<_, String>((app, gateway, cookie, csrf, room, shutdown))
        })?;
        let (app, gateway, cookie, csrf, room, _shutdown) = site;
        Ok(Site { runtime, _shutdown, app, gateway, cookie, csrf, room })
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// This process's database directory, `$TMP/keygate-fuzz-http/PID`. Those of
/// processes that have ended (a replay test, a fuzzer) are removed first, so runs
/// leave at most one behind.
fn scratch_dir() -> std::io::Result<std::path::PathBuf> {
    let root = std::env::temp_dir().join("keygate-fuzz-http");
    std::fs::create_dir_all(&root)?;
    for entry in std::fs::read_dir(&root)?.flatten() {
        let pid = entry.file_name();
        if !std::path::Path::new("/proc").join(&pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = root.join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Who may enter, as far as a request could change it: the change log's head and
/// every room with its owners, settings and list length.
async fn gate(gateway: &Gateway) -> Result<String, String> {
    let head = gateway.store.last_change().await.map_err(s)?;
    let rooms = gateway.store.rooms().await.map_err(s)?;
    Ok(format!("{head} {rooms:?}"))
}

/// Input: route, flags (bit 0: signed in; bit 1: with the session's CSRF token),
/// then the body (or query string).
pub fn request(data: &[u8]) -> Outcome {
    let site = site()?;
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let [route, flags, body @ ..] = data else { return Ok(()) };
    let (method, path, kind, _) = &ROUTES[usize::from(*route) % ROUTES.len()];
    let path = path.replace("{room}", &site.room);
    let signed_in = flags & 1 == 1;
    let with_csrf = flags & 2 == 2;
    let mut builder = Request::builder().method(method.clone());
    let body = match kind {
        Input::Form => {
            builder = builder.uri(&path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            let mut b = if with_csrf { format!("csrf={}&", site.csrf).into_bytes() } else { Vec::new() };
            b.extend_from_slice(body);
            b
        }
        Input::Multipart => {
            let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
            builder = builder.uri(&path).header(header::CONTENT_TYPE, content_type);
            let mut b = if with_csrf {
                format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{}\r\n", site.csrf)
                    .into_bytes()
            } else {
                Vec::new()
            };
            b.extend_from_slice(body);
            b
        }
        Input::Json => {
            builder = builder.uri(&path).header(header::CONTENT_TYPE, "application/json");
            body.to_vec()
        }
        Input::Query => {
            let Ok(query) = std::str::from_utf8(body) else { return Ok(()) };
            builder = builder.uri(format!("{path}?{query}"));
            Vec::new()
        }
    };
    if signed_in {
        builder = builder.header(header::COOKIE, &site.cookie);
    }
    let Ok(request) = builder.body(Body::from(body)) else { return Ok(()) };
    site.runtime.block_on(async {
        let before = gate(&site.gateway).await?;
        let (status, _, answer) = call(&site.app, request).await?;
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            return Err(format!("{method} {path} failed with 500: {}", String::from_utf8_lossy(&answer)));
        }
        if !signed_in {
            let after = gate(&site.gateway).await?;
            if after != before {
                return Err(format!("{method} {path} without a session changed who may enter ({status})"));
            }
        }
        Ok(())
    })
}
