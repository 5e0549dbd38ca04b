//! The one error type of every handler: a status and a sentence for the person,
//! as the problem page (pages and forms) or as `{"error": …}` (the JSON endpoints
//! the pages' scripts call). Internal causes are logged, never shown.

use super::pages::render;
use crate::admission::{Refused, Tell};
use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::borrow::Cow;

#[derive(Debug)]
pub struct Error {
    status: StatusCode,
    message: Cow<'static, str>,
    json: bool,
}

#[derive(Template)]
#[template(path = "problem.html")]
struct ProblemPage<'a> {
    message: &'a str,
}

impl Error {
    /// A page's answer when it cannot show what was asked.
    pub const fn page(status: StatusCode, message: &'static str) -> Self {
        Error { status, message: Cow::Borrowed(message), json: false }
    }

    /// A JSON endpoint's answer.
    pub fn json(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        Error { status, message: message.into(), json: true }
    }

    /// The server failed at `what`: the cause goes to the log, the person is told
    /// to try again.
    pub fn internal(what: &str, cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "{what} failed");
        Error::page(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong on the server; try again.")
    }

    /// The same answer, as JSON.
    pub fn as_json(self) -> Self {
        Error { json: true, ..self }
    }
}

/// A refused proof over HTTP says exactly what the socket would let the client
/// know: its form, a challenge to start again, or only "not accepted".
impl From<Refused> for Error {
    fn from(refused: Refused) -> Self {
        match refused.tell {
            Tell::NotAdmitted => Error::json(StatusCode::FORBIDDEN, "the proof was not accepted"),
            Tell::StartAgain => {
                Error::json(StatusCode::FORBIDDEN, "this challenge is unknown, used or expired; start again")
            }
            Tell::BadProof(message) | Tell::Unsupported(message) => Error::json(StatusCode::BAD_REQUEST, message),
            Tell::PrivateKey => Error::json(StatusCode::BAD_REQUEST, "send only the public key"),
            Tell::Restricted(message) => Error::json(StatusCode::FORBIDDEN, message),
            Tell::Internal(message) => Error::json(StatusCode::INTERNAL_SERVER_ERROR, message),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if self.json {
            return (self.status, Json(serde_json::json!({ "error": self.message }))).into_response();
        }
        let mut page = render(&ProblemPage { message: &self.message });
        *page.status_mut() = self.status;
        page
    }
}
