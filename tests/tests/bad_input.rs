//! Bad input never panics and always says what is wrong (issue 10, bad-input suite):
//! arbitrary Gusto and Visma answers (bytes and JSON shapes, and through the clients over
//! HTTP), configuration files and mapping files. The webhook side (bodies, headers, and
//! that nothing unverified is published) is fuzzed against the real gateway in
//! `services/gateway/tests/gateway.rs`. Bounded case counts keep this in CI time;
//! `PROPTEST_CASES` raises them.

use proptest::prelude::*;

/// Arbitrary JSON, nested a few levels, with keys the decoders know mixed in.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let key = prop_oneof![
        Just("uuid".to_string()),
        Just("first_name".to_string()),
        Just("jobs".to_string()),
        Just("terminations".to_string()),
        Just("employeeNumber".to_string()),
        Just("contact".to_string()),
        Just("status".to_string()),
        Just("message".to_string()),
        Just("ExceptionMessage".to_string()),
        "[a-z_]{1,12}",
    ];
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,20}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn gusto_answers_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..512), v in json()) {
        for body in [bytes.clone(), serde_json::to_vec(&v).unwrap()] {
            let _ = serde_json::from_slice::<gusto::Employee>(&body);
            let _ = serde_json::from_slice::<Vec<gusto::Employee>>(&body);
            let _ = serde_json::from_slice::<Vec<gusto::Location>>(&body);
            let _ = serde_json::from_slice::<Vec<gusto::Event>>(&body);
            let _ = gusto::webhook::parse_event(&body);
            let _ = gusto::webhook::is_verification_handshake(&body);
        }
    }

    #[test]
    fn visma_answers_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..512), v in json()) {
        let text = String::from_utf8_lossy(&bytes).to_string();
        for body in [text, v.to_string()] {
            let (message, _code) = visma::extract_message(&body);
            prop_assert!(message.len() <= body.len() + 64);
            let _ = serde_json::from_str::<visma::dto::EmployeeDto>(&body);
            let _ = serde_json::from_str::<Vec<visma::dto::EmployeeDto>>(&body);
        }
    }

    #[test]
    fn config_files_load_or_name_what_is_wrong(text in "(\\[[a-z.]{1,12}\\]\n)?([a-z_]{1,16} = (\"[ -~]{0,16}\"|[0-9]{1,6}|true)\n){0,6}") {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("mlc.toml");
        std::fs::write(&f, &text).unwrap();
        if let Err(e) = mlc_config::Config::load_from(Some(&f), &[]) {
            let m = e.to_string();
            prop_assert!(m.contains("config key `") || m.contains("config file"), "{m}");
        }
    }

    #[test]
    fn mapping_files_parse_or_name_the_line(text in "([a-z_\\[\\].]{1,20}( = (\"[ -~]{0,12}\"|[0-9]{1,4}|\\{ branch = \"1\" \\}))?\n){0,8}") {
        if let Err(e) = mlc_domain::Mapping::from_toml_str(&text, "m.toml") {
            let m = e.to_string();
            prop_assert!(m.contains("m.toml:"), "{m}");
        }
    }
}

/// The clients over HTTP: whatever status and body a server answers, a call returns a
/// typed error (or a value), never a panic, and the error carries no credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_survive_arbitrary_http_answers() {
    use axum::routing::{any as any_method, post};
    use proptest::strategy::ValueTree;
    use std::sync::{Arc, Mutex};

    type Answer = Arc<Mutex<(u16, Vec<u8>)>>;
    let answer: Answer = Arc::new(Mutex::new((200, b"{}".to_vec())));
    let serve = |a: Answer| async move {
        let (status, body) = a.lock().unwrap().clone();
        (axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK), body)
    };
    let token = || async {
        axum::Json(serde_json::json!({"access_token": "SECRET-ACCESS", "refresh_token": "SECRET-REFRESH",
            "token_type": "Bearer", "expires_in": 7200, "scope": "x", "created_at": 0}))
    };
    let app = {
        let a = answer.clone();
        axum::Router::new()
            .route("/oauth/token", post(token))
            .route("/connect/token", post(token))
            .fallback(any_method(move || serve(a.clone())))
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let store = Arc::new(gusto::MemoryTokenStore::new());
    let mut cfg = gusto::ClientConfig::new(&base, "id", gusto::Secret::new("CLIENT-SECRET")).unwrap();
    cfg.retry.max_retries = 0;
    cfg.retry.max_rate_limit_waits = 0;
    let g = gusto::GustoClient::new(cfg, store).unwrap();
    g.exchange_code(&gusto::GrantId("g".into()), "code", "http://x").await.unwrap();
    let v = visma::VismaClient::new(
        visma::VismaConfig::new("tenant", "id", visma::Secret::new("CLIENT-SECRET"))
            .with_endpoints(base.clone(), format!("{base}/connect/token")),
    )
    .unwrap();

    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let statuses = prop_oneof![
        Just(200u16),
        Just(201),
        Just(204),
        Just(400),
        Just(401),
        Just(404),
        Just(409),
        Just(412),
        Just(429),
        Just(500),
        Just(503),
        100u16..600
    ];
    let bodies = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ];
    for _ in 0..64 {
        let status = statuses.new_tree(&mut runner).unwrap().current();
        let body = bodies.new_tree(&mut runner).unwrap().current();
        *answer.lock().unwrap() = (status, body);
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            g.get_employee(&gusto::GrantId("g".into()), "e1"),
        )
        .await;
        if let Ok(Err(e)) = r {
            let m = format!("{e} {e:?}");
            assert!(!m.contains("SECRET"), "a credential in an error: {m}");
        }
        let r = tokio::time::timeout(std::time::Duration::from_secs(20), v.get_employee("E1")).await;
        if let Ok(Err(e)) = r {
            let m = format!("{e} {e:?}");
            assert!(!m.contains("SECRET"), "a credential in an error: {m}");
        }
    }
}
