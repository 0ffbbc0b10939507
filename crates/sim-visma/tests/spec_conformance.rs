//! Walks every simulator route and validates answers against the vendored Visma spec.

use std::sync::OnceLock;

use serde_json::{json, Value};
use sim_visma::{
    demo_seed, start, SimConfig, SimHandle, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT,
};

const SPEC: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/upstream/visma-v1_20250424.swagger.json");

fn components() -> &'static Value {
    static C: OnceLock<Value> = OnceLock::new();
    C.get_or_init(|| {
        let text = std::fs::read_to_string(SPEC).expect("vendored spec present");
        let spec: Value = serde_json::from_str(&text).expect("spec is JSON");
        spec["components"].clone()
    })
}

/// Validates `instance` against `#/components/schemas/<name>`.
fn assert_schema(name: &str, instance: &Value) {
    let schema = json!({"$ref": format!("#/components/schemas/{name}"), "components": components()});
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> =
        validator.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{name} invalid: {errors:?}\n{instance:#}");
}

async fn token(sim: &SimHandle, scope: &str) -> String {
    let resp = reqwest::Client::new()
        .post(sim.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("tenant_id", DEFAULT_TENANT),
            ("scope", scope),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    body["access_token"].as_str().unwrap().to_string()
}

const ALL: &str =
    "vismanet_erp_service_api:read vismanet_erp_service_api:create vismanet_erp_service_api:update";

fn create_body(cd: &str) -> Value {
    json!({
        "employeeCd": {"value": cd},
        "department": {"value": "ADMIN"},
        "employeeClass": {"value": "EMPSTD"},
        "branch": {"value": "1"},
        "calendar": {"value": "MAIN"},
        "status": {"value": "Active"},
        "contact": {
            "firstName": {"value": "Ada"},
            "middleName": {"value": "B"},
            "lastName": {"value": "Lovelace"},
            "email": {"value": "ada@example.com"},
            "phone1": {"value": "+47 22 00 00 00"}
        },
        "address": {
            "addressLine1": {"value": "Karl Johans gate 1"},
            "postalCode": {"value": "0154"},
            "city": {"value": "Oslo"},
            "countryId": {"value": "NO"}
        }
    })
}

#[tokio::test]
async fn every_route_answers_per_spec() {
    let sim = start(SimConfig::default()).await.unwrap();
    let mut seed = demo_seed();
    seed.segments[0]
        .values
        .push(sim_visma::SeedSegmentValue { value: "OSL".into(), description: Some("Oslo".into()) });
    sim.seed(DEFAULT_TENANT, &seed).unwrap();
    let tok = token(&sim, ALL).await;
    let http = reqwest::Client::new();
    let base = sim.base_url().to_string();
    let get = |path: &str| http.get(format!("{base}{path}")).bearer_auth(&tok).send();

    // create (201 + Location + ETag)
    let body = create_body("EMP0001");
    assert_schema("EmployeeCreateDTO", &body);
    let r = http.post(format!("{base}/v1/employee")).bearer_auth(&tok).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["location"].to_str().unwrap(), format!("{base}/v1/employee/EMP0001"));
    assert!(r.headers().contains_key("etag"));
    for h in ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "x-ratelimit-policy"] {
        assert!(r.headers().contains_key(h), "missing {h}");
    }

    // read one
    let r = get("/v1/employee/EMP0001").await.unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let e: Value = r.json().await.unwrap();
    assert_schema("EmployeeDto", &e);
    assert_eq!(e["employeeNumber"], "EMP0001");
    assert_eq!(e["contact"]["midName"], "B");
    assert_eq!(e["calendarID"], "MAIN");
    assert_eq!(e["address"]["country"]["id"], "NO");
    assert_eq!(format!("\"{}\"", e["timeStamp"].as_str().unwrap()), etag);

    // update with If-Match -> 204 + new ETag; stale -> 412
    let upd = json!({"status": {"value": "Hold"}, "contact": {"lastName": {"value": "King"}}});
    assert_schema("EmployeeUpdateDto", &upd);
    let r = http
        .put(format!("{base}/v1/employee/EMP0001"))
        .bearer_auth(&tok)
        .header("if-match", &etag)
        .json(&upd)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_ne!(r.headers()["etag"].to_str().unwrap(), etag);
    let r = http
        .put(format!("{base}/v1/employee/EMP0001"))
        .bearer_auth(&tok)
        .header("if-match", &etag)
        .json(&upd)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    let e: Value = get("/v1/employee/EMP0001").await.unwrap().json().await.unwrap();
    assert_eq!(e["status"], "OnHold");
    assert_eq!(e["contact"]["lastName"], "King");
    assert_eq!(e["contact"]["firstName"], "Ada", "omitted field unchanged");

    // list with metadata
    let r = get("/v1/employee?pageNumber=1&pageSize=10").await.unwrap();
    let list: Vec<Value> = r.json().await.unwrap();
    assert_eq!(list.len(), 1);
    for item in &list {
        assert_schema("EmployeeDto", item);
        assert_eq!(item["metadata"]["totalCount"], 1);
    }
    let r = get("/v1/employee?lastModifiedDateTime=2000-01-01").await.unwrap();
    assert_eq!(r.status(), 400, "condition is mutually inclusive");
    let r =
        get("/v1/employee?lastModifiedDateTime=2999-01-01&lastModifiedDateTimeCondition=%3E").await.unwrap();
    assert_eq!(r.json::<Vec<Value>>().await.unwrap().len(), 0);
    let r = get("/v1/employee/NOPE").await.unwrap();
    assert_eq!(r.status(), 404);

    // departments
    let list: Vec<Value> = get("/v1/department").await.unwrap().json().await.unwrap();
    assert_eq!(list.len(), 3);
    list.iter().for_each(|d| assert_schema("DepartmentDto", d));
    let d: Value = get("/v1/department/SALES").await.unwrap().json().await.unwrap();
    assert_schema("DepartmentDto", &d);
    let dep = json!({"departmentId": "HR", "description": {"value": "People"}});
    assert_schema("DepartmentUpdateBaseDto", &dep);
    let r = http.post(format!("{base}/v1/department")).bearer_auth(&tok).json(&dep).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .put(format!("{base}/v1/department/HR"))
        .bearer_auth(&tok)
        .json(&json!({"description": {"value": "Human resources"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // branches
    let list: Vec<Value> = get("/v1/branch").await.unwrap().json().await.unwrap();
    list.iter().for_each(|b| assert_schema("BranchDto", b));
    let b: Value = get("/v1/branch/1").await.unwrap().json().await.unwrap();
    assert_schema("BranchDto", &b);

    // dimensions
    let ids: Value = get("/v1/dimension").await.unwrap().json().await.unwrap();
    assert_eq!(ids, json!(["SUBACCOUNT"]));
    let d: Value = get("/v1/dimension/SUBACCOUNT").await.unwrap().json().await.unwrap();
    assert_schema("DtoDimension", &d);
    let s: Value = get("/v1/dimension/SUBACCOUNT/1").await.unwrap().json().await.unwrap();
    assert_schema("DtoSegment", &s);
    let seg = json!({"dimensionId": "SUBACCOUNT", "segementId": 1, "segmentValues": [
        {"operation": "Insert", "value": "BGO", "description": {"value": "Bergen"}, "active": {"value": true}}]});
    assert_schema("DtoSegmentUpdateDto", &seg);
    let r = http
        .put(format!("{base}/v1/dimension/SUBACCOUNT/1"))
        .bearer_auth(&tok)
        .json(&seg)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(sim.segment_values(DEFAULT_TENANT, "SUBACCOUNT", 1).len(), 2);

    assert_eq!(sim.request_count("POST /v1/employee"), 1);
    assert_eq!(sim.write_counts().get("PUT /v1/employee/{employee_cd}"), Some(&2));
    let state: Value = http.get(format!("{base}/admin/state")).send().await.unwrap().json().await.unwrap();
    assert!(state["tenants"][DEFAULT_TENANT]["data"]["employees"]["EMP0001"].is_object());
}

#[tokio::test]
async fn create_rules_and_error_shapes() {
    let sim = start(SimConfig::default()).await.unwrap();
    sim.seed(DEFAULT_TENANT, &demo_seed()).unwrap();
    let tok = token(&sim, ALL).await;
    let http = reqwest::Client::new();
    let post = |body: Value| {
        http.post(format!("{}/v1/employee", sim.base_url())).bearer_auth(&tok).json(&body).send()
    };

    let mut b = create_body("E1");
    b["contact"].as_object_mut().unwrap().remove("email");
    let r = post(b).await.unwrap();
    assert_eq!(r.status(), 400);
    let m: Value = r.json().await.unwrap();
    let msg = m["message"].as_str().unwrap();
    assert!(msg.starts_with("VismaId: ") && msg.contains("contact.email"), "{msg}");

    let mut b = create_body("E1");
    b["department"] = json!({"value": "NOPE"});
    let r = post(b).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("NOPE"));

    assert_eq!(post(create_body("E1")).await.unwrap().status(), 201);
    let r = post(create_body("E1")).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("already exists"));
    // Same failing request: 2 failures in 5 min are tolerated, the 3rd repeat is punished.
    assert_eq!(post(create_body("E1")).await.unwrap().status(), 400);
    let r = post(create_body("E1")).await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));

    // Legacy layout requires ipp-company-id.
    let r = http
        .get(format!("{}/API/controller/api/v1/employee", sim.base_url()))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["ExceptionType"], "IPPException");
    assert_eq!(e["ExceptionFaultCode"], "12002");
    let r = http
        .get(format!("{}/API/controller/api/v1/employee", sim.base_url()))
        .bearer_auth(&tok)
        .header("ipp-company-id", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-policy"], "6-fixed-window");
    // ... and /v1 ignores it.
    let r = http
        .get(format!("{}/v1/employee", sim.base_url()))
        .bearer_auth(&tok)
        .header("ipp-company-id", "999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Injected 5xx are plain text.
    sim.set_fault(
        "GET /v1/branch",
        sim_visma::FaultSpec { fail_next: 1, error_status: Some(500), ..Default::default() },
    );
    let r = http.get(format!("{}/v1/branch", sim.base_url())).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
}

#[tokio::test]
async fn tokens_scopes_and_throttling() {
    let sim = start(SimConfig { hourly_limit: 3, ..SimConfig::default() }).await.unwrap();
    sim.add_tenant(sim_visma::TenantConfig::customer("customer-tenant"));
    let http = reqwest::Client::new();
    let base = sim.base_url().to_string();

    // Bad secret -> OAuth error.
    let r = http
        .post(sim.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", "wrong"),
            ("tenant_id", DEFAULT_TENANT),
            ("scope", ALL),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");

    // Customer tenant: token issued, refused on use.
    let r = http
        .post(sim.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("tenant_id", "customer-tenant"),
            ("scope", ALL),
        ])
        .send()
        .await
        .unwrap();
    let ctok = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    let r = http.get(format!("{base}/v1/employee")).bearer_auth(&ctok).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // Read-only token cannot create.
    let rtok = token(&sim, "vismanet_erp_service_api:read").await;
    let r = http
        .post(format!("{base}/v1/employee"))
        .bearer_auth(&rtok)
        .json(&create_body("X"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Hourly window: the limit counts per (tenant, client); the read token has used 1 so far.
    let r = http.get(format!("{base}/v1/branch")).bearer_auth(&rtok).send().await.unwrap();
    assert_eq!(r.headers()["x-ratelimit-remaining"], "1");
    let _ = http.get(format!("{base}/v1/branch")).bearer_auth(&rtok).send().await.unwrap();
    let r = http.get(format!("{base}/v1/branch")).bearer_auth(&rtok).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 3000 && retry <= 3600, "{retry}");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");

    // Advancing the clock rolls the window and expires the token.
    sim.advance_clock(std::time::Duration::from_secs(3601));
    let r = http.get(format!("{base}/v1/branch")).bearer_auth(&rtok).send().await.unwrap();
    assert_eq!(r.status(), 401, "expired token");
    let rtok = token(&sim, "vismanet_erp_service_api:read").await;
    let r = http.get(format!("{base}/v1/branch")).bearer_auth(&rtok).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn admin_routes_seed_faults_and_settings() {
    let sim = start(SimConfig::default()).await.unwrap();
    let http = reqwest::Client::new();
    let admin = format!("{}/admin", sim.base_url());
    let seed = json!({
        "departments": [{"id": "ENG", "description": "Engineering"}],
        "branches": [{"number": "1", "name": "Main branch"}],
        "employeeClasses": [{"id": "EMPSTD", "description": "Standard"}],
        "calendars": ["MAIN"],
        "segments": [{"dimension": "SUBACCOUNT", "segmentId": 1, "description": "Location", "values": [{"value": "OSL"}]}],
        "employees": [{
            "employeeCd": {"value": "OLD1"}, "department": {"value": "ENG"},
            "employeeClass": {"value": "EMPSTD"}, "branch": {"value": "1"}, "calendar": {"value": "MAIN"},
            "contact": {"lastName": {"value": "Hopper"}, "email": {"value": "grace@example.com"}}
        }]
    });
    let r = http.post(format!("{admin}/tenants/new-tenant/seed")).json(&seed).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(sim.employees("new-tenant").len(), 1);
    let bad = json!({"employees": [{"employeeCd": {"value": "X"}}]});
    let r = http.post(format!("{admin}/tenants/new-tenant/seed")).json(&bad).send().await.unwrap();
    assert_eq!(r.status(), 400);

    let r = http.get(format!("{admin}/tenants/new-tenant/employees")).send().await.unwrap();
    let list: Vec<Value> = r.json().await.unwrap();
    assert_eq!(list[0]["employeeCd"], "OLD1");

    let r = http
        .put(format!("{admin}/faults"))
        .json(&json!({"route": "*", "failNext": 1, "errorStatus": 502}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = http.put(format!("{admin}/settings")).json(&json!({"hourlyLimit": 7})).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = http.post(format!("{admin}/clock/advance")).json(&json!({"seconds": 10})).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let state: Value = http.get(format!("{admin}/state")).send().await.unwrap().json().await.unwrap();
    assert_eq!(state["config"]["hourlyLimit"], 7);
    assert_eq!(state["faults"]["*"]["failNext"], 1);
    assert_eq!(state["clockOffsetSecs"], 10.0);
    let r = http.delete(format!("{admin}/faults")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(http.post(format!("{admin}/throttle/reset")).send().await.unwrap().status(), 204);
}

/// A concurrent edit (`stale_next`) makes a PUT's `If-Match` stale for real: 412 from the
/// handler, a re-read sees the new tag, and the PUT with it succeeds. Repeating the PUT with
/// the *same* stale tag is the same failing request, punished on its third try.
#[tokio::test]
async fn a_concurrent_edit_is_a_real_412_and_the_documented_retry_is_not_throttled() {
    let sim = start(SimConfig::default()).await.unwrap();
    sim.seed(DEFAULT_TENANT, &demo_seed()).unwrap();
    let tok = token(&sim, ALL).await;
    let http = reqwest::Client::new();
    let base = sim.base_url().to_string();
    let url = format!("{base}/v1/employee/E7");
    let r = http.post(format!("{base}/v1/employee")).bearer_auth(&tok).json(&create_body("E7")).send();
    assert_eq!(r.await.unwrap().status(), 201);
    let etag = |r: &reqwest::Response| r.headers()["etag"].to_str().unwrap().to_string();
    let read = || http.get(&url).bearer_auth(&tok).send();
    let put = |tag: String| {
        http.put(&url)
            .bearer_auth(&tok)
            .header("if-match", tag)
            .json(&json!({"contact": {"lastName": {"value": "Byron"}}}))
            .send()
    };

    sim.set_fault(
        "PUT /v1/employee/{employee_cd}",
        sim_visma::FaultSpec { stale_next: 3, ..Default::default() },
    );
    let mut tag = etag(&read().await.unwrap());
    for attempt in 1..=3 {
        let r = put(tag.clone()).await.unwrap();
        assert_eq!(r.status(), 412, "attempt {attempt}: someone saved the employee first");
        let fresh = etag(&read().await.unwrap());
        assert_ne!(fresh, tag, "attempt {attempt}: the re-read sees the other save");
        tag = fresh;
    }
    let r = put(tag.clone()).await.unwrap();
    assert_eq!(r.status(), 204, "three 412s with three different tags are not the same failing request");
    let e: Value = read().await.unwrap().json().await.unwrap();
    assert_eq!(e["contact"]["lastName"], "Byron");

    // The identical PUT with a stale tag: two failures tolerated, the third throttled.
    assert_eq!(put(tag.clone()).await.unwrap().status(), 412);
    assert_eq!(put(tag.clone()).await.unwrap().status(), 412);
    let r = put(tag).await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
}
