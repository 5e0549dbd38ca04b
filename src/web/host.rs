//! The host's pages: my rooms, a room's whitelist, settings, audit log and who is
//! live (invites are in `invites`). Server-rendered forms; every POST carries the
//! CSRF token and every room page is for the room's owners only.

use super::auth::{csrf_ok, SignedIn};
use super::extract::Form;
use super::pages::render;
use super::{AppState, Error};
use crate::identity::{Did, Identity, KeyListReader};
use crate::ids::{PeerId, RoomId};
use crate::protocol::PeerInfo;
use crate::store::{
    AuditRecord, Invite, ListPage, NewEntry, RoomRecord, RoomSettings, Search, WebSession, WhitelistEntry,
};
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
        // The key list streams into the store in batches, so only the request's
        // length is bounded here (a million keys in authorized_keys form is ~100 MB).
        .route("/rooms/{room}/allow", post(allow).layer(axum::extract::DefaultBodyLimit::max(MAX_UPLOAD)))
        .route("/rooms/{room}/deny", post(deny))
        .route("/rooms/{room}/settings", post(settings))
        .route("/rooms/{room}/delete", post(delete_room))
        .route("/rooms/{room}/owners", post(owners))
        .route("/rooms/{room}/audit", get(audit_page))
        .route("/rooms/{room}/live", get(live_page))
        .route("/rooms/{room}/kick", post(kick))
        .route("/rooms/{room}/reverify", post(reverify))
}

/// The largest key list one upload may carry.
const MAX_UPLOAD: usize = 1024 * 1024 * 1024;

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
const NOT_YOURS: Error =
    Error::page(StatusCode::FORBIDDEN, "This room does not exist or you are not one of its owners.");

async fn owned_room(state: &AppState, session: &WebSession, room: &str) -> Result<(RoomId, RoomRecord), Error> {
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
    /// Who is signed in (the header).
    me: String,
    csrf: String,
    rooms: Vec<(String, String, i64, usize)>,
    notice: Option<String>,
}

#[derive(Deserialize)]
pub struct RoomsQuery {
    /// A room just deleted (Post/Redirect/Get), to say so.
    deleted: Option<String>,
}

pub async fn my_rooms(
    State(state): State<AppState>,
    Host(session): Host,
    Query(query): Query<RoomsQuery>,
) -> Result<Response, Error> {
    let gw = &state.gateway;
    let rooms = gw.store.rooms_owned_by(&session.identity).await.map_err(|e| Error::internal("listing rooms", e))?;
    let ids: Vec<RoomId> = rooms.iter().map(|(id, _, _)| id.clone()).collect();
    let live = gw.rooms.counts(&session.identity, &ids).await;
    let rooms =
        rooms.into_iter().zip(live).map(|((id, name, entries), live)| (id.to_string(), name, entries, live)).collect();
    let notice = query
        .deleted
        .and_then(|d| RoomId::parse(&d).ok())
        .map(|d| format!("Room {d} was deleted; everyone in it was sent out. Its audit log is kept."));
    Ok(render(&RoomsPage { me: session.identity.to_string(), csrf: session.csrf, rooms, notice }))
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
    let remote = crate::server::proxy::remote_text(remote);
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
    /// Who is signed in (the header).
    me: String,
    csrf: String,
    origin: String,
    /// One page of the whitelist.
    rows: Vec<Row>,
    /// Entries in the whole whitelist.
    total: i64,
    /// What the list is searched for ("": everything).
    search: String,
    /// Whether this page is past the first.
    paged: bool,
    /// The identity the next page starts after, when there is one.
    next: Option<String>,
    owners: Vec<Did>,
    require_uv: bool,
    max_peers: String,
    freshness: String,
    /// Minutes between required confirmations of identity; empty: none required.
    reverify_every: String,
    /// How calls carry media: `mesh`, `sfu` or `auto`.
    media: &'static str,
    /// Whether this server has an SFU, and the size at which `auto` calls move to it.
    has_sfu: bool,
    sfu_from: usize,
    invites: Vec<Invite>,
    /// Who is in the call now.
    peers: Vec<crate::protocol::PeerInfo>,
    /// The latest few audit events.
    recent: Vec<AuditRecord>,
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
    render_room(state, session, id, record, notice, errors, ListPage::first(Search::All)).await
}

/// Audit events the room page shows (the audit page has the rest).
const RECENT_EVENTS: i64 = 5;

/// Entries per page of the room page's whitelist.
const PAGE_ENTRIES: i64 = 50;

impl ListPage {
    fn first(search: Search) -> Self {
        ListPage { search, after: None, limit: PAGE_ENTRIES }
    }
}

/// The room page's list position: `?q=` searches, `?after=` pages on; `?done=`
/// names what the change that redirected here did.
#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    after: String,
    #[serde(default)]
    done: String,
}

/// What a change did, for the page after its redirect.
#[derive(serde::Serialize, serde::Deserialize)]
struct Flash {
    notice: Option<String>,
    errors: Vec<String>,
}

/// How long a change's notice waits for the page its redirect opens.
const FLASH_TTL: chrono::Duration = chrono::Duration::minutes(10);

/// The room page's sections a notice may belong to.
fn section_named(name: &str) -> &'static str {
    ["keys", "whitelist", "invites", "settings", "owners", "delete"].into_iter().find(|s| *s == name).unwrap_or("keys")
}

/// What a session's notices are kept under: only that session reads them.
fn flash_session(session: &WebSession) -> String {
    use sha2::{Digest, Sha256};
    crate::ids::hex(&Sha256::digest(session.csrf.as_bytes()))
}

/// Post/Redirect/Get: keeps what the change did (in the store, so the redirected
/// request may reach any server) and sends the browser to the room page, which
/// shows it once, to this session only; a reload shows the page, not the change
/// again. If the notice cannot be kept, the page is shown at once instead.
pub(super) async fn show_after_change(
    state: &AppState,
    session: &WebSession,
    room: &RoomId,
    section: &'static str,
    notice: Option<String>,
    errors: Vec<String>,
) -> Response {
    // The page opens on the form's section (its tab), where any errors are; keys
    // added without a bad line show in the list. The notice is above the tabs.
    let anchor = match section {
        "keys" if errors.is_empty() => "#who".to_owned(),
        "keys" => "#keys-section".to_owned(),
        "whitelist" => "#who".to_owned(),
        other => format!("#{other}"),
    };
    let id = crate::ids::hex(&crate::ids::random_bytes::<16>());
    let stored = crate::store::StoredFlash {
        session: flash_session(session),
        room_id: room.to_string(),
        section: section.to_owned(),
        body: serde_json::to_string(&Flash { notice, errors }).unwrap_or_default(),
    };
    let expires = (chrono::Utc::now() + FLASH_TTL).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    if let Err(e) = state.gateway.store.put_flash(&id, &stored, &expires).await {
        // The change is made; only its notice is lost.
        tracing::error!(error = %e, "keeping a notice failed");
        return Redirect::to(&format!("/rooms/{room}{anchor}")).into_response();
    }
    Redirect::to(&format!("/rooms/{room}?done={id}{anchor}")).into_response()
}

async fn render_room(
    state: &AppState,
    session: &WebSession,
    id: &RoomId,
    record: RoomRecord,
    notice: Option<String>,
    errors: Vec<(&'static str, String)>,
    list: ListPage,
) -> Result<Response, Error> {
    let gw = &state.gateway;
    let load = |e| Error::internal("loading the whitelist", e);
    let entries = gw.store.whitelist_page(id, &list).await.map_err(load)?;
    let total = gw.store.whitelist_len(id).await.map_err(load)?;
    let shown: Vec<&str> = entries.iter().map(|e| e.identity.as_str()).collect();
    let attestations =
        gw.store.attestations_of(&shown).await.map_err(|e| Error::internal("loading attestations", e))?;
    let invites = gw.store.room_invites(id).await.map_err(|e| Error::internal("loading invites", e))?;
    let next = entries.last().filter(|_| entries.len() as i64 == list.limit).map(|last| last.identity.to_string());
    let rows = entries
        .into_iter()
        .map(|entry| {
            let id = Identity::parse(&entry.identity).ok();
            Row {
                kind: id.as_ref().map_or("unknown", Identity::kind),
                hints: method_hints(id.as_ref().map_or("", Identity::kind)),
                attestation: attestations.get(entry.identity.as_str()).cloned(),
                entry,
            }
        })
        .collect();
    gw.audit.flush().await;
    let recent = gw
        .store
        .audit_of(id, None, RECENT_EVENTS, None)
        .await
        .map_err(|e| Error::internal("reading the audit log", e))?;
    let page = RoomPage {
        room: id.to_string(),
        name: record.name,
        me: session.identity.to_string(),
        csrf: session.csrf.clone(),
        origin: gw.origin.clone(),
        rows,
        total,
        search: list.search.text().to_owned(),
        paged: list.after.is_some(),
        next,
        owners: record.owners,
        require_uv: record.require_user_verification,
        max_peers: record.max_peers.map(|n| n.to_string()).unwrap_or_default(),
        freshness: record.freshness_secs.map(|n| n.to_string()).unwrap_or_default(),
        reverify_every: record.reverify_every_secs.map(|n| (n / 60).to_string()).unwrap_or_default(),
        media: crate::rooms::Media::from_stored(record.media.as_deref()).as_str(),
        has_sfu: gw.sfu.is_some(),
        sfu_from: gw.settings.sfu_from,
        invites,
        peers: gw.rooms.everyone(id).await,
        recent,
        notice,
        errors,
    };
    Ok(render(&page))
}

pub async fn room_page(
    State(state): State<AppState>,
    Host(session): Host,
    Path(room): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Response, Error> {
    let (id, record) = owned_room(&state, &session, &room).await?;
    // A notice id is 32 hex digits; anything else was never one, and is not looked up.
    if query.done.len() == 32 && query.done.bytes().all(|b| b.is_ascii_hexdigit()) {
        let taken = state.gateway.store.take_flash(&query.done).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "reading a notice failed");
            None
        });
        if let Some(f) = taken.filter(|f| f.session == flash_session(&session) && f.room_id == id.as_str()) {
            let Flash { notice, errors } =
                serde_json::from_str(&f.body).unwrap_or(Flash { notice: None, errors: Vec::new() });
            return render_room_at(section_named(&f.section), &state, &session, &id, record, notice, errors).await;
        }
    }
    let mut list = ListPage::first(Search::parse(&query.q));
    list.after = Some(query.after).filter(|a| !a.is_empty());
    render_room(&state, &session, &id, record, None, Vec::new(), list).await
}

/// Adds keys from a textarea and/or an uploaded authorized_keys / allowed_signers
/// file (multipart form), one key per line in any format. The upload streams: it is
/// read in chunks and written in batches through the same import as `keygate room
/// allow`, so a million-line file never sits in memory. Bad lines are reported by
/// number; good ones are kept. The form sends its CSRF token, label and PIV
/// requirement before the keys.
pub async fn allow(
    State(state): State<AppState>,
    Host(session): Host,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    mut form: Multipart,
) -> Result<Response, Error> {
    const UNREADABLE: Error = Error::page(StatusCode::BAD_REQUEST, "The form could not be read; try again.");
    let (mut csrf, mut label, mut piv_require) = (String::new(), String::new(), String::new());
    let remote = crate::server::proxy::remote_text(remote);
    let service = state.gateway.whitelist();
    // Checked against the session's rooms below, before any key is read.
    let room_id = RoomId::parse(&room).map_err(|_| NOT_YOURS)?;
    let mut owned: Option<RoomRecord> = None;
    let mut requirement = None;
    let mut import = None;
    let (mut errors, mut bad) = (Vec::new(), 0usize);
    while let Some(mut field) = form.next_field().await.map_err(|_| UNREADABLE)? {
        let name = field.name().unwrap_or_default().to_owned();
        if !matches!(name.as_str(), "keys" | "file") {
            let text = small_field(&mut field).await?;
            match name.as_str() {
                "csrf" => csrf = text,
                "label" => label = clip_label(&text),
                "piv_require" => piv_require = text.trim().to_owned(),
                _ => {}
            }
            if import.is_some() && matches!(name.as_str(), "label" | "piv_require") {
                errors.push("The label and PIV requirement came after the keys and were not applied.".to_owned());
            }
            continue;
        }
        // The first list: who asks, and for what, before any key is read.
        if owned.is_none() {
            let (_, record) = owner_form(&state, &session, &room, &csrf).await?;
            requirement = match piv_require.as_str() {
                "" => None,
                text => match crate::verify::PivRequirement::parse(text) {
                    Ok(r) => Some(r.to_string()),
                    Err(e) => {
                        let errors = vec![format!("PIV requirement: {e}")];
                        return render_room_at("keys", &state, &session, &room_id, record, None, errors).await;
                    }
                },
            };
            owned = Some(record);
        }
        let import = import.get_or_insert_with(|| {
            service.import(&room_id, Actor::owner(&session.identity, "host page", Some(remote.as_str())))
        });
        let source = if name == "keys" { "pasted" } else { "file" };
        let mut reader = KeyListReader::default();
        let mut found = Vec::new();
        loop {
            let chunk = field.chunk().await.map_err(|_| UNREADABLE)?;
            match &chunk {
                Some(bytes) => reader.feed(bytes, &mut found),
                None => std::mem::take(&mut reader).finish(&mut found),
            }
            for (line, parsed) in found.drain(..) {
                match parsed {
                    Ok(k) => import
                        .push(NewEntry::from_line(k, &label, requirement.clone()))
                        .await
                        .map_err(refused_change)?,
                    Err(e) => {
                        bad += 1;
                        if errors.len() < MAX_LINE_ERRORS {
                            errors.push(format!("{source} line {line}: {e}"));
                        }
                    }
                }
            }
            if chunk.is_none() {
                break;
            }
        }
    }
    let Some(record) = owned else {
        // No key field at all: still a form of this room's owner?
        let (id, record) = owner_form(&state, &session, &room, &csrf).await?;
        let errors = vec!["No key given: paste one or more keys, or upload a file.".to_owned()];
        return render_room_at("keys", &state, &session, &id, record, None, errors).await;
    };
    if bad > errors.len() {
        errors.push(format!("…and {} more lines could not be read.", bad - errors.len()));
    }
    let mut notice = None;
    match import {
        Some(import) if !import.is_empty() => {
            let done = import.finish().await.map_err(refused_change)?;
            let (n, added) = (done.new.len(), done.added());
            notice = Some(match n - added {
                0 => format!("Added {n} key{}.", if n == 1 { "" } else { "s" }),
                kept => {
                    format!("Added {added} new key{}; {kept} were already listed.", if added == 1 { "" } else { "s" })
                }
            });
        }
        _ if errors.is_empty() => errors.push("No key given: paste one or more keys, or upload a file.".into()),
        _ => {}
    }
    if notice.is_none() {
        // Nothing changed: the form is shown again with what was wrong.
        return render_room_at("keys", &state, &session, &room_id, record, notice, errors).await;
    }
    Ok(show_after_change(&state, &session, &room_id, "keys", notice, errors).await)
}

/// Bad lines named on the page; the rest are counted.
const MAX_LINE_ERRORS: usize = 100;

/// A form field that is not a key list: at most a few KiB.
async fn small_field(field: &mut axum::extract::multipart::Field<'_>) -> Result<String, Error> {
    const TOO_LONG: Error = Error::page(StatusCode::BAD_REQUEST, "A form field is too long.");
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|_| TOO_LONG)? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > 4096 {
            return Err(TOO_LONG);
        }
    }
    String::from_utf8(bytes).map_err(|_| Error::page(StatusCode::BAD_REQUEST, "A form field is not text."))
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
    let remote = crate::server::proxy::remote_text(remote);
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
    /// `mesh`, `sfu` or `auto`; absent: unchanged.
    #[serde(default)]
    media: Option<String>,
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
        let media = match form.media.as_deref().map(|t| crate::rooms::Media::parse(t.trim())) {
            None => None,
            Some(Some(media)) => Some(media),
            Some(None) => return Err("How calls carry media must be mesh, sfu or auto.".to_owned()),
        };
        Ok((m, f, r, media))
    });
    let (max_peers, freshness, reverify_every, media) = match limits {
        Ok(l) => l,
        Err(e) => return render_room_at("settings", &state, &session, &id, record, None, vec![e]).await,
    };
    let remote = crate::server::proxy::remote_text(remote);
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
                media: media.map_or(s.media.take(), |m| Some(m.as_str().to_owned())),
            }
        })
        .await
        .map_err(refused_change)?;
    Ok(Redirect::to(&format!("/rooms/{id}")).into_response())
}

#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    csrf: String,
    /// The room's id, typed again: deleting is not undone.
    #[serde(default)]
    confirm: String,
}

/// Deletes the room: its whitelist, owners, invites and settings; everyone in it is
/// sent out; its audit log is kept.
pub async fn delete_room(
    State(state): State<AppState>,
    Host(session): Host,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    Form(form): Form<DeleteForm>,
) -> Result<Response, Error> {
    let (id, record) = owner_form(&state, &session, &room, &form.csrf).await?;
    if form.confirm.trim() != id.as_str() {
        let e = format!("To delete this room, type its id ({id}) in the box.");
        return render_room_at("delete", &state, &session, &id, record, None, vec![e]).await;
    }
    let remote = crate::server::proxy::remote_text(remote);
    let actor = Actor::owner(&session.identity, "host page", Some(&remote));
    state.gateway.whitelist().delete_room(&id, actor).await.map_err(refused_change)?;
    Ok(Redirect::to(&format!("/rooms?deleted={id}")).into_response())
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
    let remote = crate::server::proxy::remote_text(remote);
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
    me: String,
    csrf: String,
    /// The event shown ("": all).
    event: String,
    events_known: &'static [&'static str],
    events: Vec<AuditRecord>,
    older: Option<i64>,
}

/// The events the audit log records, for its filter.
const AUDIT_EVENTS: &[&str] = &[
    "admitted",
    "refused",
    "left",
    "reverified",
    "reverify-failed",
    "peer-reported",
    "kicked",
    "ticket-issued",
    "whitelist-add",
    "whitelist-import",
    "whitelist-remove",
    "owner-add",
    "owner-remove",
    "settings",
    "invite-created",
    "room-created",
    "room-deleted",
];

#[derive(Deserialize)]
pub struct Page {
    before: Option<i64>,
    #[serde(default)]
    event: String,
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
    // Only the events there are: anything else is no filter.
    let event = AUDIT_EVENTS.iter().find(|e| **e == page.event).copied();
    let events = state
        .gateway
        .store
        .audit_of(&id, event, AUDIT_PAGE, page.before)
        .await
        .map_err(|e| Error::internal("reading the audit log", e))?;
    let older = (events.len() as i64 == AUDIT_PAGE).then(|| events.last().map(|e| e.id)).flatten();
    Ok(render(&AuditPage {
        room: id.to_string(),
        me: session.identity.to_string(),
        csrf: session.csrf,
        event: event.unwrap_or_default().to_owned(),
        events_known: AUDIT_EVENTS,
        events,
        older,
    }))
}

#[derive(Template)]
#[template(path = "live.html")]
struct LivePage {
    room: String,
    me: String,
    csrf: String,
    peers: Vec<PeerInfo>,
}

pub async fn live_page(
    State(state): State<AppState>,
    Host(session): Host,
    Path(room): Path<String>,
) -> Result<Response, Error> {
    let (id, _) = owned_room(&state, &session, &room).await?;
    let peers = state.gateway.rooms.everyone(&id).await;
    Ok(render(&LivePage { room: id.to_string(), me: session.identity.to_string(), csrf: session.csrf, peers }))
}

#[derive(Deserialize)]
pub struct KickForm {
    #[serde(default)]
    csrf: String,
    peer: String,
    /// "room": the form is on the room page, which the answer goes back to.
    #[serde(default)]
    back: String,
}

/// Where a live-peer form goes back to: the room page's live section or the live page.
fn live_back(id: &RoomId, back: &str) -> Response {
    let to = if back == "room" { format!("/rooms/{id}#live") } else { format!("/rooms/{id}/live") };
    Redirect::to(&to).into_response()
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
    let remote = crate::server::proxy::remote_text(remote);
    let actor = Actor::owner(&session.identity, "host page", Some(&remote));
    match state.gateway.whitelist().kick(&id, actor, &peer).await {
        Ok(()) => Ok(live_back(&id, &form.back)),
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
    let rooms = &state.gateway.rooms;
    if rooms.locate(&id, &peer).await.is_none() || !rooms.request_reverify(&id, &peer, None) {
        return Err(Error::page(StatusCode::NOT_FOUND, "That participant has left the room."));
    }
    Ok(live_back(&id, &form.back))
}
