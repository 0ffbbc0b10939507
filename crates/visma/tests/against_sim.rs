//! The client against the simulator: round trips, duplicates, classification, retries, and
//! request bodies validated against the vendored spec.

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Value as Json};
use sim_visma::{
    demo_seed, start, FaultSpec, Settings, SimConfig, SimHandle, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET,
    DEFAULT_TENANT,
};
use visma::dto::{
    v, AddressWrite, CompanyTreeInfoDto, EmployeeContactWrite, RowOperation, SegmentValueUpdateDto, Value,
};
use visma::{
    with_retry, DateCondition, EmployeeCreateDto, EmployeeQuery, EmployeeStatus, EmployeeUpdateDto,
    EmployeeWriteStatus, RetryPolicy, SegmentUpdateDto, VismaClient, VismaConfig, VismaError,
};

const SPEC: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/upstream/visma-v1_20250424.swagger.json");

fn components() -> &'static Json {
    static C: OnceLock<Json> = OnceLock::new();
    C.get_or_init(|| {
        let spec: Json = serde_json::from_str(&std::fs::read_to_string(SPEC).unwrap()).unwrap();
        spec["components"].clone()
    })
}

fn assert_schema(name: &str, instance: &Json) {
    let schema = json!({"$ref": format!("#/components/schemas/{name}"), "components": components()});
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> =
        validator.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{name}: {errors:?}\n{instance:#}");
}

async fn setup(cfg: SimConfig) -> (SimHandle, VismaClient) {
    let sim = start(cfg).await.unwrap();
    sim.seed(DEFAULT_TENANT, &demo_seed()).unwrap();
    let client = VismaClient::new(config(&sim)).unwrap();
    (sim, client)
}

fn config(sim: &SimHandle) -> VismaConfig {
    VismaConfig::new(DEFAULT_TENANT, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)
        .with_endpoints(sim.base_url(), sim.token_url())
}

fn full_create(cd: &str) -> EmployeeCreateDto {
    let mut dto = EmployeeCreateDto::new(cd, "ADMIN", "EMPSTD", "1", "MAIN", "Lovelace", "ada@example.com");
    dto.contact.first_name = Some(v("Ada"));
    dto.contact.middle_name = Some(v("Byron"));
    dto.contact.phone1 = Some(v("+47 22 00 00 00"));
    dto.address = Some(AddressWrite {
        address_line1: Some(v("Karl Johans gate 1")),
        postal_code: Some(v("0154")),
        city: Some(v("Oslo")),
        country_id: Some(v("NO")),
        ..AddressWrite::default()
    });
    dto.status = Some(Value::new(EmployeeWriteStatus::Active));
    dto
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    }
}

#[test]
fn request_bodies_validate_against_spec() {
    let create = full_create("EMP0042");
    assert_schema("EmployeeCreateDTO", &serde_json::to_value(&create).unwrap());
    let minimal = EmployeeCreateDto::new("E", "D", "C", "1", "MAIN", "L", "e@x");
    assert_schema("EmployeeCreateDTO", &serde_json::to_value(&minimal).unwrap());

    let deactivate = serde_json::to_value(EmployeeUpdateDto::deactivate()).unwrap();
    assert_eq!(deactivate, json!({"status": {"value": "Inactive"}, "contact": {}}));
    assert_schema("EmployeeUpdateDto", &deactivate);
    let full = EmployeeUpdateDto {
        employee_class: Some(v("EMPSTD")),
        status: Some(Value::new(EmployeeWriteStatus::Hold)),
        department: Some(v("SALES")),
        contact: EmployeeContactWrite {
            last_name: Some(v("King")),
            email: Some(v("a@b")),
            ..Default::default()
        },
        address: Some(AddressWrite { city: Some(v("Bergen")), ..Default::default() }),
        branch: Some(v("1")),
        calendar: Some(v("MAIN")),
        company_tree_info: Some(vec![CompanyTreeInfoDto {
            operation: RowOperation::Insert,
            active: Some(Value::new(true)),
            owner: Some(Value::new(false)),
            work_group_id: v("TEAM"),
        }]),
    };
    assert_schema("EmployeeUpdateDto", &serde_json::to_value(&full).unwrap());
    let seg = SegmentUpdateDto {
        dimension_id: Some("SUBACCOUNT".into()),
        segment_id: Some(1),
        description: None,
        segment_values: vec![SegmentValueUpdateDto {
            operation: RowOperation::Insert,
            value: "OSL".into(),
            description: Some(v("Oslo")),
            active: Some(Value::new(true)),
        }],
    };
    assert_schema("DtoSegmentUpdateDto", &serde_json::to_value(&seg).unwrap());
}

#[test]
fn secrets_never_print() {
    let cfg = VismaConfig::new("t", "c", "super-secret-value");
    assert!(!format!("{cfg:?}").contains("super-secret-value"));
    let e = VismaError::Token { status: 400, error: "invalid_client".into() };
    assert!(!e.to_string().contains("super-secret-value"));
}

#[tokio::test]
async fn create_read_update_deactivate_round_trip() {
    let (sim, client) = setup(SimConfig::default()).await;
    let created = client.create_employee(&full_create("EMP0042")).await.unwrap();
    assert_eq!(created.employee_cd, "EMP0042");
    assert!(created.location.unwrap().ends_with("/v1/employee/EMP0042"));
    assert!(created.etag.is_some());

    let e = client.get_employee("EMP0042").await.unwrap().expect("exists");
    assert_eq!(e.employee_number.as_deref(), Some("EMP0042"));
    assert_eq!(e.status, Some(EmployeeStatus::Active));
    assert_eq!(e.department.as_deref(), Some("ADMIN"));
    assert_eq!(e.calendar_id.as_deref(), Some("MAIN"));
    let c = e.contact.clone().unwrap();
    assert_eq!(
        (c.first_name.as_deref(), c.mid_name.as_deref(), c.last_name.as_deref()),
        (Some("Ada"), Some("Byron"), Some("Lovelace"))
    );
    assert_eq!(e.address.clone().unwrap().country.unwrap().id.as_deref(), Some("NO"));
    assert_eq!(e.employee_class.clone().unwrap().id.as_deref(), Some("EMPSTD"));
    assert_eq!(e.branch.clone().unwrap().number.as_deref(), Some("1"));
    assert_eq!(e.etag(), created.etag);

    // Update with If-Match; omitted fields unchanged; Hold reads back as OnHold.
    let upd = EmployeeUpdateDto {
        department: Some(v("SALES")),
        status: Some(Value::new(EmployeeWriteStatus::Hold)),
        ..Default::default()
    };
    let etag2 = client.update_employee("EMP0042", &upd, e.etag().as_deref()).await.unwrap().expect("etag");
    let e2 = client.get_employee("EMP0042").await.unwrap().unwrap();
    assert_eq!(e2.department.as_deref(), Some("SALES"));
    assert_eq!(e2.status, Some(EmployeeStatus::OnHold));
    assert_eq!(e2.contact.as_ref().unwrap().first_name.as_deref(), Some("Ada"));
    assert_eq!(e2.etag().as_deref(), Some(etag2.as_str()));

    // A stale If-Match is a conflict of its own kind.
    let err = client
        .update_employee("EMP0042", &EmployeeUpdateDto::deactivate(), e.etag().as_deref())
        .await
        .unwrap_err();
    assert!(matches!(err, VismaError::Conflict { .. }), "{err:?}");
    assert!(!err.is_retryable());

    client.update_employee("EMP0042", &EmployeeUpdateDto::deactivate(), None).await.unwrap();
    let stored = sim.employee(DEFAULT_TENANT, "EMP0042").unwrap();
    assert_eq!(stored.status, sim_visma::EmployeeStatus::Inactive);
    assert_eq!(stored.department, "SALES");
    assert_eq!(stored.contact.email.as_deref(), Some("ada@example.com"));
    assert_eq!(client.get_employee("EMP0042").await.unwrap().unwrap().status, Some(EmployeeStatus::Inactive));

    assert!(client.get_employee("MISSING").await.unwrap().is_none());
    let err = client.update_employee("MISSING", &EmployeeUpdateDto::deactivate(), None).await.unwrap_err();
    assert!(matches!(err, VismaError::NotFound { .. }));
    assert_eq!(sim.employees(DEFAULT_TENANT).len(), 1);
    assert_eq!(sim.request_count("POST /v1/employee"), 1);
    let rate = client.rate_limit().expect("rate headers seen");
    assert_eq!(rate.policy.as_deref(), Some("4-fixed-window"));
    assert!(rate.remaining.unwrap() < rate.limit.unwrap());
}

#[tokio::test]
async fn duplicate_create_is_typed_and_200_style_is_accepted() {
    let (sim, client) =
        setup(SimConfig { create_style: sim_visma::CreateStyle::Ok200, ..SimConfig::default() }).await;
    let created = client.create_employee(&full_create("E1")).await.unwrap();
    assert!(created.etag.is_none(), "Spec 2025 style has no ETag");
    let err = client.create_employee(&full_create("E1")).await.unwrap_err();
    match &err {
        VismaError::DuplicateEmployee { employee_cd, message } => {
            assert_eq!(employee_cd, "E1");
            assert!(message.contains("already exists"));
        }
        other => panic!("expected duplicate, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(sim.employees(DEFAULT_TENANT).len(), 1);
}

#[tokio::test]
async fn validation_errors_carry_vismas_message() {
    let (_sim, client) = setup(SimConfig::default()).await;
    let mut dto = full_create("E2");
    dto.department = v("NOPE");
    let err = client.create_employee(&dto).await.unwrap_err();
    match &err {
        VismaError::Validation { message, .. } => {
            assert!(message.starts_with("VismaId: ") && message.contains("NOPE"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("NOPE"));
}

#[tokio::test]
async fn throttling_is_classified_and_retry_after_honoured() {
    let (sim, client) = setup(SimConfig { hourly_limit: 3, ..SimConfig::default() }).await;
    sim.apply_settings(&Settings { rate_window_secs: Some(2.0), ..Default::default() });
    for _ in 0..3 {
        client.list_branches().await.unwrap();
    }
    assert_eq!(client.rate_limit().unwrap().remaining, Some(0));
    let err = client.list_branches().await.unwrap_err();
    assert!(matches!(err, VismaError::RateLimited { .. }), "{err:?}");
    assert!(err.is_retryable());
    let ra = err.retry_after().expect("Retry-After parsed");
    assert!(ra <= Duration::from_secs(2));

    // with_retry sleeps through the Retry-After and then succeeds.
    let started = std::time::Instant::now();
    let branches = with_retry(&fast_retry(), || client.list_branches()).await.unwrap();
    assert_eq!(branches.len(), 1);
    assert!(started.elapsed() >= Duration::from_millis(500));

    // A Retry-After beyond the policy's bound is returned, not slept through.
    sim.apply_settings(&Settings {
        rate_window_secs: Some(3600.0),
        hourly_limit: Some(0),
        ..Default::default()
    });
    sim.reset_throttle();
    let err = with_retry(&fast_retry(), || client.list_branches()).await.unwrap_err();
    assert!(err.retry_after().unwrap() > Duration::from_secs(5));
}

#[tokio::test]
async fn server_errors_and_broken_answers_are_retryable() {
    let (sim, client) = setup(SimConfig::default()).await;
    sim.set_fault("GET /v1/department", FaultSpec { fail_next: 2, ..Default::default() });
    let err = client.list_departments().await.unwrap_err();
    assert!(matches!(err, VismaError::Server { status: 503, .. }), "{err:?}");
    assert!(err.is_retryable());
    let deps = with_retry(&fast_retry(), || client.list_departments()).await.unwrap();
    assert_eq!(deps.len(), 3);

    sim.set_fault("GET /v1/branch", FaultSpec { drop_rate: 1.0, ..Default::default() });
    let err = client.list_branches().await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    sim.set_fault("GET /v1/branch", FaultSpec { malformed_rate: 1.0, ..Default::default() });
    let err = client.list_branches().await.unwrap_err();
    assert!(matches!(err, VismaError::Decode(_)), "{err:?}");

    // Bounded: a route that always fails gives up after max_attempts.
    sim.set_fault(
        "GET /v1/branch",
        FaultSpec { error_rate: 1.0, error_status: Some(502), ..Default::default() },
    );
    let err = with_retry(&fast_retry(), || client.list_branches()).await.unwrap_err();
    assert_eq!(err.status(), Some(502));
}

#[tokio::test]
async fn auth_failures_and_legacy_mode() {
    let (sim, _client) = setup(SimConfig::default()).await;
    let bad = VismaClient::new(VismaConfig { client_secret: "wrong".into(), ..config(&sim) }).unwrap();
    let err = bad.list_branches().await.unwrap_err();
    assert!(matches!(err, VismaError::Token { status: 400, .. }), "{err:?}");
    assert!(!err.is_retryable());

    sim.add_tenant(sim_visma::TenantConfig::customer("cust"));
    let cust = VismaClient::new(VismaConfig { tenant_id: "cust".into(), ..config(&sim) }).unwrap();
    let err = cust.list_branches().await.unwrap_err();
    assert!(matches!(err, VismaError::Auth { status: 401, .. }), "{err:?}");
    assert!(err.to_string().contains("No license"));

    let legacy = VismaClient::new(config(&sim).with_legacy("1")).unwrap();
    legacy.create_employee(&full_create("L1")).await.unwrap();
    assert_eq!(legacy.rate_limit().unwrap().policy.as_deref(), Some("6-fixed-window"));
    let wrong = VismaClient::new(config(&sim).with_legacy("7")).unwrap();
    match wrong.list_branches().await.unwrap_err() {
        VismaError::Validation { fault_code, message } => {
            assert_eq!(fault_code.as_deref(), Some("12002"));
            assert!(message.contains("ipp-company-id"));
        }
        other => panic!("{other:?}"),
    }

    // An expired token is refreshed transparently.
    let client = VismaClient::new(config(&sim)).unwrap();
    client.list_branches().await.unwrap();
    sim.advance_clock(Duration::from_secs(4000));
    client.list_branches().await.unwrap();
    assert_eq!(sim.tokens_issued(), 6);
}

#[tokio::test]
async fn paging_setup_data_and_segments() {
    let (sim, client) = setup(SimConfig { max_page_size: 2, ..SimConfig::default() }).await;
    for i in 0..5 {
        client.create_employee(&full_create(&format!("P{i}"))).await.unwrap();
    }
    let page = client
        .list_employees(&EmployeeQuery { page_number: 1, page_size: 100, modified: None })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2, "pageSize capped at maxPageSize");
    assert_eq!(page.total_count, Some(5));
    assert_eq!(page.max_page_size, Some(2));
    let all = client.list_all_employees(None).await.unwrap();
    assert_eq!(all.len(), 5);
    let since = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap();
    assert_eq!(client.list_all_employees(Some((since, DateCondition::Greater))).await.unwrap().len(), 5);
    assert_eq!(client.list_all_employees(Some((since, DateCondition::Less))).await.unwrap().len(), 0);

    assert_eq!(
        client.get_department("SALES").await.unwrap().unwrap().department_id.as_deref(),
        Some("SALES")
    );
    assert!(client.get_department("NOPE").await.unwrap().is_none());
    assert_eq!(client.list_branches().await.unwrap()[0].number.as_deref(), Some("1"));
    let seg = SegmentUpdateDto {
        dimension_id: Some("SUBACCOUNT".into()),
        segment_id: Some(1),
        description: None,
        segment_values: vec![SegmentValueUpdateDto {
            operation: RowOperation::Insert,
            value: "OSL".into(),
            description: Some(v("Oslo")),
            active: Some(Value::new(true)),
        }],
    };
    client.put_segment_values("SUBACCOUNT", 1, &seg).await.unwrap();
    let dim = client.get_dimension("SUBACCOUNT").await.unwrap().unwrap();
    let values = dim.segments.unwrap()[0].segment_values.clone().unwrap();
    assert_eq!(values[0].value_id.as_deref(), Some("OSL"));
    assert_eq!(
        sim.segment_values(DEFAULT_TENANT, "SUBACCOUNT", 1),
        vec![("OSL".to_string(), Some("Oslo".to_string()))]
    );
}
