//! The call page, `/r/{room}`: what a person opens to join a room. The page itself
//! is plain ES modules (`static/call.js`, `static/rtc.js`); this module only serves
//! them. Whoever has the link sees the page; only an admitted key gets into the call.

use super::pages::render;
use crate::ids::RoomId;
use crate::signal::Gateway;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

#[derive(Template)]
#[template(path = "call.html")]
struct CallPage<'a> {
    room: &'a str,
    methods: Vec<&'static str>,
}

#[derive(Template)]
#[template(path = "problem.html")]
struct Missing {
    message: &'static str,
}

pub async fn call_page(State(gw): State<Arc<Gateway>>, Path(room): Path<String>) -> Response {
    let missing = |status| {
        let mut page = render(&Missing { message: "There is no such room. Check the link you were sent." });
        *page.status_mut() = status;
        page
    };
    let Ok(room) = RoomId::parse(&room) else { return missing(StatusCode::NOT_FOUND) };
    match gw.store.room(&room).await {
        Ok(Some(_)) => {}
        Ok(None) => return missing(StatusCode::NOT_FOUND),
        Err(e) => {
            tracing::error!(error = %e, "room lookup failed");
            return missing(StatusCode::SERVICE_UNAVAILABLE);
        }
    }
    let methods = gw.verifiers.methods().into_iter().map(|m| m.as_str()).collect();
    render(&CallPage { room: room.as_str(), methods })
}

/// The page's modules, compiled into the binary so a deployment is one file.
pub async fn script(Path(name): Path<String>) -> Response {
    let body = match name.as_str() {
        "call.js" => include_str!("../../static/call.js"),
        "rtc.js" => include_str!("../../static/rtc.js"),
        "identity.js" => include_str!("../../static/identity.js"),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], body).into_response()
}
