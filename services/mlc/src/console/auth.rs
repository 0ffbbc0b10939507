//! Who is there, and whether a form post came from one of our own pages.
//!
//! * On a loopback `console.listen` nobody logs in: whoever can reach the port is on this
//!   machine. On any other address a request needs the operator token (`Authorization:
//!   Bearer`, or a session cookie from the login page) or the forward-auth header of the
//!   authenticating proxy in front (its value names the operator); otherwise 401.
//! * CSRF, double-submit: every response sets a random `mlc_csrf` cookie (SameSite=Strict,
//!   so a foreign site's post arrives without it) when the browser has none, every form
//!   carries it in a hidden field, and [`ActionForm`] refuses a post whose field does not
//!   equal the cookie, or whose `Origin` is another site.

use super::{layout, Console};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SESSION_COOKIE: &str = "mlc_session";
const CSRF_COOKIE: &str = "mlc_csrf";
/// A login lasts a working day.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Who did it, as the audit log names them.
#[derive(Clone, Debug)]
pub struct Operator(pub String);

/// This browser's CSRF token; `from_cookie` when the browser sent it (a post without the
/// cookie can never be ours).
#[derive(Clone)]
pub struct Csrf {
    pub token: String,
    from_cookie: bool,
}

impl Csrf {
    /// The hidden field every form carries.
    pub fn field(&self) -> maud::Markup {
        html! { input type="hidden" name="csrf" value=(self.token); }
    }
}

/// Login sessions of the token login page, by random id.
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, Instant>>);

impl Sessions {
    fn start(&self) -> String {
        let id = random_token();
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        s.retain(|_, until| *until > now);
        s.insert(id.clone(), now + SESSION_TTL);
        id
    }

    fn valid(&self, id: &str) -> bool {
        let s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.get(id).is_some_and(|until| *until > Instant::now())
    }
}

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Equality that takes as long for a near miss as for a far one.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn identify(console: &Console, headers: &HeaderMap) -> Option<Operator> {
    let s = &console.settings;
    if let Some(h) = &s.forward_auth_header {
        if let Some(who) = headers.get(h).and_then(|v| v.to_str().ok()).filter(|v| !v.trim().is_empty()) {
            return Some(Operator(who.trim().to_string()));
        }
    }
    if s.open {
        return Some(Operator("local operator".into()));
    }
    let token = s.token.as_ref()?;
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.is_some_and(|b| same(b.trim(), token.expose())) {
        return Some(Operator("operator token".into()));
    }
    if cookie(headers, SESSION_COOKIE).is_some_and(|id| console.sessions.valid(id)) {
        return Some(Operator("operator token (login)".into()));
    }
    None
}

/// Runs before every handler: 401 for strangers, the CSRF cookie for everyone, and the
/// headers that keep the pages out of frames and caches.
pub async fn guard(State(console): State<Arc<Console>>, mut req: Request, next: Next) -> Response {
    let sent = cookie(req.headers(), CSRF_COOKIE).filter(|t| t.len() == 64).map(str::to_string);
    let csrf = Csrf { token: sent.clone().unwrap_or_else(random_token), from_cookie: sent.is_some() };
    let who = identify(&console, req.headers());
    let public = matches!(req.uri().path(), "/login" | "/console.css" | "/healthz");
    let mut resp = match who {
        None if !public => {
            let mut r = (StatusCode::UNAUTHORIZED, login_markup(&csrf.token, None)).into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"mlc console\""));
            r
        }
        who => {
            req.extensions_mut().insert(csrf.clone());
            req.extensions_mut().insert(who.unwrap_or(Operator("nobody".into())));
            next.run(req).await
        }
    };
    let h = resp.headers_mut();
    if !csrf.from_cookie {
        if let Ok(v) =
            HeaderValue::from_str(&format!("{CSRF_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict", csrf.token))
        {
            h.append(header::SET_COOKIE, v);
        }
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// A form post that came from one of our pages (CSRF verified), with who sent it.
pub struct ActionForm {
    pub who: Operator,
    pairs: Vec<(String, String)>,
}

impl ActionForm {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    /// Every field, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.pairs.iter().cloned()
    }

    /// Every value of a repeated field (checkboxes).
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

fn refused(why: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        layout::bare(
            "Refused",
            html! {
                p.error { "This form was refused: " (why) "." }
                p { "Nothing was changed. Reload the page and send the form again." }
            },
        ),
    )
        .into_response()
}

impl<S: Send + Sync> FromRequest<S> for ActionForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let csrf = req.extensions().get::<Csrf>().cloned();
        let who = req.extensions().get::<Operator>().cloned().unwrap_or(Operator("nobody".into()));
        // A browser names the page a post comes from; it must be this console.
        let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).map(str::to_string);
        if let Some(origin) = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
            let origin_host = origin.split_once("://").map(|(_, h)| h);
            if origin_host.is_none() || origin_host != host.as_deref() {
                return Err(refused("it was sent from another site"));
            }
        }
        let body = Bytes::from_request(req, state).await.map_err(IntoResponse::into_response)?;
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
        let sent = pairs.iter().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_str());
        match (csrf, sent) {
            (Some(c), Some(s)) if c.from_cookie && same(&c.token, s) => Ok(ActionForm { who, pairs }),
            _ => Err(refused("its CSRF token is missing or does not match this browser's")),
        }
    }
}

fn login_markup(csrf: &str, error: Option<&str>) -> maud::Markup {
    layout::bare(
        "Log in",
        html! {
            p { "This console is reachable from other machines: give the operator token (" code { "console.token" } ")." }
            @if let Some(e) = error { p.error { (e) } }
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                label { "Operator token " input type="password" name="token" autocomplete="current-password" autofocus; }
                " "
                button type="submit" { "Log in" }
            }
        },
    )
}

pub async fn login_page(axum::Extension(csrf): axum::Extension<Csrf>) -> Response {
    login_markup(&csrf.token, None).into_response()
}

pub async fn login(State(console): State<Arc<Console>>, form: ActionForm) -> Response {
    let Some(token) = &console.settings.token else {
        return Redirect::to("/").into_response();
    };
    let csrf = form.get("csrf").unwrap_or_default().to_string();
    if !form.get("token").is_some_and(|t| same(t.trim(), token.expose())) {
        return (StatusCode::UNAUTHORIZED, login_markup(&csrf, Some("That is not the operator token.")))
            .into_response();
    }
    let id = console.sessions.start();
    let mut r = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict"))
    {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}
