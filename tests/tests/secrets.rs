//! Findings 3, 10 and 12 of the 2026-12-01 security review: no configured secret appears in
//! any log line (at `trace`), exported trace, `mlc config print` output or error message.
//! The real services run with every secret they can hold set to a value unique to this
//! test (NATS passwords, the store key, the webhook token, the OAuth grant's tokens, the
//! Gusto and Visma client secrets), drive a change through to Visma and a signed webhook,
//! then every text they produced is searched for every one of those values.

use mlc_e2e::{Stack, StackOptions};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `POST /v1/traces` on 127.0.0.1:0, keeping the raw OTLP bodies (protobuf carries
/// strings as their UTF-8 bytes, so a secret would show as itself).
async fn otlp_receiver() -> (String, Arc<Mutex<Vec<u8>>>) {
    let bodies: Arc<Mutex<Vec<u8>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let keep = bodies.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().extend_from_slice(&body);
                axum::http::StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, bodies)
}

fn text(out: &std::process::Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_configured_secret_appears_in_logs_traces_print_or_errors() {
    let (otlp, exported) = otlp_receiver().await;
    let mut stack = Stack::start(StackOptions { employees: 3, nats_users: true, ..Default::default() }).await;
    let users = stack.nats_users.clone().unwrap();
    let token = mlc_testkit::unique("whtok-marker-");

    // Restart the services at `trace`, exporting spans, with a configured webhook token.
    for s in ["gateway", "projector", "writer"] {
        stack.kill_service(s);
    }
    stack.edit_config(|c| {
        c.gateway.webhook_tokens = vec![mlc_config::Secret::new(&token)];
        c.telemetry.log_filter = "trace".into();
        c.telemetry.otlp_endpoint = Some(otlp.to_string());
    });
    for s in ["gateway", "projector", "writer"] {
        stack.start_service(s);
    }
    for s in ["gateway", "projector", "writer"] {
        stack.wait_ready(s).await;
    }

    // Work: a Gusto change through to Visma (OAuth token use, NATS, Visma client
    // credentials), and a webhook signed with the configured token.
    let e = stack.company.employee_uuids[0].clone();
    stack.gusto.sim().change_title(&e, "Partner").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while stack.visma_employees().iter().all(|r| r.employee_class != "EMPPART") {
        assert!(Instant::now() < deadline, "the change did not reach Visma{}", stack.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let body = format!(
        r#"{{"uuid":"{}","event_type":"employee.updated","resource_type":"Company","resource_uuid":"{}","entity_type":"Employee","entity_uuid":"{e}","timestamp":1764547200}}"#,
        uuid::Uuid::new_v4(),
        stack.company_uuid()
    );
    let answer = reqwest::Client::new()
        .post(format!("http://{}/webhooks/gusto", stack.gateway))
        .header(gusto::webhook::SIGNATURE_HEADER, gusto::webhook::sign(token.as_bytes(), body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{}", answer.status());
    stack.settle().await;

    // The CLI: config print, a status, a mistyped secret, credentials in the URL.
    let mut outputs = vec![text(&stack.mlc(&["config", "print"]).await), text(&stack.mlc(&["status"]).await)];
    let bad = stack.dir.path().join("bad.toml");
    let good = std::fs::read_to_string(&stack.config).unwrap();
    std::fs::write(
        &bad,
        good.replace(&format!("webhook_tokens = [\"{token}\"]"), &format!("webhook_tokens = \"{token}\"")),
    )
    .unwrap();
    let out = mlc_e2e::run_mlc(&bad, &["config", "print"]).await;
    assert!(!out.status.success() && text(&out).contains("gateway.webhook_tokens"), "{}", text(&out));
    outputs.push(text(&out));
    let with_creds = format!("nats://admin:{}@127.0.0.1:{}", users.password("admin"), stack.nats.port());
    let out = tokio::process::Command::new(mlc_e2e::mlc_bin())
        .arg("--config")
        .arg(&stack.config)
        .args(["config", "print"])
        .env("MLC_NATS_URL", &with_creds)
        .env_remove("MLC_CONFIG")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success() && text(&out).contains("nats.url"), "{}", text(&out));
    outputs.push(text(&out));

    // Stop the services gracefully, so the last spans are flushed.
    for s in ["gateway", "projector", "writer"] {
        stack.stop_service(s, Duration::from_secs(10)).await;
    }
    let logs: Vec<(String, String)> = ["gateway", "projector", "writer"]
        .iter()
        .map(|s| (s.to_string(), std::fs::read_to_string(stack.dir.path().join(format!("{s}.log"))).unwrap()))
        .collect();
    let traces = String::from_utf8_lossy(&exported.lock().unwrap()).to_string();
    assert!(logs.iter().all(|(_, l)| l.contains("\"level\":\"TRACE\"")), "the services logged at trace");
    assert!(traces.contains("webhook"), "spans were exported ({} bytes)", traces.len());

    let store = stack.store().await;
    let company = store.company(stack.company_uuid()).await.unwrap().unwrap();
    let grant = store.grant(&company.grant_id).await.unwrap().unwrap();
    let mut secrets: Vec<(String, String)> = vec![
        ("store.encryption_key".into(), stack.store_key.clone()),
        ("gateway.webhook_tokens".into(), token.clone()),
        ("gusto.client_secret".into(), stack.gusto.sim().config().client_secret.clone()),
        ("visma client_secret".into(), sim_visma::DEFAULT_CLIENT_SECRET.into()),
        ("Gusto access token".into(), grant.access_token.clone()),
        ("Gusto refresh token".into(), grant.refresh_token.clone()),
    ];
    for u in ["admin", "gateway", "projector", "writer"] {
        secrets.push((format!("NATS password of {u}"), users.password(u).to_string()));
    }
    // Controls: the search can see what these texts do hold.
    assert!(secrets.iter().all(|(_, v)| v.len() >= 8), "every secret is distinctive");
    assert!(logs.iter().any(|(_, l)| l.contains(stack.company_uuid())), "the logs name the company");
    assert!(traces.contains(stack.company_uuid()), "the spans name the company");
    let mut leaks = Vec::new();
    for (what, secret) in &secrets {
        for (name, l) in &logs {
            if let Some(line) = l.lines().find(|line| line.contains(secret.as_str())) {
                leaks.push(format!("{what} in the {name} log: {line}"));
            }
        }
        if traces.contains(secret.as_str()) {
            leaks.push(format!("{what} in the exported traces"));
        }
        for o in &outputs {
            if o.contains(secret.as_str()) {
                leaks.push(format!("{what} in CLI output: {o}"));
            }
        }
    }
    assert!(leaks.is_empty(), "{} leaks:\n{}", leaks.len(), leaks.join("\n"));
}
