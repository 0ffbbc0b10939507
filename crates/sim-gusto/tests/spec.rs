//! Walks every simulator route and validates the answers against the response
//! schemas of the vendored Gusto specs (each route against the newest spec that covers
//! it: `schemas/upstream/README.md`); also checks the behaviours the notes document
//! (versions, pagination headers, filters, token rotation, 409 / 429 bodies).

use std::time::Duration;

use serde_json::{json, Value};
use sim_gusto::{SimConfig, SimHandle};

/// Newest first: a route is validated against the first spec that has its response.
const SPECS: &[&str] = &[
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/upstream/gusto-embedded-2026-02-01.openapi.yaml"),
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../schemas/upstream/gusto-app-integrations-2025-06-15.openapi.yaml"
    ),
];
const REDIRECT: &str = "http://localhost/cb";

fn yaml_to_json(v: serde_yaml::Value) -> Value {
    match v {
        serde_yaml::Value::Null => Value::Null,
        serde_yaml::Value::Bool(b) => Value::Bool(b),
        serde_yaml::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!(i)
            } else if let Some(u) = n.as_u64() {
                json!(u)
            } else {
                json!(n.as_f64())
            }
        }
        serde_yaml::Value::String(s) => Value::String(s),
        serde_yaml::Value::Sequence(s) => Value::Array(s.into_iter().map(yaml_to_json).collect()),
        serde_yaml::Value::Mapping(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        serde_yaml::Value::String(s) => s,
                        other => serde_yaml::to_string(&other).unwrap_or_default().trim().to_owned(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        serde_yaml::Value::Tagged(t) => yaml_to_json(t.value),
    }
}

struct OneSpec {
    doc: Value,
}

impl OneSpec {
    fn resolve<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => self.doc.pointer(r.trim_start_matches('#')).expect("ref target"),
            None => v,
        }
    }

    fn response_schema(&self, path: &str, method: &str, status: u16) -> Option<Value> {
        let op = &self.doc["paths"][path][method];
        if !op.is_object() {
            return None;
        }
        let resp = self.resolve(&op["responses"][status.to_string()]);
        let schema = resp["content"]["application/json"]["schema"].clone();
        schema.is_object().then_some(schema)
    }
}

/// The vendored specs; a schema is always resolved within the document it came from.
struct Spec {
    docs: Vec<OneSpec>,
}

/// A schema and the index of the spec it belongs to.
type Schema = (usize, Value);

impl Spec {
    fn load() -> Self {
        let docs = SPECS
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path).expect("vendored spec");
                OneSpec { doc: yaml_to_json(serde_yaml::from_str(&text).expect("yaml")) }
            })
            .collect();
        Self { docs }
    }

    /// The JSON schema of `paths[path][method].responses[status]` in the newest spec
    /// that declares it.
    fn response_schema(&self, path: &str, method: &str, status: u16) -> Schema {
        self.docs
            .iter()
            .enumerate()
            .find_map(|(i, d)| d.response_schema(path, method, status).map(|s| (i, s)))
            .unwrap_or_else(|| panic!("no vendored spec has a JSON schema for {method} {path} {status}"))
    }

    /// Which spec file validates `method path status`.
    fn source(&self, path: &str, method: &str, status: u16) -> &'static str {
        SPECS[self.response_schema(path, method, status).0].rsplit('/').next().unwrap_or("")
    }

    /// A component schema of the newest spec that has it.
    fn named(&self, name: &str) -> Schema {
        let i = self
            .docs
            .iter()
            .position(|d| d.doc["components"]["schemas"][name].is_object())
            .unwrap_or_else(|| panic!("no vendored spec has schema {name}"));
        (i, json!({"$ref": format!("#/components/schemas/{name}")}))
    }

    fn validator(&self, (i, schema): Schema) -> jsonschema::Validator {
        let root = json!({"allOf": [schema], "components": self.docs[i].doc["components"].clone()});
        jsonschema::draft202012::new(&root).expect("schema compiles")
    }

    fn is_valid(&self, schema: Schema, instance: &Value) -> bool {
        self.validator(schema).is_valid(instance)
    }

    fn check(&self, what: &str, schema: Schema, instance: &Value) {
        let validator = self.validator(schema);
        let errors: Vec<String> =
            validator.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path)).collect();
        assert!(errors.is_empty(), "{what}: {errors:#?}\n{instance:#}");
    }
}

struct Ctx {
    sim: SimHandle,
    http: reqwest::Client,
    company: sim_gusto::CompanyInfo,
    token: String,
    refresh: String,
    system: String,
}

async fn token_call(http: &reqwest::Client, base: &str, body: Value) -> (u16, Value) {
    let r = http.post(format!("{base}/oauth/token")).json(&body).send().await.expect("token call");
    let status = r.status().as_u16();
    (status, r.json().await.expect("json"))
}

async fn ctx(cfg: SimConfig) -> Ctx {
    let sim = sim_gusto::start(cfg).await.expect("sim");
    let company = sim.seed_company(30);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("http");
    let base = sim.base_url();
    // The authorize redirect carries the code and our state.
    let params = [
        ("client_id", "sim-client-id"),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("state", "xyz"),
        ("company_uuid", &company.company_uuid),
    ];
    // The consent page, then the admin's "Allow".
    let page = http.get(format!("{base}/oauth/authorize")).query(&params).send().await.expect("page");
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.expect("html").contains("value=\"allow\""));
    let mut form = params.to_vec();
    form.push(("decision", "allow"));
    let r = http.post(format!("{base}/oauth/authorize")).form(&form).send().await.expect("authorize");
    assert_eq!(r.status().as_u16(), 302);
    let location = url::Url::parse(r.headers()["location"].to_str().expect("loc")).expect("url");
    let q: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "xyz");
    let (status, tok) = token_call(
        &http,
        &base,
        json!({"client_id":"sim-client-id","client_secret":"sim-client-secret","grant_type":"authorization_code","code":q["code"],"redirect_uri":REDIRECT}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(tok["expires_in"], 7200);
    let (_, sys) = token_call(
        &http,
        &base,
        json!({"client_id":"sim-client-id","client_secret":"sim-client-secret","grant_type":"system_access"}),
    )
    .await;
    Ctx {
        token: tok["access_token"].as_str().expect("at").to_owned(),
        refresh: tok["refresh_token"].as_str().expect("rt").to_owned(),
        system: sys["access_token"].as_str().expect("sys").to_owned(),
        sim,
        http,
        company,
    }
}

impl Ctx {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.sim.base_url()))
            .bearer_auth(token)
            .header("X-Gusto-API-Version", "2026-06-15");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("send");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// (method, url, spec path template, token kind, body, expected status)
type Case = (reqwest::Method, String, &'static str, &'static str, Option<Value>, u16);

#[tokio::test]
async fn every_route_answers_per_the_spec() {
    use reqwest::Method;
    let spec = Spec::load();
    // The validator really validates (required fields, types, enums through $ref).
    let employee = spec.response_schema("/v1/employees/{employee_id}", "get", 200);
    assert!(!spec.is_valid(employee.clone(), &json!({"uuid": "u"})));
    assert!(!spec.is_valid(
        employee.clone(),
        &json!({"uuid": "u", "first_name": "a", "last_name": "b", "terminated": "no"})
    ));
    assert!(spec.is_valid(employee, &json!({"uuid": "u", "first_name": "a", "last_name": "b"})));
    let c = ctx(SimConfig::default()).await;
    let co = c.company.company_uuid.clone();
    let emp = c.company.employee_uuids[0].clone();
    let loc = c.company.location_uuids[0].clone();
    let dept = c.company.department_uuids[0].clone();
    c.sim.terminate(&c.company.employee_uuids[1], None).expect("terminate");
    c.sim.transfer(&emp, &c.company.location_uuids[1], None).expect("transfer");

    let cases: Vec<Case> = vec![
        (Method::GET, "/v1/token_info".into(), "/v1/token_info", "company", None, 200),
        (Method::GET, "/v1/token_info".into(), "/v1/token_info", "system", None, 200),
        (Method::GET, format!("/v1/employees/{emp}"), "/v1/employees/{employee_id}", "company", None, 200),
        (
            Method::GET,
            format!("/v1/employees/{}", c.company.employee_uuids[1]),
            "/v1/employees/{employee_id}",
            "company",
            None,
            200,
        ),
        (Method::GET, "/v1/employees/nope".into(), "/v1/employees/{employee_id}", "company", None, 404),
        (
            Method::GET,
            format!("/v1/companies/{co}/employees?page=1&per=50"),
            "/v1/companies/{company_id}/employees",
            "company",
            None,
            200,
        ),
        (
            Method::GET,
            format!("/v1/companies/{co}/locations"),
            "/v1/companies/{company_id}/locations",
            "company",
            None,
            200,
        ),
        (Method::GET, format!("/v1/locations/{loc}"), "/v1/locations/{location_id}", "company", None, 200),
        (
            Method::GET,
            format!("/v1/companies/{co}/departments"),
            "/v1/companies/{company_uuid}/departments",
            "company",
            None,
            200,
        ),
        (
            Method::GET,
            format!("/v1/departments/{dept}"),
            "/v1/departments/{department_uuid}",
            "company",
            None,
            200,
        ),
        (
            Method::GET,
            format!("/v1/employees/{emp}/work_addresses"),
            "/v1/employees/{employee_id}/work_addresses",
            "company",
            None,
            200,
        ),
        (
            Method::GET,
            format!("/v1/employees/{}/terminations", c.company.employee_uuids[1]),
            "/v1/employees/{employee_id}/terminations",
            "company",
            None,
            200,
        ),
        (Method::GET, "/v1/events?limit=100".into(), "/v1/events", "system", None, 200),
        (
            Method::PUT,
            format!("/v1/employees/{emp}"),
            "/v1/employees/{employee_id}",
            "company",
            Some(json!({"version": "stale", "first_name": "X"})),
            409,
        ),
        (
            Method::PUT,
            format!("/v1/locations/{loc}"),
            "/v1/locations/{location_id}",
            "company",
            Some(json!({"version": "stale", "city": "X"})),
            409,
        ),
        (
            Method::POST,
            "/v1/webhook_subscriptions".into(),
            "/v1/webhook_subscriptions",
            "system",
            Some(json!({"url": "http://127.0.0.1:9/hook", "subscription_types": ["Employee"]})),
            201,
        ),
        (Method::GET, "/v1/webhook_subscriptions".into(), "/v1/webhook_subscriptions", "system", None, 200),
    ];
    for (method, url, template, who, body, status) in cases {
        let token = if who == "system" { &c.system } else { &c.token };
        let (got, _, value) = c.call(method.clone(), &url, token, body).await;
        assert_eq!(got, status, "{method} {url}: {value}");
        let m = method.as_str().to_lowercase();
        spec.check(&format!("{method} {url}"), spec.response_schema(template, &m, status), &value);
    }

    // Each route is validated against the newest vendored spec that covers it.
    assert_eq!(
        spec.source("/v1/employees/{employee_id}", "get", 200),
        "gusto-embedded-2026-02-01.openapi.yaml"
    );
    assert_eq!(spec.source("/v1/events", "get", 200), "gusto-embedded-2026-02-01.openapi.yaml");

    // Writes with the current version, and the subscription routes.
    let (_, _, e) = c.call(Method::GET, &format!("/v1/employees/{emp}"), &c.token, None).await;
    let (s, _, e2) = c
        .call(
            Method::PUT,
            &format!("/v1/employees/{emp}"),
            &c.token,
            Some(json!({"version": e["version"], "first_name": "Kari"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_ne!(e["version"], e2["version"], "updatable attribute changed -> new version");
    spec.check("PUT employee", spec.response_schema("/v1/employees/{employee_id}", "put", 200), &e2);
    let (_, _, l) = c.call(Method::GET, &format!("/v1/locations/{loc}"), &c.token, None).await;
    let (s, _, l2) = c
        .call(
            Method::PUT,
            &format!("/v1/locations/{loc}"),
            &c.token,
            Some(json!({"version": l["version"], "phone_number": "4799999999"})),
        )
        .await;
    assert_eq!(s, 200);
    spec.check("PUT location", spec.response_schema("/v1/locations/{location_id}", "put", 200), &l2);

    let (_, _, subs) = c.call(Method::GET, "/v1/webhook_subscriptions", &c.system, None).await;
    let sub = subs[0]["uuid"].as_str().expect("sub").to_owned();
    let t = "/v1/webhook_subscriptions/{webhook_subscription_uuid}";
    for (method, path, body, status, template) in [
        (Method::GET, format!("/v1/webhook_subscriptions/{sub}"), None, 200, t.to_owned()),
        (
            Method::PUT,
            format!("/v1/webhook_subscriptions/{sub}"),
            Some(json!({"subscription_types": ["Employee", "Location"]})),
            200,
            t.to_owned(),
        ),
        (
            Method::PUT,
            format!("/v1/webhook_subscriptions/{sub}/verify"),
            Some(json!({"verification_token": "wrong"})),
            422,
            format!("{t}/verify"),
        ),
        (
            Method::GET,
            format!("/v1/webhook_subscriptions/{sub}/request_verification_token"),
            None,
            200,
            format!("{t}/request_verification_token"),
        ),
    ] {
        let (got, _, value) = c.call(method.clone(), &path, &c.system, body).await;
        assert_eq!(got, status, "{method} {path}: {value}");
        if status == 422 {
            assert_eq!(
                value,
                json!({"errors":[{"error_key":"base","category":"invalid_attribute_value","message":"Invalid verification token"}]})
            );
        }
        spec.check(
            &format!("{method} {path}"),
            spec.response_schema(&template, &method.as_str().to_lowercase(), status),
            &value,
        );
    }
    let (got, _, _) =
        c.call(Method::DELETE, &format!("/v1/webhook_subscriptions/{sub}"), &c.system, None).await;
    assert_eq!(got, 204);

    // Token answers. The spec's `Authentication` is a oneOf whose branches overlap
    // (a refresh answer satisfies both), so each answer is checked against its branch.
    let base = c.sim.base_url();
    let (s, refreshed) = token_call(
        &c.http,
        &base,
        json!({"client_id":"sim-client-id","client_secret":"sim-client-secret","grant_type":"refresh_token","refresh_token":c.refresh}),
    )
    .await;
    assert_eq!(s, 200);
    spec.check("refresh", spec.named("Refresh-Token-Authentication"), &refreshed);
    let (_, sys) = token_call(
        &c.http,
        &base,
        json!({"client_id":"sim-client-id","client_secret":"sim-client-secret","grant_type":"system_access"}),
    )
    .await;
    spec.check("system token", spec.response_schema("/oauth/token", "post", 200), &sys);
}

#[tokio::test]
async fn refresh_rotation_follows_doorkeeper() {
    let c = ctx(SimConfig::default()).await;
    let base = c.sim.base_url();
    let refresh = |rt: String| {
        let (http, base) = (c.http.clone(), base.clone());
        async move {
            token_call(&http, &base, json!({"client_id":"sim-client-id","client_secret":"sim-client-secret","grant_type":"refresh_token","refresh_token":rt})).await
        }
    };
    let (s1, t1) = refresh(c.refresh.clone()).await;
    assert_eq!(s1, 200);
    assert_ne!(t1["refresh_token"], json!(c.refresh), "a NEW refresh token");
    // The old refresh token still works until the new access token is used...
    let (s2, t2) = refresh(c.refresh.clone()).await;
    assert_eq!(s2, 200);
    let (s, _, _) =
        c.call(reqwest::Method::GET, "/v1/token_info", t2["access_token"].as_str().expect("at"), None).await;
    assert_eq!(s, 200);
    // ...and dies on that first use, with Doorkeeper's error body.
    let (s3, err) = refresh(c.refresh.clone()).await;
    assert_eq!(s3, 400);
    assert_eq!(err["error"], "invalid_grant");
    assert!(err["error_description"].is_string());
    // The original access token went with it.
    let (s, _, body) = c.call(reqwest::Method::GET, "/v1/token_info", &c.token, None).await;
    assert_eq!(s, 401);
    assert_eq!(body["errors"][0]["category"], "invalid_token");
    // Expiry -> 401.
    c.sim.expire_tokens(None);
    let (s, _, _) =
        c.call(reqwest::Method::GET, "/v1/token_info", t2["access_token"].as_str().expect("at"), None).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn versions_pagination_filters_and_rate_limit_headers() {
    let c = ctx(SimConfig { rate_limit: 6, rate_window: Duration::from_secs(5), ..Default::default() }).await;
    let base = c.sim.base_url();
    let co = &c.company.company_uuid;
    let get = |path: String, version: Option<&'static str>| {
        let mut r = c.http.get(format!("{base}{path}")).bearer_auth(&c.token);
        if let Some(v) = version {
            r = r.header("X-Gusto-API-Version", v);
        }
        r.send()
    };
    let r = get("/v1/token_info".into(), Some("2023")).await.expect("send");
    assert_eq!(r.status().as_u16(), 406);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["errors"][0]["category"], "invalid_api_version");
    // Retired (2025-06-15 after 2026-11-15), older, or in the future: 406, Gusto's shape.
    for v in ["2024-04-01", "2025-06-15", "2099-01-01"] {
        let r = get("/v1/token_info".into(), Some(v)).await.expect("send");
        assert_eq!(r.status().as_u16(), 406, "{v}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["errors"][0]["error_key"], "request", "{v}");
        assert_eq!(body["errors"][0]["category"], "invalid_api_version", "{v}");
        let msg = body["errors"][0]["message"].as_str().expect("message");
        assert!(msg.contains(v) && msg.contains("2025-11-15"), "{msg}");
    }
    // Deprecated but supported: answered, echoed, with Deprecation and Sunset [inferred names].
    let r = get("/v1/token_info".into(), Some("2026-02-01")).await.expect("send");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["x-gusto-api-version"], "2026-02-01");
    assert!(r.headers()["deprecation"].to_str().expect("dep").starts_with('@'));
    assert_eq!(r.headers()["sunset"], "Tue, 15 Jun 2027 00:00:00 GMT");
    let r = get("/v1/token_info".into(), Some("2026-06-15")).await.expect("send");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["x-gusto-api-version"], "2026-06-15");
    assert!(r.headers().get("deprecation").is_none(), "the current version is not deprecated");
    // The OAuth token endpoint checks it too.
    let r = c
        .http
        .post(format!("{base}/oauth/token"))
        .header("X-Gusto-API-Version", "2025-06-15")
        .json(&json!({"client_id":"sim-client-id","client_secret":"sim-client-secret","grant_type":"system_access"}))
        .send()
        .await
        .expect("token");
    assert_eq!(r.status().as_u16(), 406);

    c.sim.terminate(&c.company.employee_uuids[3], None).expect("terminate");
    let r =
        get(format!("/v1/companies/{co}/employees?page=2&per=7"), Some("2026-06-15")).await.expect("send");
    assert_eq!(r.status().as_u16(), 200);
    let h = r.headers().clone();
    assert_eq!(h["x-gusto-api-version"], "2026-06-15");
    assert_eq!(h["x-page"], "2");
    assert_eq!(h["x-per-page"], "7");
    assert_eq!(h["x-total-count"], "30");
    assert_eq!(h["x-total-pages"], "5");
    assert_eq!(h["x-ratelimit-limit"], "6");
    let reset = h["x-ratelimit-reset"].to_str().expect("reset");
    assert!(chrono::DateTime::parse_from_str(reset, "%Y-%m-%d %H:%M:%S %z").is_ok(), "{reset}");
    let page: Vec<Value> = r.json().await.expect("json");
    assert_eq!(page.len(), 7);

    // `terminated` is a filter.
    let only: Vec<Value> = get(format!("/v1/companies/{co}/employees?terminated=true"), None)
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["terminated"], true);
    let active: Vec<Value> = get(format!("/v1/companies/{co}/employees?terminated=false&per=100"), None)
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(active.len(), 29);

    // The 406s were refused before counting; the two version probes counted: this is
    // the 6th request of the window.
    let r = get("/v1/token_info".into(), None).await.expect("send");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    let r = get("/v1/token_info".into(), None).await.expect("send");
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers()["retry-after"].to_str().expect("ra").parse::<u64>().expect("secs") >= 1);
    // Gusto's reason phrase (§4), carried by hyper as a non-canonical reason.
    let reason = r.extensions().get::<hyper::ext::ReasonPhrase>().map(|p| p.as_bytes().to_vec());
    assert_eq!(reason.as_deref(), Some(&b"Rate Limit Exceeded"[..]));
    let grant = c.sim.grant_of_token(&c.token).expect("grant");
    assert_eq!(c.sim.rate_limited_count(&grant), 1);
    assert_eq!(c.sim.max_requests_in_any_window(&grant), 7, "arrivals include the refused one");
}

#[tokio::test]
async fn admin_operations_emit_the_documented_events() {
    let c = ctx(SimConfig::default()).await;
    let s = &c.sim;
    let co = c.company.company_uuid.clone();
    let e = c.company.employee_uuids[0].clone();
    let before = s.events().len();
    let hired =
        s.hire(&co, sim_gusto::HireRequest { onboard: Some(false), ..Default::default() }).expect("hire");
    s.onboard(&hired).expect("onboard");
    s.change_title(&e, "Partner").expect("title");
    s.change_department(&e, &c.company.department_uuids[2]).expect("dept");
    s.transfer(&e, &c.company.location_uuids[4], None).expect("transfer");
    let future = s.state().pacific_today() + chrono::Duration::days(3);
    s.terminate(&e, Some(future)).expect("terminate");
    s.edit_location(
        &c.company.location_uuids[0],
        sim_gusto::LocationPatch { city: Some("Bergen".into()), ..Default::default() },
    )
    .expect("location");
    let types: Vec<String> = s.events()[before..].iter().map(|e| e.event_type.clone()).collect();
    assert_eq!(
        types,
        [
            "employee.created",
            "employee.onboarded",
            "employee_job_compensation.updated",
            "employee.updated",
            "employee.updated",
            "employee.work_address.created",
            "employee.work_address.updated",
            "employee_job_compensation.updated",
            "employee.updated",
            "employee.terminated",
            "location.updated",
        ]
    );
    assert!(!s.state().employees[&e].terminated, "future-dated termination not yet effective");
    // Effective at 12:00 AM Pacific the day after the last day: 4 days on is enough.
    s.advance_clock(Duration::from_secs(4 * 24 * 3600 + 3600));
    assert!(s.state().employees[&e].terminated);
    s.rehire(&e, None).expect("rehire");
    let tail: Vec<String> = s.events().iter().rev().take(3).map(|e| e.event_type.clone()).collect();
    assert_eq!(tail, ["employee.rehire_effective", "employee.rehired", "employee.terminated_effective"]);
    assert!(!s.state().employees[&e].terminated);
    let state = s.state_json();
    assert_eq!(state["employees"].as_array().map(Vec::len), Some(31));

    // The admin HTTP API drives the same operations.
    let r = c
        .http
        .post(format!("{}/admin/employees/{e}/title", s.base_url()))
        .json(&json!({"title": "Director"}))
        .send()
        .await
        .expect("admin");
    assert_eq!(r.status().as_u16(), 200);
    // (The simulated clock moved 4 days: the access token expired; read the state.)
    let state = s.state_json();
    let emp = state["employees"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["uuid"] == json!(e)))
        .cloned()
        .expect("employee");
    assert_eq!(emp["jobs"][0]["title"], "Director");
    assert_eq!(emp["jobs"][0]["location_uuid"], json!(c.company.location_uuids[4]));
    let r = c.http.get(format!("{}/admin/state", s.base_url())).send().await.expect("state");
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn oauth_connect_and_terminations_follow_the_reference() {
    let c = ctx(SimConfig::default()).await;
    let s = &c.sim;
    let co = c.company.company_uuid.clone();
    // §1.4: the code exchange established the connection: `company.provisioned`.
    let provisioned: Vec<_> =
        s.events().into_iter().filter(|e| e.event_type == "company.provisioned").collect();
    assert_eq!(provisioned.len(), 1);
    assert_eq!(provisioned[0].resource_uuid, co);
    assert_eq!(provisioned[0].entity_type, "Company");

    // §3: a client secret in the token URL is a 400, whatever the body says.
    let r = c
        .http
        .post(format!("{}/oauth/token?client_secret=sim-client-secret", s.base_url()))
        .json(&json!({"client_id":"sim-client-id","client_secret":"sim-client-secret","grant_type":"system_access"}))
        .send()
        .await
        .expect("token");
    assert_eq!(r.status().as_u16(), 400);

    // §1.5/§2.5: a termination whose last day is today (Pacific) is not effective yet...
    let e = c.company.employee_uuids[0].clone();
    let today = s.state().pacific_today();
    s.terminate(&e, Some(today)).expect("terminate");
    assert!(!s.state().employees[&e].terminated, "still working on the last day");
    let types = |s: &SimHandle| s.events().iter().map(|e| e.event_type.clone()).collect::<Vec<_>>();
    assert!(types(s).contains(&"employee.terminated".to_string()));
    assert!(!types(s).iter().any(|t| t.ends_with("_effective")));
    // ...and is at 12:00 AM Pacific the next day.
    s.advance_clock(Duration::from_secs(24 * 3600));
    assert!(s.state().employees[&e].terminated);
    assert_eq!(types(s).last().map(String::as_str), Some("employee.terminated_effective"));
    // Without a date the last day was yesterday: effective at once.
    let e2 = c.company.employee_uuids[1].clone();
    s.terminate(&e2, None).expect("terminate");
    assert!(s.state().employees[&e2].terminated);

    // The Embedded spelling on request.
    let emb = sim_gusto::start(SimConfig { embedded_event_spelling: true, ..Default::default() })
        .await
        .expect("sim");
    let info = emb.seed_company(2);
    emb.terminate(&info.employee_uuids[0], None).expect("terminate");
    assert_eq!(types(&emb).last().map(String::as_str), Some("employee.termination_effective"));
}

/// A throttled grant is refused "until the violating window closes" (§4): 429 with
/// `Retry-After` = the whole seconds left and nothing remaining, only for that grant, and
/// a client that waited what it was told is served. A raised minimum version is answered
/// 406 `invalid_api_version` until it is set back.
#[tokio::test]
async fn a_throttled_grant_and_a_raised_minimum_version_are_answered_as_gusto_does() {
    let c = ctx(SimConfig::default()).await;
    let grant = c.sim.grant_of_token(&c.token).expect("grant");
    c.sim.throttle_grant(&grant, Duration::from_millis(1_500));
    let (status, h, body) = c.call(reqwest::Method::GET, "/v1/token_info", &c.token, None).await;
    assert_eq!(status, 429);
    assert_eq!(h["retry-after"], "2", "1.5 s left, in whole seconds");
    assert_eq!(h["x-ratelimit-remaining"], "0");
    assert_eq!(body["errors"][0]["category"], "rate_limit_exceeded");
    // Another grant (the system token's) is served meanwhile.
    let (status, _, _) = c.call(reqwest::Method::GET, "/v1/webhook_subscriptions", &c.system, None).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let (status, _, _) = c.call(reqwest::Method::GET, "/v1/token_info", &c.token, None).await;
    assert_eq!(status, 200, "served once the window closed");
    assert_eq!(c.sim.state().throttled_answers, 1);
    assert_eq!(c.sim.rate_limited_count(&grant), 0, "not the simulator's own limit");

    c.sim.set_min_api_version(Some("2026-06-16"));
    let (status, _, body) = c.call(reqwest::Method::GET, "/v1/token_info", &c.token, None).await;
    assert_eq!(status, 406);
    assert_eq!(body["errors"][0]["category"], "invalid_api_version");
    assert!(body["errors"][0]["message"].as_str().expect("message").contains("2026-06-16"));
    c.sim.set_min_api_version(None);
    let (status, _, _) = c.call(reqwest::Method::GET, "/v1/token_info", &c.token, None).await;
    assert_eq!(status, 200);
}
