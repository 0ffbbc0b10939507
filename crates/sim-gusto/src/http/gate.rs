//! In front of every `/v1` route: the API version, the bearer token, the rolling rate
//! window per grant and the configured faults, in that order.

use super::*;

/// What fault injection decided (shared with sim-visma).
use sim_kit::FaultAction;

/// Version check, bearer auth (with Doorkeeper's revoke-on-first-use), per-grant
/// rolling window, request recording and fault injection, in that order.
pub(super) async fn gate(AxState(sim): AxState<Shared>, mut req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_default();
    let path = req.uri().path().to_owned();
    let method = req.method().clone();

    // 1. X-Gusto-API-Version.
    let served = match crate::versions::check(&sim, req.headers()) {
        Ok(s) => s,
        Err(refused) => return refused,
    };

    // 2. Bearer token.
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .map(str::to_owned);
    let Some(token) = token else {
        return unauthorized("No access token was provided");
    };
    let ctx = {
        let mut st = sim.state();
        let now = st.now();
        let Some(t) = st.access_tokens.get(&token).cloned() else {
            return unauthorized("The access token is invalid");
        };
        let grant = st.grants.get(&t.grant_id).cloned();
        let Some(grant) = grant.filter(|g| !g.revoked) else {
            return unauthorized("The access token was revoked");
        };
        if t.revoked {
            return unauthorized("The access token was revoked");
        }
        if t.expires_at <= now {
            return unauthorized("The access token expired");
        }
        if !t.used {
            // First use of a refreshed token revokes the refresh token it came from,
            // and the access token issued with that refresh token.
            if let Some(prev) = &t.previous_refresh {
                if let Some(r) = st.refresh_tokens.get_mut(prev) {
                    r.revoked = true;
                    let old_access = r.access_token.clone();
                    if let Some(a) = st.access_tokens.get_mut(&old_access) {
                        a.revoked = true;
                    }
                }
            }
            if let Some(a) = st.access_tokens.get_mut(&token) {
                a.used = true;
            }
        }
        AuthCtx { grant: grant.id, company: grant.company_uuid }
    };

    // 3. Rolling window per grant; 4. record; 5. faults.
    let limit = sim.cfg.rate_limit;
    let window = sim.cfg.rate_window;
    let (remaining, reset_after, limited, fault, latency) = {
        let mut st = sim.state();
        let now = Instant::now();
        st.arrivals.entry(ctx.grant.clone()).or_default().push(now);
        *st.route_counts.entry((ctx.grant.clone(), route.clone())).or_default() += 1;
        let log = st.window.entry(ctx.grant.clone()).or_default();
        while log.front().is_some_and(|t| now.duration_since(*t) >= window) {
            log.pop_front();
        }
        let over = log.len() >= limit;
        let mut remaining = limit.saturating_sub(log.len());
        let mut reset_after = log.front().map_or(window, |t| window.saturating_sub(now.duration_since(*t)));
        let throttled = st.throttled.get(&ctx.grant).and_then(|until| until.checked_duration_since(now));
        let limited = over || throttled.is_some();
        if let Some(left) = throttled {
            // The window is exhausted by someone else: nothing remains until it closes.
            remaining = 0;
            reset_after = left;
            st.throttled_answers += 1;
        } else if over {
            *st.rate_limited.entry(ctx.grant.clone()).or_default() += 1;
        } else {
            st.window.entry(ctx.grant.clone()).or_default().push_back(now);
            remaining = remaining.saturating_sub(1);
        }
        let (fault, latency) =
            if limited { (FaultAction::Serve, 0) } else { pick_fault(&mut st, &path, &method) };
        (remaining, reset_after, limited, fault, latency)
    };

    let reset_at = chrono::Utc::now() + chrono::Duration::from_std(reset_after).unwrap_or_default();
    let mut rl_headers = HeaderMap::new();
    rl_headers.insert("X-RateLimit-Limit", HeaderValue::from(limit as u64));
    rl_headers.insert("X-RateLimit-Remaining", HeaderValue::from(remaining as u64));
    if let Ok(v) = HeaderValue::from_str(&reset_at.format("%Y-%m-%d %H:%M:%S %z").to_string()) {
        rl_headers.insert("X-RateLimit-Reset", v);
    }
    served.decorate(&mut rl_headers);

    let mut resp = if limited {
        let secs = reset_after.as_secs_f64().ceil().max(1.0) as u64;
        let mut r = Response::new(Body::from(
            json!({"errors":[{"error_key":"base","category":"rate_limit_exceeded","message":"Rate Limit Exceeded"}]})
                .to_string(),
        ));
        *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        // Gusto's reason phrase (§4), not the canonical "Too Many Requests".
        r.extensions_mut().insert(hyper::ext::ReasonPhrase::from_static(b"Rate Limit Exceeded"));
        r.headers_mut().insert("Content-Type", HeaderValue::from_static("application/json"));
        r.headers_mut().insert("Retry-After", HeaderValue::from(secs));
        r
    } else {
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        match fault {
            FaultAction::Error(status) => errors(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "base",
                "internal_error",
                "An unexpected error has occurred.",
            ),
            FaultAction::Malformed | FaultAction::Drop => fault
                .answer("application/json", "{\"uuid\": \"truncated")
                .expect("a drop and a malformed body have an answer"),
            FaultAction::Serve => {
                req.extensions_mut().insert(ctx);
                next.run(req).await
            }
        }
    };
    resp.headers_mut().extend(rl_headers);
    resp
}

pub(super) fn pick_fault(st: &mut State, path: &str, method: &Method) -> (FaultAction, u64) {
    let mut chosen = (FaultAction::Serve, 0);
    let mut retire = None;
    for i in 0..st.faults.len() {
        let rule: FaultRule = st.faults[i].clone();
        if !glob_match(&rule.path, path)
            || rule.method.as_deref().is_some_and(|m| !m.eq_ignore_ascii_case(method.as_str()))
        {
            continue;
        }
        let roll: f64 = st.rng.random();
        let fault = if roll < rule.drop_rate {
            FaultAction::Drop
        } else if roll < rule.drop_rate + rule.malformed_rate {
            FaultAction::Malformed
        } else if roll < rule.drop_rate + rule.malformed_rate + rule.error_rate {
            FaultAction::Error(rule.error_status.unwrap_or(500))
        } else {
            FaultAction::Serve
        };
        chosen = (fault, rule.latency_ms);
        if let Some(times) = rule.times {
            if times <= 1 {
                retire = Some(i);
            } else {
                st.faults[i].times = Some(times - 1);
            }
        }
        break;
    }
    if let Some(i) = retire {
        st.faults.remove(i);
    }
    chosen
}
