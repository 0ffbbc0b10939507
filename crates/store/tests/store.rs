//! The same behaviour on SQLite and PostgreSQL: each test runs on both.

use mlc_store::{AuditEntry, AuditQuery, Company, EmployeeLink, Store};
use mlc_testkit::TestDb;

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                let db = mlc_testkit::TestDb::sqlite();
                super::$name(&db, db.store().await).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                let db = mlc_testkit::TestDb::postgres().await;
                super::$name(&db, db.store().await).await;
            })*
        }
    };
}

both_backends!(
    audit_append_is_idempotent_and_ordered,
    audit_is_append_only,
    audit_rows_appended_together_keep_their_order_and_skip_repeats,
    recent_audit_is_newest_first_by_kind_prefix,
    concurrent_appends_get_distinct_ordered_positions,
    rows_recorded_at_once_share_writes_and_are_all_stored,
    links_round_trip,
    grants_are_encrypted_at_rest,
    grant_swap_is_compare_and_swap,
    companies_round_trip,
    verification_tokens_are_kept_sealed,
);

fn entry(id: &str, employee: &str) -> AuditEntry {
    AuditEntry {
        event_id: id.to_string(),
        kind: "snapshot.appended".into(),
        company: Some("c1".into()),
        employee: Some(employee.into()),
        detail: serde_json::json!({"seq": 1}),
        trace_id: None,
    }
}

/// `append_audits` (the projector's batch of event rows): in order, more than one
/// statement's worth, and a repeated event id is skipped, not an error.
async fn audit_rows_appended_together_keep_their_order_and_skip_repeats(_db: &TestDb, store: Store) {
    store.append_audit(&entry("r3", "x")).await.unwrap();
    let batch: Vec<AuditEntry> = (0..1203).map(|i| entry(&format!("r{i}"), "x")).collect();
    assert_eq!(store.append_audits(&batch).await.unwrap(), 1202, "r3 was there already");
    assert_eq!(store.append_audits(&batch).await.unwrap(), 0, "a repeat appends nothing");
    assert_eq!(store.append_audits(&[]).await.unwrap(), 0);
    let all = store.audit(&AuditQuery { limit: 5000, ..Default::default() }).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|r| r.event_id.as_str()).collect();
    let want: Vec<String> = std::iter::once("r3".to_string())
        .chain((0..1203).filter(|i| *i != 3).map(|i| format!("r{i}")))
        .collect();
    assert_eq!(ids, want.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));

    // Every field comes back as it went in: absent ones as absent, text as text.
    let odd = AuditEntry {
        event_id: "odd \"quoted\" \u{e9}".into(),
        kind: "event.ignored".into(),
        company: None,
        employee: None,
        detail: serde_json::json!({"note": "a \"b\" \\ \u{1F600}", "n": 1.5, "none": null}),
        trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
    };
    assert_eq!(store.append_audits(std::slice::from_ref(&odd)).await.unwrap(), 1);
    let back = store.audit(&AuditQuery { limit: 5000, ..Default::default() }).await.unwrap();
    let back = back.last().unwrap();
    assert_eq!(
        (&back.event_id, &back.kind, &back.company, &back.employee, &back.detail, &back.trace_id),
        (&odd.event_id, &odd.kind, &None, &None, &odd.detail, &odd.trace_id)
    );
}

async fn audit_append_is_idempotent_and_ordered(_db: &TestDb, store: Store) {
    let p1 = store.append_audit(&entry("e1", "a")).await.unwrap().expect("first append stored");
    let p2 = store.append_audit(&entry("e2", "b")).await.unwrap().expect("second append stored");
    assert!(p2 > p1, "positions grow");
    assert_eq!(store.append_audit(&entry("e1", "a")).await.unwrap(), None, "duplicate append is a no-op");
    let all = store.audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(all.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>(), ["e1", "e2"]);
    let only_b = store.audit(&AuditQuery { employee: Some("b".into()), ..Default::default() }).await.unwrap();
    assert_eq!(only_b.len(), 1);
    assert_eq!(only_b[0].detail, serde_json::json!({"seq": 1}));
    let after = store.audit(&AuditQuery { after_position: p1, ..Default::default() }).await.unwrap();
    assert_eq!(after.len(), 1);
}

async fn recent_audit_is_newest_first_by_kind_prefix(_db: &TestDb, store: Store) {
    for (id, kind, company) in [
        ("e1", "event.hydrated", "c1"),
        ("e2", "snapshot.appended", "c1"),
        ("e3", "event.parked", "c2"),
        ("e4", "event_x", "c1"),
        ("e5", "event.ignored", "c1"),
    ] {
        let e = AuditEntry { kind: kind.into(), company: Some(company.into()), ..entry(id, "a") };
        store.append_audit(&e).await.unwrap();
    }
    let ids = |rows: Vec<mlc_store::AuditRow>| rows.into_iter().map(|r| r.event_id).collect::<Vec<_>>();
    assert_eq!(ids(store.recent_audit("event.", None, 10).await.unwrap()), ["e5", "e3", "e1"]);
    assert_eq!(ids(store.recent_audit("event.", Some("c1"), 10).await.unwrap()), ["e5", "e1"]);
    assert_eq!(ids(store.recent_audit("event.", None, 1).await.unwrap()), ["e5"]);
}

async fn audit_is_append_only(db: &TestDb, store: Store) {
    store.append_audit(&entry("e1", "a")).await.unwrap();
    store.close().await;
    // Go around the Store API: even raw SQL cannot rewrite history.
    let err = if db.url.starts_with("sqlite") {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query("UPDATE audit_log SET kind = 'x'").execute(&mut c).await.err()
    } else {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query("DELETE FROM audit_log").execute(&mut c).await.err()
    };
    assert!(err.expect("must fail").to_string().contains("append-only"));
}

async fn concurrent_appends_get_distinct_ordered_positions(_db: &TestDb, store: Store) {
    let store = std::sync::Arc::new(store);
    let mut tasks = Vec::new();
    for t in 0..4 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                s.append_audit(&entry(&format!("t{t}-{i}"), "x")).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rows = store.audit(&AuditQuery { limit: 1000, ..Default::default() }).await.unwrap();
    assert_eq!(rows.len(), 100);
    assert!(rows.windows(2).all(|w| w[0].position < w[1].position));
}

/// `record_audit` (the services' rows, written in groups): 200 tasks at once, each back
/// only once its row is stored, every row there once, each task's rows in its order.
async fn rows_recorded_at_once_share_writes_and_are_all_stored(_db: &TestDb, store: Store) {
    let store = std::sync::Arc::new(store);
    let mut tasks = Vec::new();
    for t in 0..200 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..3 {
                s.record_audit(entry(&format!("g{t}-{i}"), "x")).await.unwrap();
                let mine = s.audit(&AuditQuery { limit: 10_000, ..Default::default() }).await.unwrap();
                assert!(
                    mine.iter().any(|r| r.event_id == format!("g{t}-{i}")),
                    "stored before record_audit returned"
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // A repeat is a no-op, not an error.
    store.record_audit(entry("g0-0", "x")).await.unwrap();
    let rows = store.audit(&AuditQuery { limit: 10_000, ..Default::default() }).await.unwrap();
    assert_eq!(rows.len(), 600);
    for t in 0..200 {
        let pos: Vec<i64> = (0..3)
            .map(|i| rows.iter().find(|r| r.event_id == format!("g{t}-{i}")).unwrap().position)
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "task {t}'s rows out of order: {pos:?}");
    }
}

async fn links_round_trip(_db: &TestDb, store: Store) {
    assert_eq!(store.link("c1", "e1").await.unwrap(), None);
    let mut link = EmployeeLink {
        company: "c1".into(),
        employee_uuid: "e1".into(),
        visma_tenant: "t1".into(),
        employee_cd: "G0001".into(),
        origin: "created".into(),
        last_command_hash: Some("h1".into()),
        last_command_seq: Some(3),
        updated_at: 0,
    };
    store.put_link(&link).await.unwrap();
    link.last_command_hash = Some("h2".into());
    store.put_link(&link).await.unwrap();
    let got = store.link("c1", "e1").await.unwrap().unwrap();
    assert_eq!(got.last_command_hash.as_deref(), Some("h2"));
    assert_eq!(got.employee_cd, "G0001");
    assert_eq!(store.links("c1").await.unwrap().len(), 1);
}

async fn grants_are_encrypted_at_rest(db: &TestDb, store: Store) {
    store.put_grant("g1", "c1", "ACCESS-SECRET-123", "REFRESH-SECRET-456", 99).await.unwrap();
    let g = store.grant("g1").await.unwrap().unwrap();
    assert_eq!(g.access_token, "ACCESS-SECRET-123");
    assert!(!format!("{g:?}").contains("SECRET"), "Debug must not show tokens");
    store.close().await;
    let raw: Vec<(Vec<u8>, Vec<u8>)> = if db.url.starts_with("sqlite") {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query_as("SELECT access_token, refresh_token FROM oauth_grants")
            .fetch_all(&mut c)
            .await
            .unwrap()
    } else {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_as("SELECT access_token, refresh_token FROM oauth_grants")
            .fetch_all(&mut c)
            .await
            .unwrap()
    };
    for (a, r) in raw {
        for col in [a, r] {
            let text = String::from_utf8_lossy(&col);
            assert!(!text.contains("SECRET"), "token readable in the raw table");
        }
    }
    // A store opened with another key cannot read the tokens.
    let other = Store::connect(&db.url, Some(mlc_store::EncryptionKey::from_bytes([9u8; 32]))).await.unwrap();
    assert!(other.grant("g1").await.is_err());
}

async fn grant_swap_is_compare_and_swap(_db: &TestDb, store: Store) {
    store.put_grant("g1", "c1", "a1", "r1", 1).await.unwrap();
    let v = store.grant("g1").await.unwrap().unwrap().version;
    assert!(store.swap_grant_tokens("g1", v, "a2", "r2", 2).await.unwrap());
    assert!(!store.swap_grant_tokens("g1", v, "a3", "r3", 3).await.unwrap(), "stale version loses");
    let g = store.grant("g1").await.unwrap().unwrap();
    assert_eq!((g.access_token.as_str(), g.refresh_token.as_str()), ("a2", "r2"));
    store.set_grant_status("g1", "needs_reauth", Some("invalid_grant")).await.unwrap();
    assert_eq!(store.grant("g1").await.unwrap().unwrap().status, "needs_reauth");
}

async fn companies_round_trip(_db: &TestDb, store: Store) {
    let c = Company {
        company_uuid: "c1".into(),
        name: "Acme".into(),
        grant_id: "g1".into(),
        visma_tenant: "t1".into(),
        mapping_path: "m.toml".into(),
        paused: false,
        first_connect_applied: false,
        last_event_uuid: None,
        created_at: 5,
    };
    store.put_company(&c).await.unwrap();
    assert!(store.set_company_paused("c1", true).await.unwrap());
    assert!(store.set_first_connect_applied("c1", true).await.unwrap());
    store.set_last_event_uuid("c1", "ev9").await.unwrap();
    let got = store.company("c1").await.unwrap().unwrap();
    assert!(got.paused && got.first_connect_applied);
    assert_eq!(got.last_event_uuid.as_deref(), Some("ev9"));
    assert_eq!(store.companies().await.unwrap().len(), 1);
    assert!(!store.set_company_paused("nope", true).await.unwrap());
}

async fn verification_tokens_are_kept_sealed(_db: &TestDb, store: Store) {
    assert_eq!(store.latest_verification_token().await.unwrap(), None);
    store.put_verification_token("tok-1").await.unwrap();
    store.put_verification_token("tok-2").await.unwrap();
    let (id, tok, _) = store.latest_verification_token().await.unwrap().unwrap();
    assert_eq!(tok, "tok-2");
    assert!(store.verified_tokens().await.unwrap().is_empty(), "unverified tokens are not trusted");
    store.mark_verification_token_verified(id).await.unwrap();
    assert_eq!(store.verified_tokens().await.unwrap(), vec!["tok-2".to_string()]);
}
