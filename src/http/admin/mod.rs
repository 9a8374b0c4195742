//! The admin web manager at `/admin`: a browser application for support admins, read-only for
//! auditors.
//!
//! It owns the sign-in that turns a session token into an HttpOnly cookie, the cookie and CSRF
//! check in front of the JSON API mounted a second time under `/admin/api`, and the pages'
//! assets, embedded in the binary. It adds no API of its own: the pages call the same handlers
//! as the apps (a browser cannot keep the app secret, so the cookie stands in for the
//! signature), and live updates come from the same Socket.IO server, reached at
//! `/admin/socket.io/` so that the cookie, whose path is `/admin`, goes along.

mod assets;
pub mod session;

use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::get;

pub use session::CSRF_HEADER;

use crate::app::App;

pub fn router(state: App) -> Router<App> {
    let api = Router::new()
        .nest("/admin", super::api_routes())
        .layer(from_fn_with_state(state, session::require_admin_cookie));
    Router::new()
        .route("/admin", get(assets::index))
        .route("/admin/", get(assets::index))
        .route("/admin/assets/{*name}", get(assets::asset))
        .route(
            "/admin/session",
            get(session::who_am_i)
                .post(session::sign_in)
                .delete(session::sign_out),
        )
        .merge(api)
        .layer(from_fn(assets::security_headers))
}
