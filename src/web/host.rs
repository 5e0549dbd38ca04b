//! The host's pages: my rooms, a room's whitelist, settings, audit log and who is
//! live (invites are in `invites`). Server-rendered forms; every POST carries the
//! CSRF token and every room page is for the room's owners only.

use super::auth::{csrf_ok, SignedIn};
use super::extract::Form;
use super::pages::render;
use super::{AppState, Error};
use crate::identity::{parse_key_list, Did, Identity};
use crate::ids::{PeerId, RoomId};
use crate::protocol::PeerInfo;
use crate::store::{AuditRecord, Invite, NewEntry, RoomRecord, RoomSettings, WebSession, WhitelistEntry};
use crate::whitelist::{clip_label, Actor, ChangeError};
use askama::Template;
use axum::extract::{ConnectInfo, Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::Value;
use std::net::SocketAddr;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/signin", get(sign_in_page))
        .route("/rooms", get(my_rooms).post(create_room))
        .route("/rooms/{room}", get(room_page))
        .route("/rooms/{room}/allow", post(allow))
        .route("/rooms/{room}/deny", post(deny))
        .route("/rooms/{room}/settings", post(settings))
        .route("/rooms/{room}/owners", post(owners))
        .route("/rooms/{room}/audit", get(audit_page))
        .route("/rooms/{room}/live", get(live_page))
        .route("/rooms/{room}/kick", post(kick))
        .route("/rooms/{room}/reverify", post(reverify))
}

const EXPIRED_FORM: Error = Error::page(StatusCode::FORBIDDEN, "The form expired; reload the page and try again.");

/// The signed-in host of a request; anyone else is sent to the sign-in page.
pub struct Host(pub(super) WebSession);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Host
where
    std::sync::Arc<crate::gateway::Gateway>: axum::extract::FromRef<S>,
{
    type Rejection = Redirect;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        match SignedIn::from_request_parts(parts, state).await {
            Ok(SignedIn(Some((session, _)))) => Ok(Host(session)),
            _ => Err(Redirect::to("/signin")),
        }
    }
}

fn check_csrf(session: &WebSession, submitted: &str) -> Result<(), Error> {
    if csrf_ok(session, submitted) {
        Ok(())
    } else {
        Err(EXPIRED_FORM)
    }
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage {
    signed_in: Option<Did>,
}

pub async fn sign_in_page(SignedIn(session): SignedIn) -> Response {
    render(&SignInPage { signed_in: session.map(|(s, _)| s.identity) })
}

/// The room, if the signed-in identity owns it; a clear refusal otherwise. A room
/// that does not exist and one owned by someone else look the same.
async fn owned_room(state: &AppState, session: &WebSession, room: &str) -> Result<(RoomId, RoomRecord), Error> {
    const NOT_YOURS: Error =
        Error::page(StatusCode::FORBIDDEN, "This room does not exist or you are not one of its owners.");
    let id = RoomId::parse(room).map_err(|_| NOT_YOURS)?;
    match state.gateway.store.room(&id).await.map_err(|e| Error::internal("room lookup", e))? {
        Some(record) if record.owners.contains(&session.identity) => Ok((id, record)),
        _ => Err(NOT_YOURS),
    }
}

/// A form POST about a room: the CSRF token must be the session's and the
/// signed-in identity must own the room.
pub(super) async fn owner_form(
    state: &AppState,
    session: &WebSession,
    room: &str,
    csrf: &str,
) -> Result<(RoomId, RoomRecord), Error> {
    check_csrf(session, csrf)?;
    owned_room(state, session, room).await
}

/// A peer id from a form field.
fn form_peer(text: String) -> Result<PeerId, Error> {
    serde_json::from_value(Value::String(text))
        .map_err(|_| Error::page(StatusCode::BAD_REQUEST, "No such participant."))
}

#[derive(Template)]
#[template(path = "rooms.html")]
struct RoomsPage {
    identity: Did,
    csrf: String,
    rooms: Vec<(String, String, i64, usize)>,
}

pub async fn my_rooms(State(state): State<AppState>, Host(session): Host) -> Result<Response, Error> {
    let gw = &state.gateway;
    let rooms = gw.store.rooms_owned_by(&session.identity).await.map_err(|e| Error::internal("listing rooms", e))?;
    let rooms = rooms
        .into_iter()
        .map(|(id, name, entries)| {
            let live = gw.rooms.peers(&id).len();
            (id.to_string(), name, entries, live)
        })
        .collect();
    Ok(render(&RoomsPage { identity: session.identity, csrf: session.csrf, rooms }))
}

#[derive(Deserialize)]
pub struct CreateRoomForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

pub async fn create_room(
    State(state): State<AppState>,
    Host(session): Host,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Form(form): Form<CreateRoomForm>,
) -> Result<Response, Error> {
    check_csrf(&session, &form.csrf)?;
    let gw = &state.gateway;
    let creators = &gw.settings.room_creators;
    if !creators.is_empty() && !creators.iter().any(|c| *c == session.identity.as_str()) {
        return Err(Error::page(StatusCode::FORBIDDEN, "Your key may not create rooms on this server."));
    }
    let Ok(owner) = Identity::parse(&session.identity) else {
        return Err(Error::page(StatusCode::INTERNAL_SERVER_ERROR, "Your session is unreadable; sign in again."));
    };
    let name: String = form.name.trim().chars().take(100).collect();
    let id = RoomId::generate();
    let remote = remote.to_string();
    let actor = Actor::owner(&session.identity, "host page", Some(&remote));
    let per_hour = Some(gw.settings.max_rooms_per_identity_per_hour);
    match gw.whitelist().create_room(&id, &name, &owner, actor, per_hour).await {
        Ok(()) => Ok(Redirect::to(&format!("/rooms/{id}")).into_response()),
        Err(ChangeError::TooManyRooms(_)) => Err(Error::page(
            StatusCode::TOO_MANY_REQUESTS,
            "You created many rooms in the last hour; reuse one, or try again later.",
        )),
        Err(e) => Err(Error::internal("creating a room", e)),
    }
}

/// A whitelist row as the room page shows it.
struct Row {
    entry: WhitelistEntry,
    fingerprint: String,
    kind: &'static str,
    /// How the holder of such a key can sign in, for the host's eye.
    hints: &'static str,
    /// The YubiKey attestation seen when this key was last admitted with one.
    attestation: Option<String>,
}

fn method_hints(kind: &str) -> &'static str {
    match kind {
        "P-256" => "browser key, passkey, YubiKey PIV, SSH (ECDSA)",
        "P-384" => "YubiKey PIV, SSH (ECDSA)",
        "Ed25519" => "SSH, security key",
        "RSA" => "SSH, YubiKey PIV, passkey (RS256)",
        "Ethereum account" => "wallet",
        _ => "",
    }
}

#[derive(Template)]
#[template(path = "room.html")]
struct RoomPage {
    room: String,
    name: String,
    csrf: String,
    origin: String,
    rows: Vec<Row>,
    owners: Vec<Did>,
    require_uv: bool,
    max_peers: String,
    freshness: String,
    /// Minutes between required confirmations of identity; empty: none required.
    reverify_every: String,
    invites: Vec<Invite>,
    live: usize,
    /// What the last form did, e.g. "added 3 keys".
    notice: Option<String>,
    /// What could not be done, with why, tagged with the form it belongs beside
    /// ("keys", "whitelist", "settings", "owners", "invites").
    errors: Vec<(&'static str, String)>,
}

/// The room page with `errors` shown beside the form of `section`.
pub(super) async fn render_room_at(
    section: &'static str,
    state: &AppState,
    session: &WebSession,
    id: &RoomId,
    record: RoomRecord,
    notice: Option<String>,
    errors: Vec<String>,
) -> Result<Response, Error> {
    let errors = errors.into_iter().map(|e| (section, e)).collect();
    render_room(state, session, id, record, notice, errors).await
}

async fn render_room(
    state: &AppState,
    session: &WebSession,
    id: &RoomId,
    record: RoomRecord,
    notice: Option<String>,
    errors: Vec<(&'static str, String)>,
) -> Result<Response, Error> {
    let gw = &state.gateway;
    let entries = gw.store.whitelist(id).await.map_err(|e| Error::internal("loading the whitelist", e))?;
    let attestations = gw.store.room_attestations(id).await.map_err(|e| Error::internal("loading attestations", e))?;
    let invites = gw.store.room_invites(id).await.map_err(|e| Error::internal("loading invites", e))?;
    let rows = entries
        .into_iter()
        .map(|entry| {
            let id = Identity::parse(&entry.identity).ok();
            Row {
                fingerprint: id.as_ref().map(Identity::fingerprint).unwrap_or_default(),
                kind: id.as_ref().map_or("unknown", Identity::kind),
                hints: method_hints(id.as_ref().map_or("", Identity::kind)),
                attestation: attestations.get(entry.identity.as_str()).cloned(),
                entry,
            }
        })
        .collect();
    let page = RoomPage {
        room: id.to_string(),
        name: record.name,
        csrf: session.csrf.clone(),
        origin: gw.origin.clone(),
        rows,
        owners: record.owners,
        require_uv: record.require_user_verification,
        max_peers: record.max_peers.map(|n| n.to_string()).unwrap_or_default(),
        freshness: record.freshness_secs.map(|n| n.to_string()).unwrap_or_default(),
        reverify_every: record.reverify_every_secs.map(|n| (n / 60).to_string()).unwrap_or_default(),
        invites,
        live: gw.rooms.peers(id).len(),
        notice,
        errors,
    };
    Ok(render(&page))
}

pub async fn room_page(
    State(state): State<AppState>,
    Host(session): Host,
    Path(room): Path<String>,
) -> Result<Response, Error> {
    let (id, record) = owned_room(&state, &session, &room).await?;
    render_room_at("keys", &state, &session, &id, record, None, Vec::new()).await
}

/// Adds keys from a textarea and/or an uploaded authorized_keys / allowed_signers
/// file (multipart form). Bad lines are reported by number; good ones are kept.
pub async fn allow(
    State(state): State<AppState>,
    Host(session): Host,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    mut form: Multipart,
) -> Result<Response, Error> {
    let (mut csrf, mut keys, mut file, mut label) = (String::new(), String::new(), String::new(), String::new());
    let mut piv_require = String::new();
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_owned();
                let Ok(text) = field.text().await else {
                    return Err(Error::page(
                        StatusCode::BAD_REQUEST,
                        "The upload is not a text file; upload authorized_keys or allowed_signers text.",
                    ));
                };
                match name.as_str() {
                    "csrf" => csrf = text,
                    "keys" => keys = text,
                    "file" => file = text,
                    "label" => label = clip_label(&text),
                    "piv_require" => piv_require = text.trim().to_owned(),
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(_) => return Err(Error::page(StatusCode::BAD_REQUEST, "The form could not be read; try again.")),
        }
    }
    let (id, record) = owner_form(&state, &session, &room, &csrf).await?;
    let requirement = match piv_require.as_str() {
        "" => None,
        text => match crate::verify::PivRequirement::parse(text) {
            Ok(r) => Some(r.to_string()),
            Err(e) => {
                let errors = vec![format!("PIV requirement: {e}")];
                return render_room_at("keys", &state, &session, &id, record, None, errors).await;
            }
        },
    };
    let (mut entries, mut errors) = (Vec::new(), Vec::new());
    for (source, text) in [("pasted", &keys), ("file", &file)] {
        for (line, parsed) in parse_key_list(text) {
            match parsed {
                Ok(k) => entries.push(NewEntry {
                    identity: k.identity.did().to_owned(),
                    label: if label.is_empty() { k.comment.unwrap_or_default() } else { label.clone() },
                    ssh_namespaces: k.namespaces,
                    piv_requirement: requirement.clone(),
                }),
                Err(e) => errors.push(format!("{source} line {line}: {e}")),
            }
        }
    }
    if entries.is_empty() && errors.is_empty() {
        errors.push("No key given: paste one or more keys, or upload a file.".into());
    }
    let mut notice = None;
    if !entries.is_empty() {
        let remote = remote.to_string();
        let actor = Actor::owner(&session.identity, "host page", Some(&remote));
        state.gateway.whitelist().add(&id, actor, &entries).await.map_err(refused_change)?;
        let n = entries.len();
        notice = Some(format!("Added {n} key{}.", if n == 1 { "" } else { "s" }));
    }
    render_room_at("keys", &state, &session, &id, record, notice, errors).await
}

/// The page for a change the service refused: not the owner (any more), or the
/// room is gone; anything else is the server's problem.
fn refused_change(e: ChangeError) -> Error {
    match e {
        ChangeError::NotOwner | ChangeError::NoRoom => {
            Error::page(StatusCode::FORBIDDEN, "This room does not exist or you are not one of its owners.")
        }
        e => Error::internal("changing the whitelist", e),
    }
}

#[derive(Deserialize)]
pub struct DenyForm {
    #[serde(default)]
    csrf: String,
    identity: String,
}

pub async fn deny(
    State(state): State<AppState>,
    Host(session): Host,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    Form(form): Form<DenyForm>,
) -> Result<Response, Error> {
    let (id, record) = owner_form(&state, &session, &room, &form.csrf).await?;
    let remote = remote.to_string();
    let actor = Actor::owner(&session.identity, "host page", Some(&remote));
    let problem = match Identity::parse(&form.identity) {
        Err(_) => "That is not an identity on this list.",
        Ok(identity) => match state.gateway.whitelist().remove(&id, actor, &identity).await {
            Ok(()) => return Ok(Redirect::to(&format!("/rooms/{id}")).into_response()),
            Err(ChangeError::OwnerEntry) => "An owner cannot be removed from the whitelist.",
            Err(ChangeError::NotListed) => "That key was not on the whitelist.",
            Err(e) => return Err(refused_change(e)),
        },
    };
    render_room_at("whitelist", &state, &session, &id, record, None, vec![problem.to_owned()]).await
}

#[derive(Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    require_uv: Option<String>,
    /// Empty: the server's default.
    #[serde(default)]
    max_peers: String,
    #[serde(default)]
    freshness: String,
    /// Minutes; empty: no periodic confirmation.
    #[serde(default)]
    reverify_every: String,
}

/// An optional whole number in `range` from a form field; empty means "default".
fn optional_number(text: &str, range: std::ops::RangeInclusive<i64>, what: &str) -> Result<Option<i64>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<i64>() {
        Ok(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(format!(
            "{what} must be a whole number from {} to {} (or empty for the default).",
            range.start(),
            range.end()
        )),
    }
}

pub async fn settings(
    State(state): State<AppState>,
    Host(session): Host,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    Form(form): Form<SettingsForm>,
) -> Result<Response, Error> {
    let (id, record) = owner_form(&state, &session, &room, &form.csrf).await?;
    let limits = optional_number(&form.max_peers, 2..=32, "Max peers").and_then(|m| {
        let f = optional_number(&form.freshness, 10..=3600, "The challenge lifetime")?;
        let r = optional_number(&form.reverify_every, 1..=1440, "Minutes between confirmations")?;
        Ok((m, f, r))
    });
    let (max_peers, freshness, reverify_every) = match limits {
        Ok(l) => l,
        Err(e) => return render_room_at("settings", &state, &session, &id, record, None, vec![e]).await,
    };
    let remote = remote.to_string();
    let actor = Actor::owner(&session.identity, "host page", Some(&remote));
    let require_user_verification = form.require_uv.is_some();
    state
        .gateway
        .whitelist()
        .settings(&id, actor, |s| {
            *s = RoomSettings {
                require_user_verification,
                max_peers,
                freshness_secs: freshness,
                reverify_every_secs: reverify_every.map(|m| m * 60),
            }
        })
        .await
        .map_err(refused_change)?;
    Ok(Redirect::to(&format!("/rooms/{id}")).into_response())
}

#[derive(Deserialize)]
pub struct OwnerForm {
    #[serde(default)]
    csrf: String,
    identity: String,
    #[serde(default)]
    remove: Option<String>,
}

/// Adds (any key format) or removes a co-owner. The last owner cannot be removed.
pub async fn owners(
    State(state): State<AppState>,
    Host(session): Host,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    Form(form): Form<OwnerForm>,
) -> Result<Response, Error> {
    let (id, record) = owner_form(&state, &session, &room, &form.csrf).await?;
    let identity = match Identity::parse(&form.identity) {
        Ok(i) => i,
        Err(e) => {
            return render_room_at("owners", &state, &session, &id, record, None, vec![format!("Co-owner: {e}")]).await
        }
    };
    let remote = remote.to_string();
    let actor = Actor::owner(&session.identity, "host page", Some(&remote));
    let service = state.gateway.whitelist();
    let changed = if form.remove.is_some() {
        service.remove_owner(&id, actor, &identity).await
    } else {
        service.add_owner(&id, actor, &identity).await
    };
    match changed {
        Ok(()) => Ok(Redirect::to(&format!("/rooms/{id}")).into_response()),
        Err(ChangeError::LastOwner) => {
            let errors = vec!["A room keeps at least one owner.".to_owned()];
            render_room_at("owners", &state, &session, &id, record, None, errors).await
        }
        Err(ChangeError::NoSuchOwner) => {
            let errors = vec!["That identity is not an owner of this room.".to_owned()];
            render_room_at("owners", &state, &session, &id, record, None, errors).await
        }
        Err(e) => Err(refused_change(e)),
    }
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    room: String,
    events: Vec<AuditRecord>,
    older: Option<i64>,
}

#[derive(Deserialize)]
pub struct Page {
    before: Option<i64>,
}

const AUDIT_PAGE: i64 = 50;

pub async fn audit_page(
    State(state): State<AppState>,
    Host(session): Host,
    Path(room): Path<String>,
    Query(page): Query<Page>,
) -> Result<Response, Error> {
    let (id, _) = owned_room(&state, &session, &room).await?;
    state.gateway.audit.flush().await;
    let events = state
        .gateway
        .store
        .audit(&id, AUDIT_PAGE, page.before)
        .await
        .map_err(|e| Error::internal("reading the audit log", e))?;
    let older = (events.len() as i64 == AUDIT_PAGE).then(|| events.last().map(|e| e.id)).flatten();
    Ok(render(&AuditPage { room: id.to_string(), events, older }))
}

#[derive(Template)]
#[template(path = "live.html")]
struct LivePage {
    room: String,
    csrf: String,
    peers: Vec<PeerInfo>,
}

pub async fn live_page(
    State(state): State<AppState>,
    Host(session): Host,
    Path(room): Path<String>,
) -> Result<Response, Error> {
    let (id, _) = owned_room(&state, &session, &room).await?;
    let peers = state.gateway.rooms.peers(&id);
    Ok(render(&LivePage { room: id.to_string(), csrf: session.csrf, peers }))
}

#[derive(Deserialize)]
pub struct KickForm {
    #[serde(default)]
    csrf: String,
    peer: String,
}

pub async fn kick(
    State(state): State<AppState>,
    Host(session): Host,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    Form(form): Form<KickForm>,
) -> Result<Response, Error> {
    let (id, _) = owner_form(&state, &session, &room, &form.csrf).await?;
    let peer = form_peer(form.peer)?;
    let remote = remote.to_string();
    let actor = Actor::owner(&session.identity, "host page", Some(&remote));
    match state.gateway.whitelist().kick(&id, actor, &peer).await {
        Ok(()) => Ok(Redirect::to(&format!("/rooms/{id}/live")).into_response()),
        Err(ChangeError::NoSuchPeer) => Err(Error::page(StatusCode::NOT_FOUND, "That participant has left the room.")),
        Err(e) => Err(refused_change(e)),
    }
}

/// Asks a live peer to prove its key again; the answer shows on the live page.
pub async fn reverify(
    State(state): State<AppState>,
    Host(session): Host,
    Path(room): Path<String>,
    Form(form): Form<KickForm>,
) -> Result<Response, Error> {
    let (id, _) = owner_form(&state, &session, &room, &form.csrf).await?;
    let peer = form_peer(form.peer)?;
    if !state.gateway.rooms.request_reverify(&id, &peer, None) {
        return Err(Error::page(StatusCode::NOT_FOUND, "That participant has left the room."));
    }
    Ok(Redirect::to(&format!("/rooms/{id}/live")).into_response())
}
