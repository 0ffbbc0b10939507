//! `/oauth/token` (authorization code, refresh with rotation, system token) and
//! `/oauth/revoke`.

use super::*;

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct TokenRequest {
    client_id: String,
    client_secret: String,
    grant_type: String,
    code: Option<String>,
    redirect_uri: Option<String>,
    refresh_token: Option<String>,
    token: Option<String>,
}

pub(super) fn parse_token_request(headers: &HeaderMap, body: &Bytes) -> Option<TokenRequest> {
    let is_form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        serde_urlencoded_like(body)
    } else {
        serde_json::from_slice(body).ok()
    }
}

pub(super) fn serde_urlencoded_like(body: &Bytes) -> Option<TokenRequest> {
    let map: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    serde_json::from_value(serde_json::to_value(map).ok()?).ok()
}

pub(super) fn issue(
    st: &mut State,
    grant_id: &str,
    ttl: Duration,
    with_refresh: bool,
    previous_refresh: Option<String>,
) -> Value {
    let access = st.random_token();
    let refresh = with_refresh.then(|| st.random_token());
    let now = st.now();
    st.access_tokens.insert(
        access.clone(),
        AccessToken {
            grant_id: grant_id.to_owned(),
            expires_at: now + chrono::Duration::from_std(ttl).unwrap_or_default(),
            revoked: false,
            previous_refresh,
            used: false,
            refresh_token: refresh.clone(),
        },
    );
    if let Some(r) = &refresh {
        st.refresh_tokens.insert(
            r.clone(),
            RefreshToken { grant_id: grant_id.to_owned(), revoked: false, access_token: access.clone() },
        );
    }
    let mut body = json!({
        "access_token": access, "token_type": "Bearer", "expires_in": ttl.as_secs().max(1),
        "created_at": now.timestamp(), "refresh_token": refresh,
    });
    if with_refresh {
        body["scope"] = json!("companies:read departments:read employees:read employees:write employments:read jobs:read public");
    }
    body
}

pub(super) async fn token(
    AxState(sim): AxState<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let served = tri!(crate::versions::check(&sim, &headers));
    // "The client_secret cannot be passed via API request URLs … will result in a 400" (§3).
    if query.contains_key("client_secret") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The client_secret cannot be passed via API request URLs.",
        );
    }
    let Some(req) = parse_token_request(&headers, &body) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The request is missing a required parameter.",
        );
    };
    if req.client_id != sim.cfg.client_id || req.client_secret != sim.cfg.client_secret {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", INVALID_CLIENT);
    }
    let ttl = sim.cfg.access_token_ttl;
    let mut st = sim.state();
    let body = match req.grant_type.as_str() {
        "authorization_code" => {
            let Some(code) = req.code.and_then(|c| st.codes.remove(&c)) else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", INVALID_GRANT);
            };
            if code.expires_at <= st.now()
                || req.redirect_uri.as_deref().is_some_and(|r| r != code.redirect_uri)
            {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", INVALID_GRANT);
            }
            // Grant ids sort by creation so `grant_for_company` finds the latest.
            let grant_id = format!("grant-{:06}-{}", st.grants.len() + 1, &new_uuid(&mut st)[..8]);
            st.grants.insert(
                grant_id.clone(),
                Grant { id: grant_id.clone(), company_uuid: Some(code.company_uuid.clone()), revoked: false },
            );
            // The OAuth connection is established: `company.provisioned` (§1.4).
            st.emit(&code.company_uuid, "company.provisioned", "Company", &code.company_uuid);
            issue(&mut st, &grant_id, ttl, true, None)
        }
        "refresh_token" => {
            let Some(rt) = req.refresh_token else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "The request is missing a required parameter.",
                );
            };
            let Some(record) = st.refresh_tokens.get(&rt).cloned() else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", INVALID_GRANT);
            };
            let grant_ok = st.grants.get(&record.grant_id).is_some_and(|g| !g.revoked);
            if record.revoked || !grant_ok {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", INVALID_GRANT);
            }
            *st.refresh_counts.entry(record.grant_id.clone()).or_default() += 1;
            issue(&mut st, &record.grant_id, ttl, true, Some(rt))
        }
        "system_access" => {
            st.grants.entry("system".into()).or_insert(Grant {
                id: "system".into(),
                company_uuid: None,
                revoked: false,
            });
            issue(&mut st, "system", ttl, false, None)
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "The authorization grant type is not supported by the authorization server.",
            )
        }
    };
    let mut r = Json(body).into_response();
    served.decorate(r.headers_mut());
    r
}

pub(super) async fn revoke(AxState(sim): AxState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let served = tri!(crate::versions::check(&sim, &headers));
    let Some(req) = parse_token_request(&headers, &body) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The request is missing a required parameter.",
        );
    };
    if req.client_id != sim.cfg.client_id || req.client_secret != sim.cfg.client_secret {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", INVALID_CLIENT);
    }
    let token = req.token.unwrap_or_default();
    let mut st = sim.state();
    // Revoking either half revokes the pair (one Doorkeeper record).
    let pair = if let Some(a) = st.access_tokens.get(&token) {
        Some((token.clone(), a.refresh_token.clone()))
    } else {
        st.refresh_tokens.get(&token).map(|r| (r.access_token.clone(), Some(token.clone())))
    };
    if let Some((access, refresh)) = pair {
        if let Some(a) = st.access_tokens.get_mut(&access) {
            a.revoked = true;
        }
        if let Some(r) = refresh.and_then(|r| st.refresh_tokens.get_mut(&r)) {
            r.revoked = true;
        }
    }
    // RFC 7009: 200 even for unknown tokens.
    let mut r = Json(json!({})).into_response();
    served.decorate(r.headers_mut());
    r
}
