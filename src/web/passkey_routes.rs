//! JSON endpoints for registering a passkey or security key, and the page that
//! drives them. No account is created: the person gets an identity to send to a
//! host.

use crate::signal::Gateway;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// Errors of these endpoints, as JSON `{"error": …}` with a 4xx/5xx status.
pub struct WebError(StatusCode, String);

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

#[derive(Deserialize)]
pub struct StartRegistration {
    #[serde(default)]
    label: String,
}

pub async fn start(
    State(gw): State<Arc<Gateway>>,
    axum::extract::ConnectInfo(remote): axum::extract::ConnectInfo<std::net::SocketAddr>,
    Json(body): Json<StartRegistration>,
) -> Result<Json<Value>, WebError> {
    let label: String = body.label.chars().take(64).collect();
    let client = crate::limits::ClientKey::of(remote.ip());
    let (id, options) = gw
        .passkeys
        .start_registration(client, &label)
        .map_err(|e| WebError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
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
) -> Result<Json<Value>, WebError> {
    let credential = serde_json::from_value(body.credential)
        .map_err(|e| WebError(StatusCode::BAD_REQUEST, format!("credential is not a PublicKeyCredential: {e}")))?;
    let (credential, identity) = gw
        .passkeys
        .finish_registration(&body.registration_id, &credential)
        .map_err(|e| WebError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let id = crate::passkeys::credential_id_text(&credential.cred_id);
    let record =
        serde_json::to_string(&credential).map_err(|e| WebError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let label: String = body.label.chars().take(64).collect();
    gw.store.add_credential(&id, identity.did(), &record, &label).await.map_err(|e| match e {
        crate::store::StoreError::CredentialExists => WebError(
            StatusCode::CONFLICT,
            "this credential id is already registered; create a new passkey instead".into(),
        ),
        e => {
            tracing::error!(error = %e, "storing a credential failed");
            WebError(StatusCode::INTERNAL_SERVER_ERROR, "the credential could not be stored; try again".into())
        }
    })?;
    Ok(Json(json!({
        "identity": identity.did(),
        "keyFingerprint": identity.fingerprint(),
        "credentialId": id,
    })))
}
