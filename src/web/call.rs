//! The call page, `/r/{room}`: what a person opens to join a room. The page itself
//! is plain ES modules (`static/call.js`, `rtc.js`, `identity.js`, served by
//! [`super::pages::static_file`]). Whoever has the link sees the page; only an
//! admitted key gets into the call.

use super::pages::render;
use super::{AppState, Error};
use crate::gateway::Gateway;
use crate::ids::RoomId;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

pub fn router() -> Router<AppState> {
    Router::new().route("/r/{room}", get(call_page))
}

#[derive(Template)]
#[template(path = "call.html")]
struct CallPage<'a> {
    room: &'a str,
    methods: Vec<&'static str>,
    viewer: super::auth::Viewer,
}

const NO_SUCH_ROOM: Error = Error::page(StatusCode::NOT_FOUND, "There is no such room. Check the link you were sent.");

pub async fn call_page(
    State(gw): State<Arc<Gateway>>,
    who: super::auth::SignedIn,
    Path(room): Path<String>,
) -> Result<Response, Error> {
    let room = RoomId::parse(&room).map_err(|_| NO_SUCH_ROOM)?;
    match gw.store.room(&room).await {
        Ok(Some(_)) => {}
        Ok(None) => return Err(NO_SUCH_ROOM),
        Err(e) => return Err(Error::internal("room lookup", e)),
    }
    let methods = gw.methods().into_iter().map(|m| m.as_str()).collect();
    Ok(render(&CallPage { room: room.as_str(), methods, viewer: who.into() }))
}
