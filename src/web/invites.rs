//! Invite links: a room's owner makes one (N uses, an expiry, a label); whoever opens
//! it proves a key by any method and is whitelisted under the label. No account is
//! made and nothing but the proof leaves the invitee's device.

use super::auth::{issue_over_http, verify_over_http, ProofError};
use super::host::{internal, owner_form, render_room_at, Form, Host, PageError};
use super::pages::render;
use super::AppState;
use crate::challenge::IssuedChallenge;
use crate::ids::RoomId;
use crate::store::Invite;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    label: String,
    #[serde(default = "one")]
    uses: i64,
    #[serde(default = "day")]
    hours: i64,
}
fn one() -> i64 {
    1
}
fn day() -> i64 {
    24
}

pub async fn create_invite(
    State(state): State<AppState>,
    Host(session): Host,
    axum::extract::ConnectInfo(remote): axum::extract::ConnectInfo<std::net::SocketAddr>,
    Path(room): Path<String>,
    Form(form): Form<InviteForm>,
) -> Result<Response, PageError> {
    let (id, record) = owner_form(&state, &session, &room, &form.csrf).await?;
    if !(1..=1000).contains(&form.uses) || !(1..=24 * 90).contains(&form.hours) {
        let errors = vec!["An invite has 1 to 1000 uses and lasts 1 hour to 90 days.".to_owned()];
        return render_room_at("invites", &state, &session, &id, record, None, errors).await;
    }
    let expires = Utc::now() + chrono::Duration::hours(form.hours);
    let remote = remote.to_string();
    let actor = crate::whitelist::Actor::owner(&session.identity, "host page", Some(&remote));
    let invite = state
        .gateway
        .whitelist()
        .create_invite(&id, actor, &form.label, form.uses, expires)
        .await
        .map_err(|e| internal("creating an invite", e))?;
    let notice = Some(format!("Invite created: {}/i/{invite}", state.gateway.origin));
    render_room_at("invites", &state, &session, &id, record, notice, Vec::new()).await
}

#[derive(Template)]
#[template(path = "invite.html")]
struct InvitePage {
    invite: String,
    label: String,
    room_name: String,
}

async fn usable_invite(state: &AppState, invite: &str) -> Result<Invite, PageError> {
    state.gateway.store.invite(invite).await.map_err(|e| internal("invite lookup", e))?.ok_or(PageError(
        StatusCode::NOT_FOUND,
        "This invite link is used up, expired, or never existed. Ask the host for a new one.",
    ))
}

pub async fn invite_page(State(state): State<AppState>, Path(invite): Path<String>) -> Result<Response, PageError> {
    let invite = usable_invite(&state, &invite).await?;
    let room_name = match RoomId::parse(&invite.room) {
        Ok(id) => state.gateway.store.room(&id).await.ok().flatten().map(|r| r.name).unwrap_or_default(),
        Err(_) => String::new(),
    };
    Ok(render(&InvitePage { invite: invite.id, label: invite.label, room_name }))
}

pub async fn invite_challenge(
    State(state): State<AppState>,
    axum::extract::ConnectInfo(remote): axum::extract::ConnectInfo<std::net::SocketAddr>,
    Path(invite): Path<String>,
    body: Option<Json<Value>>,
) -> Result<Json<Value>, ProofError> {
    let invite = usable_invite(&state, &invite)
        .await
        .map_err(|_| ProofError::new(StatusCode::NOT_FOUND, "this invite is used up or expired"))?;
    let room = RoomId::parse(&invite.room).map_err(|_| ProofError::new(StatusCode::NOT_FOUND, "no such room"))?;
    let address = body.as_ref().and_then(|Json(b)| b["address"].as_str().map(str::to_owned));
    let challenge = IssuedChallenge::issue(room, &state.gateway.origin, None, Utc::now());
    let client = crate::limits::ClientKey::of(remote.ip());
    issue_over_http(&state.gateway, &state.pending, client, challenge, address.as_deref()).map(Json)
}

/// Whoever proves a key through an invite is whitelisted under the invite's label.
pub async fn invite_verify(
    State(state): State<AppState>,
    axum::extract::ConnectInfo(remote): axum::extract::ConnectInfo<std::net::SocketAddr>,
    Path(invite): Path<String>,
    Json(answer): Json<Value>,
) -> Result<Json<Value>, ProofError> {
    let gw = &state.gateway;
    let invite = usable_invite(&state, &invite)
        .await
        .map_err(|_| ProofError::new(StatusCode::NOT_FOUND, "this invite is used up or expired"))?;
    let room = RoomId::parse(&invite.room).map_err(|_| ProofError::new(StatusCode::NOT_FOUND, "no such room"))?;
    if answer["payload"]["roomId"].as_str() != Some(room.as_str()) {
        return Err(ProofError::new(StatusCode::FORBIDDEN, "this proof is for another room"));
    }
    let (identity, _) = verify_over_http(gw, &state.pending, &answer).await?;
    let remote = remote.to_string();
    match gw.whitelist().redeem_invite(&room, &invite.id, &invite.label, &identity, Some(&remote)).await {
        Ok(()) => {}
        Err(crate::whitelist::ChangeError::InviteUsed) => {
            return Err(ProofError::new(StatusCode::GONE, "this invite was used up a moment ago"))
        }
        Err(e) => {
            tracing::error!(error = %e, "redeeming an invite failed");
            return Err(ProofError::new(StatusCode::INTERNAL_SERVER_ERROR, "the key could not be added; try again"));
        }
    }
    Ok(Json(
        serde_json::json!({"identity": identity.did(), "keyFingerprint": identity.fingerprint(), "room": room.as_str()}),
    ))
}
