//! The story `mlc demo` tells, the same whether it started everything itself or plays
//! against the compose sandbox: the firm, connect, subscribe, the first-connect review, the
//! initial sync, a day of changes, the reconciliation.

use super::{step, DemoArgs, FIRM, MAPPING_FILE};
use crate::cmd::{backfill, subscribe};
use crate::ctx::Ctx;
use crate::scenario::{self, ScenarioSpec, SeedIds};
use crate::{first_connect, reconcile};
use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the story plays: the connector's context and the simulators' admin APIs.
pub(super) struct Stage {
    pub(super) ctx: Ctx,
    http: reqwest::Client,
    gusto: String,
    visma: String,
    /// Key of visma.tenants, and the tenant id it names.
    tenant: String,
    tenant_id: String,
    mapping: PathBuf,
    webhook_url: String,
    /// The gateway's /oauth/callback as the admin's browser reaches it.
    callback_url: String,
    dir: PathBuf,
}

impl Stage {
    pub(super) fn new(
        ctx: Ctx,
        tenant: &str,
        mapping: PathBuf,
        webhook_url: String,
        dir: PathBuf,
    ) -> anyhow::Result<Stage> {
        let tenant_id = ctx
            .cfg
            .visma
            .tenants
            .get(tenant)
            .map(|t| t.tenant_id.clone())
            .with_context(|| format!("no Visma tenant {tenant:?} in the configuration"))?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Stage {
            gusto: ctx.cfg.gusto.base_url.trim_end_matches('/').to_string(),
            visma: ctx.cfg.visma.base_url.trim_end_matches('/').to_string(),
            ctx,
            http,
            tenant: tenant.to_string(),
            tenant_id,
            mapping,
            callback_url: webhook_url.replace("/webhooks/gusto", "/oauth/callback"),
            webhook_url,
            dir,
        })
    }

    async fn call(&self, method: reqwest::Method, url: String, body: Option<Value>) -> anyhow::Result<Value> {
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| format!("{method} {url}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{method} {url}: {status}: {text}");
        }
        Ok(if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text)? })
    }

    async fn gusto_admin(&self, method: reqwest::Method, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(method, format!("{}/admin/{path}", self.gusto), Some(body)).await
    }

    /// The company's employees as Gusto's API shows them.
    async fn gusto_employees(&self, company: &str) -> anyhow::Result<Vec<gusto::Employee>> {
        let state = self.call(reqwest::Method::GET, format!("{}/admin/state", self.gusto), None).await?;
        let mut out = Vec::new();
        for e in state["employees"].as_array().map(Vec::as_slice).unwrap_or_default() {
            if e["company_uuid"].as_str() == Some(company) {
                out.push(serde_json::from_value(e.clone()).context("an employee of the Gusto simulator")?);
            }
        }
        Ok(out)
    }

    async fn visma_seed(&self, seed: &sim_visma::Seed) -> anyhow::Result<()> {
        let url = format!("{}/admin/tenants/{}/seed", self.visma, self.tenant_id);
        self.call(reqwest::Method::POST, url, Some(serde_json::to_value(seed)?)).await.map(|_| ())
    }

    /// The tenant's employee records as the Visma simulator stores them.
    async fn visma_records(&self) -> anyhow::Result<Vec<Value>> {
        let url = format!("{}/admin/tenants/{}/employees", self.visma, self.tenant_id);
        Ok(self.call(reqwest::Method::GET, url, None).await?.as_array().cloned().unwrap_or_default())
    }

    /// What a Gusto admin does in the browser: open the authorize URL (the consent page),
    /// press Allow for `company`, follow the redirect to the gateway's callback. Returns the
    /// callback page's text.
    async fn consent(&self, authorize_url: &str, company: &str) -> anyhow::Result<String> {
        let page = self.http.get(authorize_url).send().await.context("GET the consent page")?;
        if !page.status().is_success() || !page.text().await?.contains("Allow") {
            bail!("the consent page at {authorize_url} shows no Allow button");
        }
        let mut form: Vec<(String, String)> = url_with(authorize_url)?.query_pairs().into_owned().collect();
        form.push(("company_uuid".into(), company.into()));
        form.push(("decision".into(), "allow".into()));
        let url = format!("{}/oauth/authorize", self.gusto);
        let resp = self.http.post(url).form(&form).send().await.context("POST /oauth/authorize (Allow)")?;
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .with_context(|| format!("Allow answered {} without a Location", resp.status()))?
            .to_string();
        let cb = self.http.get(&location).send().await.with_context(|| format!("GET {location}"))?;
        let ok = cb.status().is_success();
        let html = cb.text().await?;
        // The page's one paragraph.
        let text = html.split("<p>").nth(1).and_then(|p| p.split("</p>").next()).unwrap_or(&html).to_string();
        if !ok {
            bail!("the callback page says: {text}");
        }
        Ok(text.replace("&amp;", "&"))
    }
}

/// The scripted operator settles the review rows the matcher could not (namesakes): HR
/// knows which person a Visma record is, which no field in the data says. The operator
/// approves the row when its link is the true one; else rejects it and writes the record's
/// number into the row of the person HR named, so no second record is created for them.
/// Returns (approved as proposed, re-pointed).
fn resolve_with_hr(review: &Path, truth: &[scenario::Known]) -> anyhow::Result<(usize, usize)> {
    use crate::matching::{read_review, write_review, ReviewRow, Suggestion};
    let shown = review.display().to_string();
    let text = std::fs::read_to_string(review)?;
    let mut rows: Vec<ReviewRow> = read_review(&shown, &text)?.into_iter().map(|(_, r)| r).collect();
    let open: Vec<usize> = (0..rows.len())
        .filter(|&i| {
            let r = &rows[i];
            r.approve != "yes" && !r.visma_cd.is_empty() && r.suggestion == Suggestion::Review.as_str()
        })
        .collect();
    let (mut yes, mut moved) = (0, 0);
    for i in open {
        let cd = rows[i].visma_cd.clone();
        let Some(owner) = truth.iter().find(|k| k.visma_cd == cd).map(|k| k.gusto_uuid.clone()) else {
            rows[i].approve = "no".into();
            continue;
        };
        if owner == rows[i].gusto_uuid {
            rows[i].approve = "yes".into();
            yes += 1;
            continue;
        }
        rows[i].approve = "no".into();
        if let Some(j) = rows.iter().position(|r| r.gusto_uuid == owner && r.approve != "yes") {
            let (name, email) = (rows[i].visma_name.clone(), rows[i].visma_email.clone());
            let r = &mut rows[j];
            r.visma_cd = cd;
            r.visma_name = name;
            r.visma_email = email;
            r.approve = "yes".into();
            r.reason = "operator: HR confirmed this is the person of the Visma record".into();
            moved += 1;
        }
    }
    write_review(review, &rows)?;
    Ok((yes, moved))
}

fn url_with(s: &str) -> anyhow::Result<reqwest::Url> {
    reqwest::Url::parse(s).with_context(|| format!("not a URL: {s}"))
}

/// The shape of the hand-kept Visma company for a firm of `initial` people.
fn spec_for(initial: usize) -> ScenarioSpec {
    let existing = initial - (initial / 14).max(1);
    ScenarioSpec {
        existing,
        changed_email: (existing * 10 / 137).max(1),
        changed_surname: (existing * 5 / 137).max(1),
        changed_both: 1,
        strangers: 3,
    }
}

/// The whole story; true when it ends in sync with the strangers untouched.
pub(super) async fn story(stage: &Stage, args: &DemoArgs, started: Instant) -> anyhow::Result<bool> {
    use reqwest::Method;
    let ctx = &stage.ctx;

    // Gusto: the firm and its people.
    let firm: sim_gusto::CompanyInfo = serde_json::from_value(
        stage
            .gusto_admin(Method::POST, "companies", json!({"name": FIRM, "employees": args.employees - 3}))
            .await?,
    )?;
    let company = firm.company_uuid.clone();
    let people = stage.gusto_employees(&company).await?;
    step(started, format!("Gusto: {FIRM} with {} employees in 5 offices", people.len()));

    // Visma: the same firm, kept by hand.
    let spec = spec_for(people.len());
    let ids = SeedIds { department: "ADMIN", employee_class: "EMPSTD", branch: "1", calendar: "MAIN" };
    let story = scenario::pre_existing(&people, &spec, &ids);
    let mut seed = sim_visma::nordic_seed();
    seed.employees = story.visma_employees.clone();
    stage.visma_seed(&seed).await?;
    let before = stage.visma_records().await?;
    let strangers_before: BTreeMap<String, Value> = before
        .iter()
        .filter(|r| r["employeeCd"].as_str().is_some_and(|cd| story.strangers.iter().any(|s| s == cd)))
        .map(|r| (r["employeeCd"].as_str().unwrap_or_default().to_string(), r.clone()))
        .collect();
    step(
        started,
        format!(
            "Visma already holds {} employees, kept by hand: {} of the firm's people ({} with an old email, \
             {} with a surname typo, {} with both), and {} people Gusto does not know",
            before.len(),
            spec.existing,
            spec.changed_email,
            spec.changed_surname,
            spec.changed_both,
            story.strangers.len()
        ),
    );

    // The preflight, before anything is connected: the mapping's targets against Visma.
    let preflight = crate::cmd::check::collect(
        &ctx.cfg,
        &crate::cmd::check::CheckArgs {
            company: None,
            mapping: Some(stage.mapping.clone()),
            visma_tenant: Some(stage.tenant.clone()),
        },
        true,
    )
    .await?;
    step(
        started,
        format!(
            "mlc check --mapping {MAPPING_FILE} --visma-tenant {}: {}",
            stage.tenant,
            preflight.summary()
        ),
    );
    for l in preflight.lines.iter().filter(|l| l.status != crate::cmd::check::Status::Ok) {
        let tag = if l.status == crate::cmd::check::Status::Fail { "FAIL" } else { "warn" };
        outln!("         [{tag}] {}", l.check);
    }
    if preflight.failed() {
        bail!("the preflight failed; see `mlc check`");
    }

    // Connect the company through Gusto's consent page and the gateway's callback.
    let pending = crate::cmd::connect::begin(
        ctx.cfg.clone(),
        crate::cmd::connect::ConnectArgs {
            name: FIRM.into(),
            visma_tenant: stage.tenant.clone(),
            mapping: stage.mapping.clone(),
            redirect_uri: Some(stage.callback_url.clone()),
            timeout_secs: 60,
            skip_review: false,
            expect_company: None,
        },
    )
    .await?;
    let authorize_url = pending.authorize_url.clone();
    step(started, format!("mlc company connect: open {authorize_url}"));
    let waiting = tokio::spawn(pending.wait());
    let page = stage.consent(&authorize_url, &company).await?;
    let connected = waiting.await.context("the connect task")??;
    step(started, format!("Gusto admin pressed Allow; the gateway's callback page says \"{page}\""));
    if !connected.contains(&company) {
        bail!("connected the wrong company: {connected}");
    }
    let sub = subscribe::subscribe_with(
        &ctx.store,
        ctx.gusto().await?.as_ref(),
        &ctx.js,
        &ctx.topo,
        Some(&stage.webhook_url),
        None,
        30,
    )
    .await?;
    step(started, format!("webhook subscription {sub} verified through the gateway's handshake"));
    if !ctx.company(&company).await?.first_connect_applied {
        step(
            started,
            "first connect: awaiting review (the writer creates no Visma employee for the firm yet)",
        );
    }

    // The review: propose, read, approve the clear ones, apply.
    step(started, "mlc match: Gusto's employees against Visma's, two criteria per link:");
    let review = stage.dir.join(format!("match-{company}.csv"));
    outln!();
    let proposals = first_connect::propose(ctx, &company, &review, !args.full_table).await?;
    outln!();
    let (approved, confirmed) = first_connect::approve_links(&review)?;
    let c = first_connect::counts(&proposals);
    step(
        started,
        format!(
            "operator: approved the {approved} two-criteria links, confirmed {confirmed} of the {} review rows \
             after a closer look (no rival)",
            c[1].1
        ),
    );
    let (as_proposed, repointed) = resolve_with_hr(&review, &story.truth)?;
    if as_proposed + repointed > 0 {
        step(
            started,
            format!(
                "operator: asked HR about the namesakes the data cannot tell apart: {as_proposed} link(s) \
                 approved as proposed, {repointed} moved to the other person of the same name (no duplicate)"
            ),
        );
    }
    let applied = first_connect::apply(ctx, &review).await?;
    outln!();
    first_connect::print_applied(&applied);
    outln!();

    // What the first sync will do to one linked person, before anything is written.
    let preview = reconcile::compare_with(ctx, &company, None, None).await?;
    if let Some(r) = preview.rows.iter().find(|r| r.state == "drift") {
        step(
            started,
            format!(
                "mlc mapping preview --company {company} --employee {}: {} (Visma {}) would be updated:",
                r.employee_uuid, r.name, r.employee_cd
            ),
        );
        for (field, from, to) in &r.changes {
            outln!("         - {field}: {from}\n         + {field}: {to}");
        }
    }

    // The initial sync: links update the people Visma has, the rest are created.
    let queued = backfill::backfill(ctx, &company).await?;
    step(started, format!("initial sync: {queued} employees queued from Gusto's paged list"));
    converge(stage, &company, started, args.timeout_secs, "initial sync").await?;

    // A day at the firm, as Gusto would send it.
    step(started, "a day of changes, delivered as signed webhooks:");
    for line in play_day(stage, &firm).await? {
        outln!("         - {line}");
    }
    let report = converge(stage, &company, started, args.timeout_secs, "day of changes").await?;

    let records = stage.visma_records().await?;
    let branches: BTreeMap<String, String> = ctx
        .visma(&stage.tenant)?
        .list_branches()
        .await?
        .into_iter()
        .filter_map(|b| Some((b.number?, b.name.unwrap_or_default())))
        .collect();
    print_visma_summary(&records, &branches);
    let changed: Vec<&String> = strangers_before
        .iter()
        .filter(|(cd, was)| {
            records.iter().find(|r| r["employeeCd"].as_str() == Some(cd.as_str())) != Some(was)
        })
        .map(|(cd, _)| cd)
        .collect();
    if changed.is_empty() {
        step(
            started,
            format!("people only in Visma: {} untouched (same record, same version)", strangers_before.len()),
        );
    } else {
        step(started, format!("people only in Visma: CHANGED {changed:?}"));
    }
    step(started, "reconciliation of the simulators' data (Gusto's employees against Visma's records):");
    outln!();
    // Ends with the line `in sync: N/M`, computed from both simulators' data.
    reconcile::print_report(&report, !args.full_table);
    // Every Visma record no Gusto employee maps to must be one of the strangers; anything
    // else is a person Visma now holds twice.
    let extra: Vec<&String> = report
        .visma_only
        .iter()
        .filter(|v| !story.strangers.iter().any(|s| v.starts_with(s.as_str())))
        .collect();
    if !extra.is_empty() {
        step(started, format!("possible duplicates in Visma (records no Gusto employee maps to): {extra:?}"));
    }
    Ok(report.in_sync() && changed.is_empty() && extra.is_empty())
}

/// Waits until the pipeline is idle, then compares both systems; repeats until they
/// agree or time runs out. The comparison costs Gusto calls, so it runs only when idle.
async fn converge(
    stage: &Stage,
    company: &str,
    started: Instant,
    timeout_secs: u64,
    what: &str,
) -> anyhow::Result<reconcile::Report> {
    let ctx = &stage.ctx;
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    let mut last_line = String::new();
    let mut idle_polls = 0;
    loop {
        let busy = pipeline_busy(ctx).await?;
        let line = format!(
            "{what}: {} employees in Visma, {} messages in flight",
            stage.visma_records().await?.len(),
            busy
        );
        if line != last_line {
            step(started, &line);
            last_line = line;
        }
        idle_polls = if busy == 0 { idle_polls + 1 } else { 0 };
        if idle_polls >= 2 {
            let report = reconcile::compare(ctx, company).await?;
            if report.in_sync() || Instant::now() > deadline {
                step(started, format!("{what}: in sync {}/{}", report.in_sync_count(), report.rows.len()));
                return Ok(report);
            }
            idle_polls = 0;
        }
        if Instant::now() > deadline {
            return reconcile::compare(ctx, company).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Messages pending or in flight on the three consumers.
async fn pipeline_busy(ctx: &Ctx) -> anyhow::Result<u64> {
    Ok(mlc_bus::backlog(&ctx.js, &ctx.topo).await?)
}

/// Hires, title changes, a transfer, a termination, a rehire, a name change.
async fn play_day(stage: &Stage, firm: &sim_gusto::CompanyInfo) -> anyhow::Result<Vec<String>> {
    use reqwest::Method;
    let e = &firm.employee_uuids;
    let (oslo, stockholm, copenhagen, helsinki) =
        (&firm.location_uuids[0], &firm.location_uuids[1], &firm.location_uuids[2], &firm.location_uuids[3]);
    let dept = &firm.department_uuids;
    let mut log = Vec::new();
    for (first, last, title, d, loc, city) in [
        ("Sigrid", "Haugland", "Consultant", 0, oslo, "Oslo"),
        ("Elias", "Lindqvist", "Software Engineer", 1, stockholm, "Stockholm"),
        ("Freja", "Møller", "Account Executive", 3, copenhagen, "Copenhagen"),
    ] {
        let hire = sim_gusto::HireRequest {
            first_name: Some(first.into()),
            last_name: Some(last.into()),
            work_email: Some(format!("{}.{}@fjordfjell.example", first.to_lowercase(), last.to_lowercase())),
            title: Some(title.into()),
            department_uuid: Some(dept[d].clone()),
            location_uuid: Some(loc.clone()),
            ..Default::default()
        };
        let path = format!("companies/{}/employees", firm.company_uuid);
        stage.gusto_admin(Method::POST, &path, serde_json::to_value(&hire)?).await?;
        log.push(format!("hired {first} {last}, {title} in {city}"));
    }
    let emp = |i: usize, what: &str| format!("employees/{}/{what}", e[i]);
    for (i, title) in [(0, "Senior Consultant"), (1, "Partner"), (2, "Trainee")] {
        stage.gusto_admin(Method::POST, &emp(i, "title"), json!({ "title": title })).await?;
    }
    log.push("three title changes (one promotion to Partner)".into());
    stage.gusto_admin(Method::POST, &emp(3, "transfer"), json!({ "location_uuid": helsinki })).await?;
    log.push("one transfer to the Helsinki office".into());
    let patch = format!("employees/{}", e[4]);
    stage.gusto_admin(Method::PATCH, &patch, json!({ "last_name": "Aasen-Berg" })).await?;
    log.push("one surname change".into());
    stage.gusto_admin(Method::POST, &emp(5, "terminate"), json!({})).await?;
    log.push("one termination (effective today)".into());
    stage.gusto_admin(Method::POST, &emp(6, "terminate"), json!({})).await?;
    stage.gusto_admin(Method::POST, &emp(6, "rehire"), json!({})).await?;
    log.push("one termination and rehire the same day".into());
    Ok(log)
}

fn print_visma_summary(records: &[Value], branch_names: &BTreeMap<String, String>) {
    let mut by_branch: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for e in records {
        let number = e["branch"].as_str().unwrap_or("-");
        let office =
            branch_names.get(number).filter(|n| !n.is_empty()).cloned().unwrap_or_else(|| number.into());
        let entry = by_branch.entry(office).or_default();
        if e["status"].as_str() == Some("Active") {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }
    let line = by_branch.iter().map(|(b, (a, i))| format!("{b}: {a}+{i}")).collect::<Vec<_>>().join(", ");
    outln!("         Visma employees by office (active+inactive): {line}");
}
