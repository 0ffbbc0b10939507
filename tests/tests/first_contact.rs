//! First contact: a company connected through Gusto's consent page and the gateway's
//! `/oauth/callback`, with the state checked (replayed and forged states refused), and
//! a missing encryption key refused before Gusto's code is used.

use mlc_e2e::{mlc_bin, Stack, StackOptions, TENANT};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// `mlc company connect` as a child: returns it and the authorize URL it printed.
async fn start_connect(stack: &Stack, name: &str) -> (tokio::process::Child, String) {
    start_connect_for(stack, name, 60).await
}

async fn start_connect_for(stack: &Stack, name: &str, timeout_secs: u64) -> (tokio::process::Child, String) {
    let redirect = format!("http://{}/oauth/callback", stack.gateway);
    let mut child = tokio::process::Command::new(mlc_bin())
        .arg("--config")
        .arg(&stack.config)
        .args(["company", "connect", "--name", name, "--visma-tenant", TENANT, "--skip-review"])
        .arg("--mapping")
        .arg(stack.mapping_path())
        .args(["--redirect-uri", &redirect, "--timeout-secs", &timeout_secs.to_string()])
        .env_remove("MLC_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn mlc company connect");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read") {
            if line.starts_with("http") {
                return line;
            }
        }
        panic!("connect printed no authorize URL");
    })
    .await
    .expect("authorize URL in time");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}

/// What the admin's "Allow" on the consent page redirects the browser to.
async fn approve(stack: &Stack, authorize_url: &str, company: &str) -> String {
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/admin/oauth/approve", stack.gusto.base_url()))
        .json(&serde_json::json!({"authorize_url": authorize_url, "company_uuid": company}))
        .send()
        .await
        .expect("approve")
        .json()
        .await
        .expect("json");
    r["location"].as_str().expect("location").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_company_connects_through_the_consent_page_and_the_callback() {
    let stack = Stack::start(StackOptions { employees: 3, subscribe: false, ..Default::default() }).await;
    let acme = stack.gusto.sim().seed_named_company("Acme AS", 4);
    let (mut child, url) = start_connect(&stack, "Acme AS").await;
    assert!(url.contains("state=") && url.contains("/oauth/authorize"), "{url}");

    // The consent page the admin sees has an Allow button.
    let page = reqwest::get(&url).await.expect("consent page").text().await.expect("html");
    assert!(page.contains("Allow") && page.contains("Acme AS"), "{page}");

    let callback = approve(&stack, &url, &acme.company_uuid).await;
    assert!(callback.starts_with(&format!("http://{}/oauth/callback?code=", stack.gateway)), "{callback}");
    let r = reqwest::get(&callback).await.expect("callback");
    assert_eq!(r.status().as_u16(), 200);
    let body = r.text().await.expect("page");
    assert!(body.contains(&format!("connected: Acme AS ({})", acme.company_uuid)), "{body}");
    let status =
        tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("exit").expect("wait");
    assert!(status.success());

    // The company and its grant are stored; the grant works.
    let list = stack.mlc_ok(&["company", "list", "--json"]).await;
    assert!(list.contains(&acme.company_uuid) && list.contains("Acme AS"), "{list}");
    let check = stack.mlc_ok(&["check", "--company", &acme.company_uuid]).await;
    assert!(check.contains("[ ok ] Gusto grant of Acme AS: works"), "{check}");

    // Replayed: the same callback again finds nobody waiting.
    let r = reqwest::get(&callback).await.expect("replay");
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("already used"));
    // Forged: a well-formed state nobody issued; and a malformed one.
    let forged =
        format!("http://{}/oauth/callback?code=x&state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", stack.gateway);
    assert_eq!(reqwest::get(&forged).await.unwrap().status().as_u16(), 400);
    let bad = format!("http://{}/oauth/callback?code=x&state=a.b.%3E", stack.gateway);
    assert_eq!(reqwest::get(&bad).await.unwrap().status().as_u16(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_consent_ends_the_connect_with_the_reason() {
    let stack = Stack::start(StackOptions { employees: 2, subscribe: false, ..Default::default() }).await;
    let (mut child, url) = start_connect(&stack, "Acme AS").await;
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/admin/oauth/approve", stack.gusto.base_url()))
        .json(&serde_json::json!({"authorize_url": url, "deny": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = reqwest::get(r["location"].as_str().unwrap()).await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("access_denied"));
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
    assert!(!status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_encryption_key_is_refused_before_the_code_is_used() {
    let stack = Stack::start(StackOptions { employees: 2, subscribe: false, ..Default::default() }).await;
    let text = std::fs::read_to_string(&stack.config).unwrap();
    let keyless: String =
        text.lines().filter(|l| !l.starts_with("encryption_key")).map(|l| format!("{l}\n")).collect();
    let keyless_cfg = stack.dir.path().join("keyless.toml");
    std::fs::write(&keyless_cfg, keyless).unwrap();
    let acme = stack.gusto.sim().seed_named_company("Acme AS", 2);
    let mapping = stack.mapping_path();
    let mapping = mapping.to_str().unwrap();

    // connect: refused before any URL is printed.
    let out = mlc_e2e::run_mlc(
        &keyless_cfg,
        &["company", "connect", "--name", "Acme AS", "--visma-tenant", TENANT, "--mapping", mapping],
    )
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("store.encryption_key"));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("/oauth/authorize"));

    // add --code: refused, and the code is still unredeemed in Gusto.
    let code = stack.gusto.sim().issue_code(&acme.company_uuid, "http://127.0.0.1/cb").unwrap();
    let outstanding = stack.gusto.sim().outstanding_codes();
    let args = [
        "company",
        "add",
        "--company",
        &acme.company_uuid,
        "--name",
        "Acme AS",
        "--code",
        &code,
        "--visma-tenant",
        TENANT,
        "--mapping",
        mapping,
    ];
    let out = mlc_e2e::run_mlc(&keyless_cfg, &args).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("store.encryption_key"));
    assert_eq!(stack.gusto.sim().outstanding_codes(), outstanding, "the code was not redeemed");
    // With the key the same code still works.
    stack.mlc_ok(&args).await;
    assert_eq!(stack.gusto.sim().outstanding_codes(), outstanding - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_for_each_missing_mapping_target_and_passes_once_it_exists() {
    // Visma lacks a department, a branch and an office segment value the mapping names.
    let mut seed = sim_visma::nordic_seed();
    seed.departments.retain(|d| d.id != "HR");
    seed.branches.retain(|b| b.number != "5");
    seed.segments[0].values.retain(|v| v.value != "REK");
    let stack =
        Stack::start(StackOptions { employees: 3, visma_seed: seed, subscribe: false, ..Default::default() })
            .await;
    let mapping = stack.mapping_path();
    let pre = ["check", "--mapping", mapping.to_str().unwrap(), "--visma-tenant", TENANT];

    let mut missing = vec!["department HR", "branch 5", "segment value SUBACCOUNT/2 REK"];
    let fixes: Vec<sim_visma::Seed> = vec![
        sim_visma::Seed {
            departments: vec![sim_visma::SeedDepartment {
                id: "HR".into(),
                description: Some("People".into()),
            }],
            ..Default::default()
        },
        sim_visma::Seed {
            branches: vec![sim_visma::SeedBranch { number: "5".into(), name: "Reykjavik".into() }],
            ..Default::default()
        },
        sim_visma::Seed {
            segments: vec![sim_visma::SeedSegment {
                dimension: "SUBACCOUNT".into(),
                segment_id: 2,
                description: "Office".into(),
                length: 3,
                values: vec![sim_visma::SeedSegmentValue { value: "REK".into(), description: None }],
            }],
            ..Default::default()
        },
    ];
    for fix in fixes {
        let out = stack.mlc(&pre).await;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(out.status.code(), Some(1), "{text}");
        for m in &missing {
            assert!(text.lines().any(|l| l.starts_with("[FAIL]") && l.contains(m)), "{m} must fail:\n{text}");
        }
        assert!(!text.contains("Some("), "no Debug output: {text}");
        stack.visma.seed(sim_visma::DEFAULT_TENANT, &fix).unwrap();
        missing.remove(0);
    }
    let out = stack.mlc(&pre).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("[ ok ] department HR") && text.contains("[ ok ] Gusto application"), "{text}");

    // JSON: one object per check.
    let json = stack.mlc_ok(&["check", "--json", "--company", stack.company_uuid()]).await;
    let lines: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert!(lines.iter().any(|l| l["check"].as_str().unwrap().starts_with("Gusto grant of")), "{json}");
    assert!(lines.iter().all(|l| l["status"] != "fail"), "{json}");

    // A Visma client without the write scopes fails its tenant line, naming the keys.
    stack.visma.add_client(sim_visma::ClientConfig {
        client_id: "read-only".into(),
        client_secret: "ro-secret".into(),
        allowed_scopes: vec!["vismanet_erp_service_api:read".into()],
    });
    let cfg = std::fs::read_to_string(&stack.config).unwrap()
        + &format!(
            "[visma.tenants.readonly]\nclient_id = \"read-only\"\nclient_secret = \"ro-secret\"\ntenant_id = \"{}\"\n",
            sim_visma::DEFAULT_TENANT
        );
    let ro_cfg = stack.dir.path().join("readonly.toml");
    std::fs::write(&ro_cfg, cfg).unwrap();
    let out = mlc_e2e::run_mlc(&ro_cfg, &["check", "--visma-tenant", "readonly"]).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("[FAIL] Visma tenant readonly")
            && l.contains("visma.tenants.readonly.client_id")),
        "{text}"
    );

    // A wrong Gusto client secret fails the application line at once (no grant needed).
    let wrong =
        std::fs::read_to_string(&stack.config).unwrap().replace("sim-client-secret", "not-the-secret");
    let wrong_cfg = stack.dir.path().join("wrong-secret.toml");
    std::fs::write(&wrong_cfg, wrong).unwrap();
    let out = mlc_e2e::run_mlc(&wrong_cfg, &["check"]).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("[FAIL] Gusto application") && l.contains("gusto.client_secret")),
        "{text}"
    );
    assert!(!text.contains("not-the-secret"), "{text}");

    // An unknown company is an error.
    let out = stack.mlc(&["check", "--company", "no-such-company"]).await;
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown company"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_check_is_offline_and_preview_shows_the_diff_and_writes_nothing() {
    let stack = Stack::start(StackOptions { employees: 8, subscribe: false, ..Default::default() }).await;
    let company = stack.company_uuid().to_string();
    let mapping = stack.mapping_path();

    // check: the good file, and a typo with its line and column; no services needed.
    let out = stack.mlc_ok(&["mapping", "check", mapping.to_str().unwrap()]).await;
    assert!(out.contains(": ok (revision"), "{out}");
    let bad = stack.dir.path().join("bad.toml");
    let text = std::fs::read_to_string(&mapping).unwrap();
    std::fs::write(&bad, text.replace("[departments]", "[departmnets]")).unwrap();
    let out = stack.mlc(&["mapping", "check", bad.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:") && err.contains("departmnets"), "{err}");

    // preview before the first sync: one employee would be created.
    let e = stack.company.employee_uuids[0].clone();
    let writes = stack.visma.write_counts();
    let out = stack.mlc_ok(&["mapping", "preview", "--company", &company, "--employee", &e]).await;
    assert!(out.contains("would create Visma employee") && out.contains("+ last_name:"), "{out}");
    assert!(out.contains("preview of 1 employee(s)"), "{out}");
    assert_eq!(stack.visma.write_counts(), writes, "a preview writes nothing to Visma");

    // After the sync, a changed mapping file previews as field diffs.
    stack.mlc_ok(&["backfill", "--company", &company]).await;
    stack.settle().await;
    let changed = stack.dir.path().join("changed.toml");
    let moved: String = text
        .lines()
        .map(|l| {
            if [
                "\"Consulting\"",
                "\"Engineering\"",
                "\"Finance\"",
                "\"Sales\"",
                "\"People\"",
                "\"Operations\"",
            ]
            .iter()
            .any(|d| l.starts_with(d))
            {
                format!("{} = \"ADMIN\"\n", l.split(" = ").next().unwrap())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&changed, moved).unwrap();
    let writes = stack.visma.write_counts();
    let out = stack
        .mlc_ok(&[
            "mapping",
            "preview",
            "--company",
            &company,
            "--all",
            "--mapping",
            changed.to_str().unwrap(),
        ])
        .await;
    assert!(out.contains("would update") && out.contains("+ department_id: ADMIN"), "{out}");
    assert!(out.contains("preview of 8 employee(s)"), "{out}");
    stack.settle().await;
    assert_eq!(stack.visma.write_counts(), writes, "a preview writes nothing to Visma");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_parked_employee_is_applied_by_dlq_retry_after_the_mapping_fix() {
    let stack = Stack::start(StackOptions { employees: 12, subscribe: false, ..Default::default() }).await;
    let company = stack.company_uuid().to_string();
    // The mapping forgets the department of the first employee: they are parked.
    let e = stack.company.employee_uuids[0].clone();
    let title = {
        let sim = stack.gusto.sim();
        let st = sim.state();
        let d = st.employees[&e].department_uuid.clone().expect("a department");
        st.departments[&d].title.clone()
    };
    let good = std::fs::read_to_string(stack.mapping_path()).unwrap();
    let line = good.lines().find(|l| l.starts_with(&format!("\"{title}\" ="))).expect("mapped").to_string();
    std::fs::write(stack.mapping_path(), good.replace(&format!("{line}\n"), "")).unwrap();
    stack.mlc_ok(&["backfill", "--company", &company]).await;
    stack.settle().await;
    let letters: Vec<serde_json::Value> =
        serde_json::from_str(&stack.mlc_ok(&["dlq", "list", "--json"]).await).unwrap();
    assert!(!letters.is_empty());
    assert!(letters.iter().all(|l| l["reason"].as_str().unwrap().contains(&title)), "{letters:?}");
    let parked = letters.len();
    let in_visma = stack.visma_employees().len();
    assert_eq!(in_visma, 12 - parked);

    // Retrying before the fix keeps the letter and says why.
    let seq = letters[0]["seq"].to_string();
    let out = stack.mlc(&["dlq", "retry", &seq]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("still parked"));

    // The fix, then a retry of each letter: the commands are re-derived, not re-sent.
    std::fs::write(stack.mapping_path(), &good).unwrap();
    for l in &letters {
        let out = stack.mlc_ok(&["dlq", "retry", &l["seq"].to_string()]).await;
        assert!(out.contains("re-derived"), "{out}");
    }
    stack.settle().await;
    assert_eq!(stack.visma_employees().len(), 12);
    assert!(stack.mlc_ok(&["dlq", "list"]).await.contains("0 dead letter(s)"));
    assert!(stack.mlc_ok(&["reconcile", "--company", &company, "--quiet"]).await.contains("in sync: 12/12"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_connects_through_the_consent_page_and_ends_in_sync() {
    let nats = mlc_testkit::NatsServer::start();
    let out = tokio::process::Command::new(mlc_bin())
        // The default firm (150): two Gusto people share a name while Visma has one of them.
        .args(["demo", "--timeout-secs", "120"])
        .env("MLC_NATS_URL", nats.url())
        .env_remove("MLC_CONFIG")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run mlc demo");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("checks: 0 failed"), "{text}");
    assert!(
        text.contains("the gateway's callback page says \"connected: Fjord & Fjell Consulting AS ("),
        "{text}"
    );
    assert!(text.contains("mlc mapping preview --company"), "{text}");
    assert!(text.contains("Visma employees by office (active+inactive): Copenhagen:"), "{text}");
    assert!(text.contains("1 moved to the other person of the same name"), "{text}");
    assert!(!text.contains("possible duplicates"), "{text}");
    assert!(text.contains("in sync: 150/150"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_state_is_refused_and_its_code_never_exchanged() {
    let stack = Stack::start(StackOptions { employees: 2, subscribe: false, ..Default::default() }).await;
    let acme = stack.gusto.sim().seed_named_company("Acme AS", 2);
    let (mut child, url) = start_connect_for(&stack, "Acme AS", 1).await;
    let callback = approve(&stack, &url, &acme.company_uuid).await;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
    assert!(!status.success(), "the connect gives up after its timeout");
    let outstanding = stack.gusto.sim().outstanding_codes();
    let r = reqwest::get(&callback).await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("expired"));
    assert_eq!(stack.gusto.sim().outstanding_codes(), outstanding, "the code was not exchanged");
    assert!(!stack.mlc_ok(&["company", "list", "--json"]).await.contains(&acme.company_uuid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callback_works_under_the_shipped_nats_permissions() {
    // The gateway's NATS user may only request `oauth.callback.*`; the CLI is the admin.
    let stack =
        Stack::start(StackOptions { employees: 2, subscribe: false, nats_users: true, ..Default::default() })
            .await;
    let acme = stack.gusto.sim().seed_named_company("Acme AS", 2);
    let (mut child, url) = start_connect(&stack, "Acme AS").await;
    let callback = approve(&stack, &url, &acme.company_uuid).await;
    let r = reqwest::get(&callback).await.expect("callback");
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    assert_eq!(status, 200, "{body}{}", stack.logs());
    assert!(body.contains(&format!("connected: Acme AS ({})", acme.company_uuid)), "{body}");
    assert!(tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap().success());
}
