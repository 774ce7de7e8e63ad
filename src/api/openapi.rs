//! The OpenAPI 3.1 description of `/patgate/api/v1`, generated from the handlers' own
//! types and annotations so that it cannot drift from them.

use axum::Json;
use utoipa::OpenApi;

use super::{audit, leaked, me, notifications, session, settings, smtp_servers, tokens, users};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "patgate API",
        description = "Personal access tokens for Digital.ai Deploy: self-service and administration. \
            Authenticate with HTTP Basic (Deploy username and password), a session cookie \
            (state changes need X-CSRF-Token), or your own personal access token (list and delete only)."
    ),
    paths(
        me::get_me, me::put_me,
        session::options, session::sign_in, session::sign_out,
        tokens::list, tokens::create, tokens::rotate, tokens::remove,
        leaked::report,
        settings::get_settings, settings::put_settings,
        users::list, users::one, users::tokens, users::revoke_all, users::disable, users::enable,
        users::link, users::unlink,
        audit::list,
        smtp_servers::list, smtp_servers::create, smtp_servers::one, smtp_servers::update,
        smtp_servers::remove, smtp_servers::send_test,
        notifications::status,
    ),
    tags(
        (name = "me", description = "the signed-in user"),
        (name = "session", description = "browser sign-in"),
        (name = "tokens", description = "your personal access tokens"),
        (name = "admin", description = "administrators only"),
        (name = "leaked", description = "reports of leaked tokens, signed with leaked.secret"),
    )
)]
pub struct ApiDoc;

/// `GET /patgate/api/v1/openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
