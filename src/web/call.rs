//! The call page, `/r/{room}`: what a person opens to join a room. The page itself
//! is plain ES modules (`static/call.js`, `rtc.js`, `identity.js`, served by
//! [`super::pages::static_file`]). Whoever has the link sees the page; only an
//! admitted key gets into the call.

use super::host::PageError;
use super::pages::render;
use crate::ids::RoomId;
use crate::signal::Gateway;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::sync::Arc;

#[derive(Template)]
#[template(path = "call.html")]
struct CallPage<'a> {
    room: &'a str,
    methods: Vec<&'static str>,
}

const NO_SUCH_ROOM: PageError =
    PageError(StatusCode::NOT_FOUND, "There is no such room. Check the link you were sent.");

pub async fn call_page(State(gw): State<Arc<Gateway>>, Path(room): Path<String>) -> Result<Response, PageError> {
    let room = RoomId::parse(&room).map_err(|_| NO_SUCH_ROOM)?;
    match gw.store.room(&room).await {
        Ok(Some(_)) => {}
        Ok(None) => return Err(NO_SUCH_ROOM),
        Err(e) => return Err(super::host::internal("room lookup", e)),
    }
    let methods = gw.verifiers.methods().into_iter().map(|m| m.as_str()).collect();
    Ok(render(&CallPage { room: room.as_str(), methods }))
}
