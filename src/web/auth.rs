//! Signing in to the host pages without accounts: the browser proves a key exactly
//! as a peer joining a room does, over HTTP instead of the socket.
//!
//! ```text
//! browser                                       keygate
//!   ── POST /signin/challenge {address?} ────▶ |  challenge for room "keygate-sign-in",
//!   ◀──── {challengeId, payload, ssh, siwe?, …} |  purpose "sign-in" (kept server-side)
//!   sign with a browser key / passkey / wallet / ssh-keygen
//!   ── POST /signin/verify {challengeId,        |
//!          method, payload, …proof} ─────────▶  |  verify → session row (token hashed)
//!   ◀──── Set-Cookie: keygate_session (HttpOnly, SameSite=Strict[, Secure])
//! ```
//!
//! The proof itself goes through the one pipeline ([`crate::admission`]) with
//! purpose `SignIn`. Each form POST of a signed-in page carries the session's CSRF
//! token. Tokens and cookies are never logged.

use super::{AppState, Error};
use crate::admission::{Admission, Answer, Asks, Caller, Purpose};
use crate::gateway::Gateway;
use crate::identity::EthAddress;
use crate::limits::ClientKey;
use crate::store::WebSession;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;

pub const COOKIE: &str = "keygate_session";
/// How long a sign-in lasts.
const SESSION_DAYS: i64 = 7;

pub fn router() -> Router<AppState> {
    Router::new().route("/signout", post(sign_out))
}

/// What anyone may call: a challenge, and its answer.
pub fn open() -> Router<AppState> {
    Router::new().route("/signin/challenge", post(sign_in_challenge)).route("/signin/verify", post(sign_in_verify))
}

fn hash_token(token: &str) -> String {
    crate::ids::hex(&Sha256::digest(token.as_bytes()))
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
}

/// The signed-in identity of a request, if any.
pub struct SignedIn(pub Option<(WebSession, String)>);

/// Who is looking at a page anyone may open: the header shows them signed in, with
/// the sign-out button, or offers to sign in (`me` empty).
#[derive(Default)]
pub struct Viewer {
    pub me: String,
    pub csrf: String,
}

impl From<SignedIn> for Viewer {
    fn from(signed_in: SignedIn) -> Self {
        signed_in.0.map_or_else(Viewer::default, |(s, _)| Viewer { me: s.identity.to_string(), csrf: s.csrf })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SignedIn
where
    Arc<Gateway>: axum::extract::FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let gw: Arc<Gateway> = axum::extract::FromRef::from_ref(state);
        let Some(token) = cookie_value(&parts.headers, COOKIE) else { return Ok(SignedIn(None)) };
        let hash = hash_token(token);
        match gw.store.web_session(&hash).await {
            Ok(Some(session)) => Ok(SignedIn(Some((session, hash)))),
            Ok(None) => Ok(SignedIn(None)),
            Err(e) => {
                tracing::error!(error = %e, "session lookup failed");
                Ok(SignedIn(None))
            }
        }
    }
}

#[derive(Deserialize, Default)]
pub struct ChallengeRequest {
    /// An Ethereum address, for a SIWE message to sign.
    address: Option<String>,
}

/// Issues a challenge for `purpose` over HTTP: the offer the socket's `challenge`
/// frame carries, plus the id to answer it with.
pub async fn offer_challenge(state: &AppState, purpose: Purpose, address: Option<&str>) -> Result<Value, Error> {
    let address = match address.filter(|a| !a.is_empty()).map(EthAddress::parse) {
        None => None,
        Some(Ok(a)) => Some(a),
        Some(Err(e)) => return Err(Error::json(StatusCode::BAD_REQUEST, format!("address: {e}"))),
    };
    let asks = Asks { address, ..Asks::default() };
    let issued = Admission::new(&state.gateway)
        .issue(purpose, asks)
        .await
        .map_err(|e| Error::json(StatusCode::INTERNAL_SERVER_ERROR, e.0))?;
    let mut offer = serde_json::to_value(issued.offer()).unwrap_or_default();
    let id = state.gateway.http_challenges.put(&issued, issued.lifetime(&state.gateway.settings));
    offer["challengeId"] = id.into();
    Ok(offer)
}

/// Redeems an answer to a challenge issued over HTTP for a purpose `wanted` accepts.
pub async fn redeem_answer(
    state: &AppState,
    remote: SocketAddr,
    answer: Value,
    wanted: fn(&Purpose) -> bool,
) -> Result<crate::admission::Admitted, Error> {
    let Value::Object(mut proof) = answer else {
        return Err(Error::json(StatusCode::BAD_REQUEST, "an answer is a JSON object"));
    };
    let id = proof.remove("challengeId").and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let method = proof.remove("method").and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let payload = proof.remove("payload").unwrap_or_default();
    let answer = Answer { method: &method, payload: &payload, proof };
    let caller = Caller {
        client: Some(ClientKey::of(remote.ip())),
        remote: Some(crate::server::proxy::remote_text(remote)),
        room: None,
    };
    let gw = &state.gateway;
    let mut source = crate::admission::Taken(Some(gw.http_challenges.take(&id, wanted, &gw.store).await));
    Ok(Admission::new(gw).redeem(&mut source, answer, &caller).await?)
}

pub async fn sign_in_challenge(
    State(state): State<AppState>,
    body: Option<Json<ChallengeRequest>>,
) -> Result<Json<Value>, Error> {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    offer_challenge(&state, Purpose::SignIn, body.address.as_deref()).await.map(Json)
}

pub async fn sign_in_verify(
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Json(answer): Json<Value>,
) -> Result<Response, Error> {
    let gw = &state.gateway;
    let admitted = redeem_answer(&state, remote, answer, |p| *p == Purpose::SignIn).await?;
    let (identity, method) = (admitted.identity, admitted.method);
    let token = crate::ids::hex(&crate::ids::random_bytes::<32>());
    let csrf = crate::ids::hex(&crate::ids::random_bytes::<16>());
    let expires = Utc::now() + chrono::Duration::days(SESSION_DAYS);
    gw.store
        .create_web_session(&hash_token(&token), identity.did(), method.as_str(), &csrf, expires)
        .await
        .map_err(|e| Error::internal("creating a session", e).as_json())?;
    let secure = if gw.origin.starts_with("https://") { "; Secure" } else { "" };
    let cookie =
        format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}", SESSION_DAYS * 86_400);
    let body = Json(json!({"identity": identity.did(), "keyFingerprint": identity.fingerprint(), "next": "/rooms"}));
    Ok(([(header::SET_COOKIE, cookie)], body).into_response())
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Whether a submitted CSRF token is the session's (constant-time compare).
pub fn csrf_ok(session: &WebSession, submitted: &str) -> bool {
    use aws_lc_rs::constant_time::verify_slices_are_equal;
    verify_slices_are_equal(session.csrf.as_bytes(), submitted.as_bytes()).is_ok()
}

pub async fn sign_out(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    super::extract::Form(form): super::extract::Form<CsrfForm>,
) -> Response {
    if let Some((session, hash)) = session {
        if !csrf_ok(&session, &form.csrf) {
            return (StatusCode::FORBIDDEN, "the form expired; reload the page and try again").into_response();
        }
        if let Err(e) = state.gateway.store.delete_web_session(&hash).await {
            tracing::error!(error = %e, "deleting a session failed");
        }
    }
    let expire = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    ([(header::SET_COOKIE, expire)], Redirect::to("/")).into_response()
}
