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
//! Each form POST of a signed-in page carries the session's CSRF token. Tokens and
//! cookies are never logged.

use super::AppState;
use crate::challenge::{Freshness, IssuedChallenge};
use crate::identity::Identity;
use crate::limits::{ClientKey, PendingMap};
use crate::signal::Gateway;
use crate::store::WebSession;
use crate::verify::{Method, VerifyError};
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;

pub const COOKIE: &str = "keygate_session";
/// How long a sign-in lasts.
const SESSION_DAYS: i64 = 7;
/// Proofs in progress at once (sign-ins and invites), server-wide.
const MAX_PENDING: usize = 10_000;
/// Proofs in progress at once from one client address: a sign-in takes one; a
/// person who reloads a few times, or a small office behind one address, stays
/// far below it.
const MAX_PENDING_PER_CLIENT: usize = 32;

/// Challenges issued over HTTP and not yet answered.
pub struct PendingProofs(PendingMap<IssuedChallenge>);

impl PendingProofs {
    /// Kept as long as the longest challenge lifetime.
    pub fn new(settings: &crate::config::Settings) -> Self {
        let ttl = settings.manual_freshness.max(settings.freshness_past);
        PendingProofs(PendingMap::new(ttl, MAX_PENDING_PER_CLIENT, MAX_PENDING))
    }

    /// Single use: the challenge is gone whatever the outcome.
    fn take(&self, id: &str) -> Option<IssuedChallenge> {
        self.0.take(id)
    }

    pub fn prune(&self) {
        self.0.prune();
    }
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

/// What a JSON proof endpoint answers on failure.
pub struct ProofError(StatusCode, String);

impl ProofError {
    pub fn new(status: StatusCode, message: &str) -> Self {
        ProofError(status, message.to_owned())
    }
}

impl IntoResponse for ProofError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

#[derive(Deserialize, Default)]
pub struct ChallengeRequest {
    /// An Ethereum address, for a SIWE message to sign.
    address: Option<String>,
}

/// Issues a challenge over HTTP and returns it the way the socket's `challenge`
/// frame carries it, plus the id to answer it with.
pub fn issue_over_http(
    gw: &Gateway,
    pending: &PendingProofs,
    client: ClientKey,
    mut challenge: IssuedChallenge,
    address: Option<&str>,
) -> Result<Value, ProofError> {
    if let Some(address) = address.filter(|a| !a.is_empty()) {
        let address = crate::identity::EthAddress::parse(address)
            .map_err(|e| ProofError(StatusCode::BAD_REQUEST, format!("address: {e}")))?;
        challenge = challenge.with_siwe(&gw.origin, address, gw.settings.eth_chain_id, gw.settings.freshness_past);
    }
    // Passkeys answer with discoverable credentials: the options offer none, and
    // the credential is looked up when the answer names it.
    let webauthn = gw.passkeys.challenge(&challenge.signed_bytes, Vec::new(), false).ok().map(|w| w.options);
    let payload: Value = challenge.payload_json();
    let ssh = crate::signal::protocol::SshHint::for_text(&challenge.signed_bytes);
    let siwe = challenge.siwe.clone();
    let id = pending.0.put(client, challenge);
    Ok(json!({
        "challengeId": id,
        "payload": payload,
        "methods": gw.verifiers.methods().into_iter().map(Method::as_str).collect::<Vec<_>>(),
        "ssh": ssh,
        "siwe": siwe,
        "webauthn": webauthn,
    }))
}

/// Verifies an answer to a challenge issued over HTTP; returns who signed.
pub async fn verify_over_http(
    gw: &Gateway,
    pending: &PendingProofs,
    answer: &Value,
) -> Result<(Identity, Method), ProofError> {
    let refuse = |why: String| ProofError(StatusCode::FORBIDDEN, why);
    let id = answer["challengeId"].as_str().unwrap_or_default();
    let mut issued =
        pending.take(id).ok_or_else(|| refuse("this challenge is unknown, used or expired; start again".into()))?;
    let method = serde_json::from_value::<Method>(answer["method"].clone())
        .ok()
        .filter(|m| gw.verifiers.get(*m).is_some())
        .ok_or_else(|| ProofError(StatusCode::BAD_REQUEST, "unknown method".into()))?;
    let verifier = gw.verifiers.get(method).ok_or_else(|| refuse("method not accepted".into()))?;
    let window = Freshness {
        past: if verifier.by_hand() { gw.settings.manual_freshness } else { gw.settings.freshness_past },
        future: gw.settings.freshness_future,
    };
    let mut slot = crate::challenge::ChallengeSlot::default();
    slot.put(issued.clone());
    slot.redeem(&answer["payload"], Utc::now(), window).map_err(|r| refuse(r.reason().into()))?;
    if method == Method::Webauthn {
        issued.webauthn = Some(Arc::new(discoverable_ceremony(gw, &issued, answer).await?));
    }
    let proof = Value::Object(answer.as_object().cloned().unwrap_or_else(Map::new));
    let claim = verifier.claim_for(&proof, &issued).map_err(|e| explain(&e))?;
    let identity = claim.identity.clone();
    let signed = verifier.signed_text(&issued).map_err(|e| explain(&e))?;
    let evidence = claim.check(signed).map_err(|e| explain(&e))?;
    if let Some(counter) = evidence.counter {
        let credential = evidence.credential_id.as_deref().map(crate::passkeys::credential_id_text);
        if !gw.store.advance_counters(identity.did(), counter, credential.as_deref()).await.unwrap_or(false) {
            return Err(refuse("the key's sign counter went backwards".into()));
        }
    }
    Ok((identity, method))
}

/// A passkey answer names its credential; the ceremony is built for that one.
async fn discoverable_ceremony(
    gw: &Gateway,
    issued: &IssuedChallenge,
    answer: &Value,
) -> Result<crate::passkeys::WebauthnChallenge, ProofError> {
    let refuse = |why: &str| ProofError(StatusCode::FORBIDDEN, why.to_owned());
    let raw_id = answer["credential"]["rawId"].as_str().unwrap_or_default();
    let stored = gw
        .store
        .credential(raw_id.trim_end_matches('='))
        .await
        .map_err(|_| ProofError(StatusCode::INTERNAL_SERVER_ERROR, "credential lookup failed".into()))?
        .ok_or_else(|| refuse("this passkey is not registered here; create one on the passkey page"))?;
    let (credential, identity) = crate::passkeys::load_credential(&stored).map_err(|e| {
        tracing::warn!(credential = %stored.id, error = %e, "a stored credential was refused");
        refuse("this passkey's record is not usable; register it again")
    })?;
    gw.passkeys.challenge(&issued.signed_bytes, vec![(credential, identity)], false).map_err(|e| refuse(&e.to_string()))
}

/// What a person may be told about a failed proof: its form, or only "not accepted".
fn explain(e: &VerifyError) -> ProofError {
    match e {
        VerifyError::PrivateKey => ProofError(StatusCode::BAD_REQUEST, "send only the public key".into()),
        other => match other.client_message() {
            Some(m) => ProofError(StatusCode::BAD_REQUEST, m),
            None => ProofError(StatusCode::FORBIDDEN, "the proof was not accepted".into()),
        },
    }
}

pub async fn sign_in_challenge(
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    body: Option<Json<ChallengeRequest>>,
) -> Result<Json<Value>, ProofError> {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let challenge = IssuedChallenge::issue_sign_in(&state.gateway.origin, Utc::now());
    let client = ClientKey::of(remote.ip());
    issue_over_http(&state.gateway, &state.pending, client, challenge, body.address.as_deref()).map(Json)
}

pub async fn sign_in_verify(State(state): State<AppState>, Json(answer): Json<Value>) -> Result<Response, ProofError> {
    let gw = &state.gateway;
    let (identity, method) = verify_over_http(gw, &state.pending, &answer).await?;
    let token = crate::ids::hex(&crate::ids::random_bytes::<32>());
    let csrf = crate::ids::hex(&crate::ids::random_bytes::<16>());
    let expires = Utc::now() + chrono::Duration::days(SESSION_DAYS);
    gw.store.create_web_session(&hash_token(&token), identity.did(), method.as_str(), &csrf, expires).await.map_err(
        |e| {
            tracing::error!(error = %e, "creating a session failed");
            ProofError(StatusCode::INTERNAL_SERVER_ERROR, "the session could not be created; try again".into())
        },
    )?;
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
    super::host::Form(form): super::host::Form<CsrfForm>,
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
