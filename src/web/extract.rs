//! Extractors shared by the pages.

use super::Error;
use axum::http::StatusCode;

/// A form body. One that cannot be read (a field missing, a forged POST) gets the
/// product's refusal page, not a plain-text 422.
pub struct Form<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for Form<T>
where
    S: Send + Sync,
    axum::Form<T>: axum::extract::FromRequest<S>,
{
    type Rejection = Error;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Form::<T>::from_request(request, state).await {
            Ok(axum::Form(form)) => Ok(Form(form)),
            Err(_) => {
                Err(Error::page(StatusCode::BAD_REQUEST, "The form was incomplete; reload the page and try again."))
            }
        }
    }
}
