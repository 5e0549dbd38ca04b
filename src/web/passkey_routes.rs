//! JSON endpoints for registering a passkey or security key, and the page that
//! drives them. No account is created: the person gets an identity to send to a
//! host.

use super::{AppState, Error};
use crate::gateway::Gateway;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// What anyone may call (registering needs no account).
pub fn open() -> Router<AppState> {
    Router::new().route("/webauthn/register/start", post(start)).route("/webauthn/register/finish", post(finish))
}

#[derive(Deserialize)]
pub struct StartRegistration {
    #[serde(default)]
    label: String,
}

pub async fn start(State(gw): State<Arc<Gateway>>, Json(body): Json<StartRegistration>) -> Result<Json<Value>, Error> {
    let label: String = body.label.chars().take(64).collect();
    let (id, options) = gw
        .passkeys
        .start_registration(&label)
        .map_err(|e| Error::json(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Json(json!({ "registrationId": id, "options": options })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FinishRegistration {
    registration_id: String,
    credential: Value,
    #[serde(default)]
    label: String,
}

pub async fn finish(
    State(gw): State<Arc<Gateway>>,
    Json(body): Json<FinishRegistration>,
) -> Result<Json<Value>, Error> {
    let credential = serde_json::from_value(body.credential)
        .map_err(|e| Error::json(StatusCode::BAD_REQUEST, format!("credential is not a PublicKeyCredential: {e}")))?;
    let (credential, identity) = gw
        .passkeys
        .finish_registration(&body.registration_id, &credential, &gw.store)
        .await
        .map_err(|e| Error::json(StatusCode::BAD_REQUEST, e.to_string()))?;
    let id = crate::verify::webauthn::credential_id_text(&credential.cred_id);
    let record = serde_json::to_string(&credential)
        .map_err(|e| Error::json(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let label: String = body.label.chars().take(64).collect();
    gw.store.add_credential(&id, identity.did(), &record, &label).await.map_err(|e| match e {
        crate::store::StoreError::CredentialExists => {
            Error::json(StatusCode::CONFLICT, "this credential id is already registered; create a new passkey instead")
        }
        e => Error::internal("storing a credential", e).as_json(),
    })?;
    Ok(Json(json!({
        "identity": identity.did(),
        "keyFingerprint": identity.fingerprint(),
        "credentialId": id,
    })))
}
