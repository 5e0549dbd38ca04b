//! Invite links: a room's owner makes one (N uses, an expiry, a label); whoever opens
//! it proves a key by any method and is whitelisted under the label. No account is
//! made and nothing but the proof leaves the invitee's device.

use super::auth::{offer_challenge, redeem_answer};
use super::extract::Form;
use super::host::{owner_form, render_room_at, Host};
use super::pages::render;
use super::{AppState, Error};
use crate::admission::Purpose;
use crate::ids::RoomId;
use crate::store::Invite;
use askama::Template;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;
use std::net::SocketAddr;

pub fn router() -> Router<AppState> {
    Router::new().route("/rooms/{room}/invites", post(create_invite)).route("/i/{invite}", get(invite_page))
}

/// What anyone holding the link may call: a challenge, and its answer.
pub fn open() -> Router<AppState> {
    Router::new()
        .route("/i/{invite}/challenge", post(invite_challenge))
        .route("/i/{invite}/verify", post(invite_verify))
}

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
) -> Result<Response, Error> {
    let (id, record) = owner_form(&state, &session, &room, &form.csrf).await?;
    if !(1..=1000).contains(&form.uses) || !(1..=24 * 90).contains(&form.hours) {
        let errors = vec!["An invite has 1 to 1000 uses and lasts 1 hour to 90 days.".to_owned()];
        return render_room_at("invites", &state, &session, &id, record, None, errors).await;
    }
    let expires = Utc::now() + chrono::Duration::hours(form.hours);
    let remote = crate::server::proxy::remote_text(remote);
    let actor = crate::whitelist::Actor::owner(&session.identity, "host page", Some(&remote));
    let invite = state
        .gateway
        .whitelist()
        .create_invite(&id, actor, &form.label, form.uses, expires)
        .await
        .map_err(|e| Error::internal("creating an invite", e))?;
    let notice = Some(format!("Invite created: {}/i/{invite}", state.gateway.origin));
    Ok(super::host::show_after_change(&state, &session, &id, "invites", notice, Vec::new()).await)
}

#[derive(Template)]
#[template(path = "invite.html")]
struct InvitePage {
    invite: String,
    label: String,
    room_name: String,
    viewer: super::auth::Viewer,
}

async fn usable_invite(state: &AppState, invite: &str) -> Result<Invite, Error> {
    state.gateway.store.invite(invite).await.map_err(|e| Error::internal("invite lookup", e))?.ok_or(Error::page(
        StatusCode::NOT_FOUND,
        "This invite link is used up, expired, or never existed. Ask the host for a new one.",
    ))
}

pub async fn invite_page(
    State(state): State<AppState>,
    who: super::auth::SignedIn,
    Path(invite): Path<String>,
) -> Result<Response, Error> {
    let invite = usable_invite(&state, &invite).await?;
    let room_name = match RoomId::parse(&invite.room) {
        Ok(id) => state.gateway.store.room(&id).await.ok().flatten().map(|r| r.name).unwrap_or_default(),
        Err(_) => String::new(),
    };
    Ok(render(&InvitePage { invite: invite.id, label: invite.label, room_name, viewer: who.into() }))
}

/// The invite's room, for the JSON endpoints.
async fn invite_room(state: &AppState, invite: &str) -> Result<(Invite, RoomId), Error> {
    let gone = || Error::json(StatusCode::NOT_FOUND, "this invite is used up or expired");
    let invite = usable_invite(state, invite).await.map_err(|_| gone())?;
    let room = RoomId::parse(&invite.room).map_err(|_| gone())?;
    Ok((invite, room))
}

pub async fn invite_challenge(
    State(state): State<AppState>,
    Path(invite): Path<String>,
    body: Option<Json<Value>>,
) -> Result<Json<Value>, Error> {
    let (_, room) = invite_room(&state, &invite).await?;
    let address = body.as_ref().and_then(|Json(b)| b["address"].as_str().map(str::to_owned));
    offer_challenge(&state, Purpose::Enrol { room }, address.as_deref()).await.map(Json)
}

/// Whoever proves a key through an invite is whitelisted under the invite's label.
pub async fn invite_verify(
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(invite): Path<String>,
    Json(answer): Json<Value>,
) -> Result<Json<Value>, Error> {
    let gw = &state.gateway;
    let (invite, room) = invite_room(&state, &invite).await?;
    let admitted = redeem_answer(&state, remote, answer, |p| matches!(p, Purpose::Enrol { .. })).await?;
    if admitted.purpose != (Purpose::Enrol { room: room.clone() }) {
        return Err(Error::json(StatusCode::FORBIDDEN, "this proof is for another room"));
    }
    let identity = admitted.identity;
    let remote = crate::server::proxy::remote_text(remote);
    match gw.whitelist().redeem_invite(&room, &invite.id, &invite.label, &identity, Some(&remote)).await {
        Ok(()) => {}
        Err(crate::whitelist::ChangeError::InviteUsed) => {
            return Err(Error::json(StatusCode::GONE, "this invite was used up a moment ago"))
        }
        Err(e) => return Err(Error::internal("redeeming an invite", e).as_json()),
    }
    Ok(Json(
        serde_json::json!({"identity": identity.did(), "keyFingerprint": identity.fingerprint(), "room": room.as_str()}),
    ))
}
