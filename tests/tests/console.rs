//! The operator console in a real browser: Debian's Chromium, headless, driven through
//! chromedriver (WebDriver), against a real installation (`mlc run gateway|projector|
//! writer|console` as processes). `ops/test.sh` installs Chromium (`ensure_chromium`).
//!
//! Screenshots of every page land in `target/console/` (docs/CONSOLE.md shows them).

use fantoccini::{Client, Locator};
use mlc_e2e::{Stack, StackBuilder, StackOptions};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// chromedriver and a headless Chromium session; both end with the test.
struct Browser {
    client: Client,
    driver: mlc_testkit::Tethered,
}

impl Browser {
    async fn start() -> Browser {
        let bin = std::env::var("MLC_TEST_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = mlc_testkit::free_port();
        let driver = mlc_testkit::Tethered::spawn(
            Command::new(&bin).arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()),
        )
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {bin} ({e}): install Debian's chromium and chromium-driver (ops/test.sh does)"
            )
        });
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": std::env::var("MLC_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": ["--headless", "--no-sandbox", "--disable-background-networking",
                         "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match fantoccini::ClientBuilder::new(connector).capabilities(caps.clone()).connect(&url).await {
                Ok(c) => break c,
                Err(e) if Instant::now() > deadline => panic!("no browser session from {bin}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        Browser { client, driver }
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Clicks what submits a form and waits until the next page has loaded (the old
    /// document's root went stale and the new one is complete).
    async fn submit(&self, css: &str) {
        let old = self.client.find(Locator::Css("html")).await.unwrap();
        self.click(css).await;
        let deadline = Instant::now() + Duration::from_secs(15);
        while old.tag_name().await.is_ok() {
            assert!(Instant::now() < deadline, "{css} did not lead to a new page");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        while self.client.execute("return document.readyState", vec![]).await.ok()
            != Some(serde_json::json!("complete"))
        {
            assert!(Instant::now() < deadline, "the page after {css} did not load");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    /// Waits (without reloading) until `css` matches at least `n` elements.
    async fn wait_count(&self, css: &str, n: usize, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let c = self.count(css).await;
            if c >= n || Instant::now() > deadline {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn screenshot(&self, name: &str) {
        let dir = screenshots();
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    async fn close(self) {
        let _ = self.client.clone().close().await;
        // Dropping the driver kills its process group: chromedriver and its Chromium.
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

fn screenshots() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("console")
}

/// Starts `mlc run console` on `listen` and waits until it answers.
async fn start_console(stack: &mut Stack, listen: &str) -> String {
    stack.edit_config(|c| c.console.listen = listen.to_string());
    stack.start_service("console");
    let port = listen.rsplit(':').next().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{url}/console.css")).await.is_err() {
        assert!(Instant::now() < deadline, "the console did not come up:\n{}", console_log(stack));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    url
}

fn console_log(stack: &Stack) -> String {
    std::fs::read_to_string(stack.dir.path().join("console.log")).unwrap_or_default()
}

async fn company_paused(stack: &Stack) -> bool {
    let out = stack.mlc_ok(&["company", "list", "--json"]).await;
    let list: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    list[0]["paused"].as_bool().unwrap()
}

async fn audit_kinds(stack: &Stack) -> Vec<(String, String)> {
    let store = stack.store().await;
    let rows = store.audit(&mlc_store::AuditQuery { limit: 100_000, ..Default::default() }).await.unwrap();
    rows.into_iter()
        .filter(|r| r.kind.starts_with("console."))
        .map(|r| (r.kind, r.detail["by"].as_str().unwrap_or_default().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_retried_pause_resumes_and_the_employee_page_is_live() {
    // Visma lacks the HR department the mapping sends People to: their writes dead-letter.
    let mut seed = sim_visma::nordic_seed();
    seed.departments.retain(|d| d.id != "HR");
    let mut stack =
        Stack::start(StackOptions { employees: 20, visma_seed: seed, ..Default::default() }).await;
    let company = stack.company_uuid().to_string();
    let url = start_console(&mut stack, &format!("127.0.0.1:{}", mlc_testkit::free_port())).await;
    stack.mlc_ok(&["backfill", "--company", &company]).await;
    stack.settle().await;
    let letters: Vec<serde_json::Value> =
        serde_json::from_str(&stack.mlc_ok(&["dlq", "list", "--json"]).await).unwrap();
    assert!(!letters.is_empty(), "the People department's employees dead-letter");
    let in_visma_before = stack.visma_employees().len();
    let b = Browser::start().await;

    // The overview says the company needs action, and why.
    b.client.goto(&url).await.unwrap();
    let row = format!("#companies tr[data-company='{company}']");
    assert_eq!(
        b.count(&format!("{row}[data-state=attention]")).await,
        1,
        "{}",
        b.client.source().await.unwrap()
    );
    assert!(b.text(&format!("{row} ul.why")).await.contains(&format!("{} dead letter(s)", letters.len())));

    // Dead letters: the list, filtered by stage; select all, dry run with the count, retry.
    b.client.goto(&format!("{url}/dead-letters?company={company}&stage=writer")).await.unwrap();
    assert_eq!(
        b.count("#dead-letters tbody tr").await,
        letters.len(),
        "{}",
        b.client.source().await.unwrap()
    );
    b.screenshot("dead-letters").await;
    stack
        .visma
        .seed(
            sim_visma::DEFAULT_TENANT,
            &sim_visma::Seed {
                departments: vec![sim_visma::SeedDepartment {
                    id: "HR".into(),
                    description: Some("People".into()),
                }],
                ..Default::default()
            },
        )
        .unwrap();
    b.click("input[data-select-all]").await;
    b.submit("button[value=retry]").await;
    assert_eq!(b.text("#dry-run-count").await, letters.len().to_string(), "the dry run counts first");
    assert_eq!(
        stack.stream_len(mlc_bus::StreamKind::DeadLetters).await,
        letters.len() as u64,
        "a dry run changes nothing"
    );
    b.screenshot("dead-letters-dry-run").await;
    b.submit("#confirm").await;
    let result = b.text("#result").await;
    assert!(result.starts_with(&format!("{n} of {n} letter(s) retried", n = letters.len())), "{result}");
    stack.settle().await;
    assert_eq!(stack.stream_len(mlc_bus::StreamKind::DeadLetters).await, 0);
    assert_eq!(stack.visma_employees().len(), in_visma_before + letters.len(), "retried letters are applied");
    // Now the overview shows the company in sync, with its freshness.
    b.client.goto(&url).await.unwrap();
    assert_eq!(
        b.count(&format!("{row}[data-state=in-sync]")).await,
        1,
        "{}",
        b.client.source().await.unwrap()
    );
    assert_eq!(b.text(&format!("{row} .state")).await, "in sync");
    assert_eq!(b.count("svg.chart").await, 2, "freshness and outcomes charts");
    b.screenshot("overview").await;
    // The retried employee's page says so.
    let retried = letters[0]["subject"].as_str().unwrap().rsplit('.').next().unwrap().to_string();
    b.client.goto(&format!("{url}/employees/{retried}")).await.unwrap();
    assert!(
        b.count("#timeline li[data-kind='visma.applied']").await >= 1,
        "{}",
        b.client.source().await.unwrap()
    );
    assert!(b.count("#timeline li[data-kind='console.dlq_retry']").await >= 1);

    // Employee page, live: a title change made in Gusto appears once applied, no reload.
    let e = stack.company.employee_uuids.iter().find(|e| **e != retried).unwrap().clone();
    b.client.goto(&format!("{url}/employees/{e}")).await.unwrap();
    let applied = b.count("#timeline li[data-kind='visma.applied']").await;
    assert!(applied >= 1, "{}", b.client.source().await.unwrap());
    b.client.execute("window.__same_page = 1", vec![]).await.unwrap();
    let t0 = Instant::now();
    stack.gusto.sim().change_title(&e, "Partner").unwrap();
    let now =
        b.wait_count("#timeline li[data-kind='visma.applied']", applied + 1, Duration::from_secs(20)).await;
    assert_eq!(
        now,
        applied + 1,
        "the applied change appears within 20 s:\n{}",
        b.client.source().await.unwrap()
    );
    eprintln!("webhook to applied on the open page: {:?}", t0.elapsed());
    let same = b.client.execute("return window.__same_page === 1", vec![]).await.unwrap();
    assert_eq!(same, serde_json::json!(true), "the page was not reloaded");
    assert!(b.text("#timeline").await.contains("employee_class"), "the field diff shows");
    b.screenshot("employee").await;

    // Pause and resume from the company page.
    b.client.goto(&format!("{url}/companies/{company}")).await.unwrap();
    assert_eq!(b.text("#sync-state").await, "running");
    b.submit("form[action$='/pause'] button").await;
    assert_eq!(b.text("#sync-state").await, "paused");
    assert!(company_paused(&stack).await, "the store says paused");
    b.screenshot("company").await;
    b.submit("form[action$='/resume'] button").await;
    assert_eq!(b.text("#sync-state").await, "running");
    assert!(!company_paused(&stack).await);
    let actions = audit_kinds(&stack).await;
    for kind in ["console.dlq_retry", "console.pause", "console.resume"] {
        assert!(
            actions.iter().any(|(k, by)| k == kind && by == "local operator"),
            "{kind} audited: {actions:?}"
        );
    }
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_loopback_the_console_wants_the_token_and_refuses_forged_posts() {
    let mut stack = Stack::start(StackOptions { employees: 3, subscribe: false, ..Default::default() }).await;
    let company = stack.company_uuid().to_string();
    let port = mlc_testkit::free_port();
    let listen = format!("0.0.0.0:{port}");

    // Without a token a console reachable from elsewhere does not start, and says why.
    stack.edit_config(|c| c.console.listen = listen.clone());
    let out = tokio::time::timeout(Duration::from_secs(30), stack.mlc(&["run", "console"]))
        .await
        .expect("`mlc run console` without a token must exit");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("console.token"), "{stderr}");

    let token = "operator-token-0123456789";
    stack.edit_config(|c| c.console.token = Some(mlc_config::Secret::new(token)));
    let url = start_console(&mut stack, &listen).await;
    let http = reqwest::Client::new();
    let r = http.get(format!("{url}/")).send().await.unwrap();
    assert_eq!(r.status(), 401, "no token, no console");
    let r = http.get(format!("{url}/dead-letters")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http.get(format!("{url}/")).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // A post with the token but without the page's CSRF token changes nothing.
    let r = http
        .post(format!("{url}/companies/{company}/pause"))
        .bearer_auth(token)
        .form(&[("csrf", "0".repeat(64))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(!company_paused(&stack).await);

    // In the browser: the login page, then the console.
    let b = Browser::start().await;
    b.client.goto(&url).await.unwrap();
    b.screenshot("login").await;
    b.client.find(Locator::Css("input[name=token]")).await.unwrap().send_keys(token).await.unwrap();
    b.submit("form[action='/login'] button").await;
    b.client.goto(&format!("{url}/companies/{company}")).await.unwrap();
    assert_eq!(b.text("#sync-state").await, "running");

    // A page of another site (another port is another origin) posts a form to the console
    // in the logged-in browser: refused, the company keeps running.
    let evil = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let evil_addr = evil.local_addr().unwrap();
    let form = format!(
        "<!doctype html><form id=f method=post action=\"{url}/companies/{company}/pause\"><input name=csrf value=x></form><script>document.getElementById('f').submit()</script>"
    );
    let app =
        axum::Router::new().route("/", axum::routing::get(move || async move { axum::response::Html(form) }));
    tokio::spawn(async move { axum::serve(evil, app).await });
    b.client.goto(&format!("http://{evil_addr}/")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.client.current_url().await.unwrap().as_str().starts_with(&url) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = b.client.source().await.unwrap();
    assert!(page.contains("This form was refused"), "{page}");
    assert!(!company_paused(&stack).await, "a forged post pauses nothing");
    assert!(audit_kinds(&stack).await.is_empty(), "and records no action");
    b.close().await;
}

/// A Visma employee as the finance team typed them in before the connector.
fn visma_person(cd: &str, first: &str, last: &str, email: &str) -> serde_json::Value {
    let mut dto = visma::EmployeeCreateDto::new(cd, "ADMIN", "EMPSTD", "1", "MAIN", last, email);
    dto.contact.first_name = Some(visma::dto::v(first));
    serde_json::to_value(&dto).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_connect_row_approved_in_the_browser_becomes_a_link_and_deliveries_show_the_events() {
    let mut stack = Stack::start(StackOptions { employees: 6, subscribe: false, ..Default::default() }).await;
    let company = stack.company_uuid().to_string();
    // The company is connected with the review open; Visma already holds two of its people.
    stack.store().await.set_first_connect_applied(&company, false).await.unwrap();
    let (g0, g1) = (stack.company.employee_uuids[0].clone(), stack.company.employee_uuids[1].clone());
    let sim = stack.gusto.sim();
    for (g, first, last, email) in [
        (&g0, "Ingrid", "Solberg", "ingrid.solberg@fjordfjell.example"),
        (&g1, "Per", "Nilsen", "per.nilsen@fjordfjell.example"),
    ] {
        let patch = sim_gusto::EmployeePatch {
            first_name: Some(first.into()),
            last_name: Some(last.into()),
            email: Some(email.into()),
            work_email: Some(email.into()),
            ..Default::default()
        };
        sim.update_employee(g, patch).unwrap();
    }
    let seed = sim_visma::Seed {
        employees: vec![
            visma_person("E5001", "Ingrid", "Solberg", "ingrid.solberg@fjordfjell.example"),
            visma_person("E5002", "Per", "Nilsen", "per@oldmail.example"),
        ],
        ..Default::default()
    };
    stack.visma.seed(sim_visma::DEFAULT_TENANT, &seed).unwrap();
    let url = start_console(&mut stack, &format!("127.0.0.1:{}", mlc_testkit::free_port())).await;
    let b = Browser::start().await;

    b.client.goto(&format!("{url}/review?company={company}")).await.unwrap();
    let row = |g: &str, rest: &str| format!("#proposals tr[data-gusto='{g}']{rest}");
    assert_eq!(b.count(&row(&g0, "[data-suggestion=link]")).await, 1, "{}", b.client.source().await.unwrap());
    assert_eq!(
        b.count(&row(&g1, "[data-suggestion=review]")).await,
        1,
        "one criterion: the reviewer decides"
    );
    b.click(&row(&g1, " input[value=approve]")).await;
    b.screenshot("review").await;
    b.submit("#apply").await;
    assert_eq!(b.text("#dry-run-links").await, "2", "the link row and the approved review row");
    assert!(stack.store().await.links(&company).await.unwrap().is_empty(), "a dry run stores nothing");
    b.submit("#confirm").await;
    assert_eq!(
        b.count(&format!("#links a[data-gusto='{g1}']")).await,
        1,
        "{}",
        b.client.source().await.unwrap()
    );
    let store = stack.store().await;
    let link = store.link(&company, &g1).await.unwrap().expect("the approved row is a link");
    assert_eq!((link.employee_cd.as_str(), link.origin.as_str()), ("E5002", "matched"));
    assert!(store.company(&company).await.unwrap().unwrap().first_connect_applied);

    // The sync: the two linked people are updated, the other four created; no duplicates.
    stack.mlc_ok(&["backfill", "--company", &company]).await;
    stack.settle().await;
    assert_eq!(stack.visma_employees().len(), 6);
    b.client.goto(&format!("{url}/deliveries?company={company}")).await.unwrap();
    assert_eq!(b.count("#deliveries tbody tr[data-kind='event.hydrated']").await, 6);
    b.screenshot("deliveries").await;
    b.client.goto(&format!("{url}/deliveries?company={company}&fate=parked")).await.unwrap();
    assert_eq!(b.count("#deliveries tbody tr").await, 0);

    // Reconcile from the company page: a change Gusto made without a webhook (this
    // installation has no subscription) is drift; Repair fetches it again.
    let g2 = stack.company.employee_uuids[2].clone();
    stack.gusto.sim().change_title(&g2, "Partner").unwrap();
    b.client.goto(&format!("{url}/companies/{company}")).await.unwrap();
    b.submit("#reconcile").await;
    assert!(b.text("#in-sync").await.starts_with("In sync: 5/6"), "{}", b.client.source().await.unwrap());
    assert_eq!(b.count("#drift tr[data-state=drift]").await, 1);
    b.screenshot("reconcile").await;
    b.submit("#repair").await;
    assert!(b.text("#repaired").await.starts_with("1 repair(s) emitted"));
    stack.settle().await;
    b.client.goto(&format!("{url}/companies/{company}/reconcile")).await.unwrap();
    assert!(b.text("#in-sync").await.starts_with("In sync: 6/6"), "{}", b.client.source().await.unwrap());

    let actions = audit_kinds(&stack).await;
    assert!(
        actions.iter().any(|(k, by)| k == "console.first_connect_apply" && by == "local operator"),
        "{actions:?}"
    );
    assert!(actions.iter().any(|(k, _)| k == "console.reconcile_repair"), "{actions:?}");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_is_reauthorised_through_gusto_and_a_mapping_change_previewed_in_the_browser() {
    let mut stack = Stack::start(StackOptions { employees: 6, subscribe: false, ..Default::default() }).await;
    let company = stack.company_uuid().to_string();
    stack.mlc_ok(&["backfill", "--company", &company]).await;
    stack.settle().await;
    assert_eq!(stack.visma_employees().len(), 6);
    // Gusto's consent sends the admin's browser to the gateway's callback.
    let callback = format!("http://{}/oauth/callback", stack.gateway);
    stack.edit_config(|c| c.gusto.redirect_uri = callback.clone());
    let url = start_console(&mut stack, &format!("127.0.0.1:{}", mlc_testkit::free_port())).await;
    let store = stack.store().await;
    let co = store.company(&company).await.unwrap().unwrap();
    // Gusto stopped honouring the refresh token: the grant needs re-authorisation.
    store.set_grant_status(&co.grant_id, "needs_reauth", Some("invalid_grant")).await.unwrap();

    let b = Browser::start().await;
    b.client.goto(&url).await.unwrap();
    let row = format!("#companies tr[data-company='{company}']");
    assert_eq!(
        b.count(&format!("{row}[data-state=attention]")).await,
        1,
        "{}",
        b.client.source().await.unwrap()
    );
    assert!(b.text(&format!("{row} ul.why")).await.contains("needs re-authorisation"));
    b.submit(&format!("{row} form[action$='/connect'] button")).await;
    let authorize =
        b.client.find(Locator::Css("#authorize")).await.unwrap().attr("href").await.unwrap().unwrap();
    assert!(
        authorize.starts_with(&stack.gusto.base_url()) && authorize.contains("state="),
        "the link is Gusto's consent page: {authorize}"
    );
    b.screenshot("connect").await;
    // The admin opens Gusto's consent page, picks the company and presses Allow.
    b.click("#authorize").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while b.count("button[value=allow]").await == 0 {
        assert!(Instant::now() < deadline, "no consent page: {}", b.client.source().await.unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.client
        .find(Locator::Css(&format!("select[name=company_uuid] option[value='{company}']")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.submit("button[value=allow]").await;
    assert!(b.client.current_url().await.unwrap().as_str().starts_with(&callback));
    let said = b.text("body").await;
    assert!(said.contains(&format!("connected: {} ({company})", co.name)), "{said}");
    let grant =
        store.grant(&store.company(&company).await.unwrap().unwrap().grant_id).await.unwrap().unwrap();
    assert_eq!(grant.status, "active", "the new grant is stored");
    b.client.goto(&url).await.unwrap();
    assert_eq!(
        b.count(&format!("{row}[data-state=in-sync]")).await,
        1,
        "{}",
        b.client.source().await.unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !audit_kinds(&stack).await.iter().any(|(k, _)| k == "console.connected") {
        assert!(Instant::now() < deadline, "the outcome is audited: {:?}", audit_kinds(&stack).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(audit_kinds(&stack).await.iter().any(|(k, by)| k == "console.connect" && by == "local operator"));

    // The mapping: revision in use, then a change previewed; Visma is not written to.
    let visma_before = serde_json::to_string(&stack.visma_employees()).unwrap();
    b.client.goto(&format!("{url}/companies/{company}")).await.unwrap();
    b.submit("#mapping").await;
    let revision = b.text("#revision").await;
    assert!(!revision.is_empty());
    let current = std::fs::read_to_string(stack.mapping_path()).unwrap();
    set_value(&b, "textarea[name=mapping]", current.replace("[departments]", "[departmnets]")).await;
    b.submit("#preview").await;
    assert!(b.text("#preview-error").await.contains("departmnets"), "{}", b.client.source().await.unwrap());
    // Another default calendar: every record would be updated.
    let changed = current.replace("calendar = \"MAIN\"", "calendar = \"ALT\"");
    assert_ne!(changed, current);
    set_value(&b, "textarea[name=mapping]", changed.clone()).await;
    b.submit("#preview").await;
    let summary = b.text("#summary").await;
    assert!(summary.contains("0 would be created, 6 updated, 0 unchanged, 0 parked"), "{summary}");
    assert!(!summary.contains(&revision), "the edited text has another revision: {summary}");
    assert_eq!(b.count("#preview-rows tr[data-effect='would update']").await, 6);
    assert!(b.text("#preview-rows").await.contains("ALT"));
    b.screenshot("mapping-preview").await;
    // The CLI's `mapping preview` says the same of the same text.
    let file = stack.dir.path().join("changed.toml");
    std::fs::write(&file, &changed).unwrap();
    let cli = stack
        .mlc_ok(&["mapping", "preview", "--company", &company, "--all", "--mapping", file.to_str().unwrap()])
        .await;
    assert!(
        cli.trim_end().ends_with("0 would be created, 6 updated, 0 unchanged, 0 parked; nothing was written"),
        "{cli}"
    );
    assert_eq!(
        serde_json::to_string(&stack.visma_employees()).unwrap(),
        visma_before,
        "a preview writes nothing"
    );
    assert_eq!(std::fs::read_to_string(stack.mapping_path()).unwrap(), current, "nor changes the file");
    b.close().await;
}

/// Sets a form field's value as if typed (a whole mapping file would take long as keys).
async fn set_value(b: &Browser, css: &str, text: String) {
    b.client
        .execute("document.querySelector(arguments[0]).value = arguments[1]", vec![css.into(), text.into()])
        .await
        .unwrap();
}

/// Page weight (document, style sheet and script as transferred) and render time (the
/// browser's navigation start to the end of the load event) of five loads: the median for the
/// report, and the fastest for the verdict. The suite's other tests share the two cores, and
/// their work only ever adds to a load's time, so the fastest of five is the figure that says
/// what the page costs; the median says what an operator on a busy machine sees.
struct Measured {
    bytes: u64,
    first_byte: f64,
    load: f64,
    best_load: f64,
}

async fn measure(b: &Browser, url: &str) -> Measured {
    let mut runs = Vec::new();
    for _ in 0..5 {
        b.client.goto(url).await.unwrap();
        let v = b
            .client
            .execute(
                "const n = performance.getEntriesByType('navigation')[0];
                 const r = performance.getEntriesByType('resource').reduce((s, e) => s + (e.decodedBodySize || 0), 0);
                 return [n.decodedBodySize + r, n.responseStart - n.startTime, n.loadEventEnd - n.startTime];",
                vec![],
            )
            .await
            .unwrap();
        let f = |i: usize| v[i].as_f64().unwrap_or(f64::NAN);
        runs.push((f(0) as u64, f(1), f(2)));
    }
    runs.sort_by(|a, b| a.2.total_cmp(&b.2));
    let (bytes, first_byte, load) = runs[2];
    Measured { bytes, first_byte, load, best_load: runs[0].2 }
}

/// `MLC_TEST_CONSOLE_EMPLOYEES` (default 150; `MLC_FULL=1`: 10,000) people in sync, then every
/// page measured in the browser. Budgets: 200 KB per page, 200 ms to render at 150
/// people, 1 s at 10,000. Figures in docs/CONSOLE.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_weigh_under_200_kb_and_render_within_budget() {
    let full = std::env::var("MLC_FULL").is_ok_and(|v| v == "1");
    let n: usize = std::env::var("MLC_TEST_CONSOLE_EMPLOYEES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 10_000 } else { 150 });
    let budget_ms = if n <= 150 { 200.0 } else { 1000.0 };
    // Above 150 people the vendors' budgets would make the set-up take hours: Gusto's 200
    // requests per 60 s (compressed to 600 ms on both sides, the simulator and the client's
    // limiter, as the budget tests do), and Visma's 15,000 calls per hour per tenant and
    // client, which a first sync of N new people spends 2N of (a GET answering 404, then
    // the POST): above ~7,000 people it waits for Visma's next hour (compressed to 3.6 s).
    // What is measured (the pages over N people) is unchanged; the counting proxies
    // report the calls the set-up made.
    let mut builder = StackBuilder::one(n, sim_visma::nordic_seed()).subscribe(false);
    if n > 150 {
        let window = Duration::from_millis(600);
        builder = builder
            .gusto(sim_gusto::SimConfig { rate_window: window, ..Default::default() })
            .visma(sim_visma::SimConfig { rate_window: Duration::from_millis(3600), ..Default::default() })
            .configure(move |c| c.gusto.rate_window_ms = window.as_millis() as u64)
            .proxies(true);
    }
    let mut stack = builder.start().await;
    let company = stack.company_uuid().to_string();
    let url = start_console(&mut stack, &format!("127.0.0.1:{}", mlc_testkit::free_port())).await;
    let t0 = Instant::now();
    stack.mlc_ok(&["backfill", "--company", &company]).await;
    eprintln!("{n} employees queued by the backfill in {:?}", t0.elapsed());
    // `settle` allows 90 s; 10,000 people take longer to reach Visma.
    let deadline = Instant::now() + Duration::from_secs(1800);
    let mut report_at = Instant::now();
    while stack.visma_employees().len() < n || stack.in_flight().await > 0 {
        assert!(Instant::now() < deadline, "{n} employees not in Visma within 30 min{}", stack.logs());
        if report_at.elapsed() > Duration::from_secs(30) {
            report_at = Instant::now();
            eprintln!("{:?}: {} of {n} in Visma", t0.elapsed(), stack.visma_employees().len());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stack.settle().await;
    eprintln!("{n} employees backfilled and applied in {:?}", t0.elapsed());
    if let (Some(g), Some(v)) = (&stack.gusto_proxy, &stack.visma_proxy) {
        eprintln!("set-up calls: Gusto {:?}, Visma {:?} (by status)", g.counts(), v.counts());
    }
    assert_eq!(stack.visma_employees().len(), n);
    let e = stack.company.employee_uuids[n / 2].clone();
    let b = Browser::start().await;
    let mut report = String::new();
    // The console folds SYNC_OUTCOMES as they arrive: its first overview reads all of them,
    // every later one only what is new. The first is reported, the budget is for the rest.
    let t = Instant::now();
    b.client.goto(&url).await.unwrap();
    let line = format!("{n} employees  first overview after the console started: {:?}", t.elapsed());
    eprintln!("{line}");
    report.push_str(&line);
    report.push('\n');
    let mut over = Vec::new();
    for (name, path) in [
        ("overview", "/".to_string()),
        ("company", format!("/companies/{company}")),
        ("employee", format!("/employees/{e}")),
        ("deliveries", format!("/deliveries?company={company}")),
        ("dead letters", "/dead-letters".to_string()),
        ("first-connect review", format!("/review?company={company}")),
    ] {
        let Measured { bytes, first_byte, load, best_load } = measure(&b, &format!("{url}{path}")).await;
        let line = format!(
            "{n} employees  {name:<22} {:>7.1} KB  first byte {first_byte:>6.1} ms  loaded {load:>6.1} ms (fastest {best_load:>6.1} ms)",
            bytes as f64 / 1024.0
        );
        eprintln!("{line}");
        report.push_str(&line);
        report.push('\n');
        if bytes >= 200 * 1024 {
            over.push(format!("{name} weighs {bytes} B"));
        }
        if best_load >= budget_ms {
            over.push(format!(
                "{name}: the fastest of five loads took {best_load} ms (budget {budget_ms} ms)"
            ));
        }
    }
    let dir = screenshots();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("measure-{n}.txt")), report).unwrap();
    b.close().await;
    assert!(over.is_empty(), "over budget: {over:?}");
}
