//! The operator's commands against a real installation: backfill, reconcile with
//! repair, replay with and without `--dry-run`, dead-letter retry, status and explain.

use mlc_bus::StreamKind;
use mlc_e2e::{Stack, StackOptions};

fn employee_status_in_visma(stack: &Stack) -> usize {
    stack.visma_employees().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_syncs_a_company_and_reconcile_agrees() {
    let stack = Stack::start(StackOptions { employees: 25, subscribe: false, ..Default::default() }).await;
    let company = stack.company_uuid().to_string();
    // Before anything ran, reconcile sees 25 missing and exits non-zero.
    let out = stack.mlc(&["reconcile", "--company", &company, "--quiet"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("in sync: 0/25"));

    let out = stack.mlc_ok(&["backfill", "--company", &company]).await;
    assert!(out.contains("25 employees queued"), "{out}");
    stack.settle().await;
    assert_eq!(employee_status_in_visma(&stack), 25);
    let out = stack.mlc_ok(&["reconcile", "--company", &company]).await;
    assert!(out.contains("in sync: 25/25"), "{out}");

    // A second backfill changes nothing in Visma.
    let writes_before = stack.visma.write_counts();
    stack.mlc_ok(&["backfill", "--company", &company]).await;
    stack.settle().await;
    assert_eq!(stack.visma.write_counts(), writes_before, "a repeated backfill writes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_webhook_is_found_by_reconcile_and_repaired() {
    let stack = Stack::start(StackOptions { employees: 15, ..Default::default() }).await;
    let company = stack.company_uuid().to_string();
    stack.mlc_ok(&["backfill", "--company", &company]).await;
    stack.settle().await;
    assert!(stack.mlc_ok(&["reconcile", "--company", &company, "--quiet"]).await.contains("in sync: 15/15"));

    // Gusto loses the next deliveries: a title change that moves the employee class.
    let sim = stack.gusto.sim();
    let e = stack.company.employee_uuids[0].clone();
    let delivered_before = sim.deliveries().len();
    sim.drop_next_webhooks(10);
    sim.change_title(&e, "Partner").unwrap();
    stack.settle().await;
    let out = stack.mlc(&["reconcile", "--company", &company, "--quiet"]).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(3), "drift must fail the command: {text}");
    assert!(text.contains("drift") && text.contains("employee_class"), "{text}");
    assert!(text.contains("in sync: 14/15"), "{text}");
    assert!(sim.deliveries().len() >= delivered_before);

    let out = stack.mlc_ok(&["reconcile", "--company", &company, "--repair", "--quiet"]).await;
    assert!(out.contains("repairs emitted: 1"), "{out}");
    stack.settle().await;
    let out = stack.mlc_ok(&["reconcile", "--company", &company, "--quiet"]).await;
    assert!(out.contains("in sync: 15/15"), "{out}");
    // The repair is on record: a repair means a webhook was missed.
    let explain = stack.mlc_ok(&["explain", "--employee", &e, "--json"]).await;
    assert!(explain.contains("reconcile.repair"), "{explain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_after_a_mapping_change_with_and_without_dry_run() {
    let mut seed = sim_visma::nordic_seed();
    seed.departments
        .push(sim_visma::SeedDepartment { id: "TECH".into(), description: Some("Technology".into()) });
    let stack = Stack::start(StackOptions {
        employees: 30,
        visma_seed: seed,
        subscribe: false,
        ..Default::default()
    })
    .await;
    let company = stack.company_uuid().to_string();
    stack.mlc_ok(&["backfill", "--company", &company]).await;
    stack.settle().await;
    let engineers = stack.visma_employees().iter().filter(|e| e.department == "ENG").count();
    assert!(engineers > 0 && engineers < 30);

    // A plain replay emits nothing.
    let out = stack.mlc_ok(&["replay", "employee-state", "--from-seq", "1"]).await;
    assert!(out.contains("emitted 0 command(s)"), "{out}");

    // The finance team renames the Engineering department in Visma: the mapping follows.
    let mapping = std::fs::read_to_string(stack.mapping_path()).unwrap();
    std::fs::write(
        stack.mapping_path(),
        mapping.replace(r#""Engineering" = "ENG""#, r#""Engineering" = "TECH""#),
    )
    .unwrap();
    let writes_before = stack.visma.write_counts();
    let out = stack.mlc_ok(&["replay", "employee-state", "--from-seq", "1", "--dry-run"]).await;
    assert!(out.contains(&format!("would emit {engineers} command(s)")), "{out}");
    assert!(out.contains("- department_id: ENG") && out.contains("+ department_id: TECH"), "{out}");
    stack.settle().await;
    assert_eq!(stack.visma.write_counts(), writes_before, "a dry run changes nothing");

    let out = stack.mlc_ok(&["replay", "employee-state", "--from-seq", "1"]).await;
    assert!(out.contains(&format!("emitted {engineers} command(s)")), "{out}");
    stack.settle().await;
    let in_visma = stack.visma_employees();
    assert_eq!(in_visma.iter().filter(|e| e.department == "TECH").count(), engineers);
    assert_eq!(in_visma.iter().filter(|e| e.department == "ENG").count(), 0);
    assert!(stack.mlc_ok(&["reconcile", "--company", &company, "--quiet"]).await.contains("in sync: 30/30"));

    // Re-delivering the command stream makes no Visma write: nothing changed.
    let writes_before = stack.visma.write_counts();
    stack.mlc_ok(&["replay", "visma-commands", "--from-seq", "1"]).await;
    stack.settle().await;
    assert_eq!(stack.visma.write_counts(), writes_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_retried_after_the_fix() {
    // Visma lacks the HR department the mapping sends People to.
    let mut seed = sim_visma::nordic_seed();
    seed.departments.retain(|d| d.id != "HR");
    let stack = Stack::start(StackOptions {
        employees: 40,
        visma_seed: seed,
        subscribe: false,
        ..Default::default()
    })
    .await;
    let company = stack.company_uuid().to_string();
    stack.mlc_ok(&["backfill", "--company", &company]).await;
    stack.settle().await;
    let listed = stack.mlc_ok(&["dlq", "list", "--json"]).await;
    let letters: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    assert!(!letters.is_empty(), "the People department's employees fail validation");
    assert!(letters.iter().all(|l| l["stage"] == "writer"), "{listed}");
    assert!(letters[0]["reason"].as_str().unwrap().contains("HR"), "Visma's message is kept: {listed}");
    let status = stack.mlc_ok(&["status"]).await;
    assert!(status.contains(&format!("dead letters  {}", letters.len())), "{status}");
    let out = stack.mlc(&["reconcile", "--company", &company, "--quiet"]).await;
    assert_eq!(out.status.code(), Some(3));

    // The finance team creates the department; the operator retries the letters.
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
    for l in &letters {
        let seq = l["seq"].to_string();
        let out = stack.mlc_ok(&["dlq", "retry", &seq]).await;
        assert!(out.contains("re-delivered"), "{out}");
    }
    stack.settle().await;
    assert!(stack.mlc_ok(&["dlq", "list"]).await.contains("0 dead letter(s)"));
    assert!(stack.mlc_ok(&["reconcile", "--company", &company, "--quiet"]).await.contains("in sync: 40/40"));
    assert_eq!(stack.stream_len(StreamKind::DeadLetters).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_flow_through_real_processes_and_status_explains_them() {
    let mut stack = Stack::start(StackOptions { employees: 10, ..Default::default() }).await;
    let company = stack.company_uuid().to_string();
    stack.mlc_ok(&["backfill", "--company", &company]).await;
    stack.settle().await;
    let sim = stack.gusto.sim();
    let e = stack.company.employee_uuids[1].clone();
    sim.change_title(&e, "Partner").unwrap();
    sim.transfer(&e, &stack.company.location_uuids[4], None).unwrap();
    stack.settle().await;
    let rec = stack.visma_employees();
    let cd = {
        let out = stack.mlc_ok(&["explain", "--employee", &e, "--json"]).await;
        let explained: serde_json::Value = serde_json::from_str(&out).unwrap();
        let timeline = explained["timeline"].as_array().expect("a timeline").clone();
        assert!(timeline.iter().any(|t| t["what"] == "event.hydrated"), "{out}");
        assert!(timeline.iter().any(|t| t["what"] == "snapshot.appended"));
        assert!(timeline.iter().any(|t| t["what"] == "command.emitted"));
        assert!(timeline.iter().any(|t| t["what"] == "visma.applied"), "{out}");
        timeline
            .iter()
            .find_map(|t| t["detail"]["employee_cd"].as_str().filter(|s| !s.is_empty()).map(str::to_string))
            .expect("an employee number")
    };
    let visma_e = rec.iter().find(|r| r.employee_cd == cd).expect("employee in Visma");
    assert_eq!(visma_e.branch, "5", "moved to Reykjavik");
    assert_eq!(visma_e.employee_class, "EMPPART");

    // Kill the projector and the writer, change things, bring them back: nothing lost.
    stack.kill_service("projector");
    stack.kill_service("writer");
    for id in &stack.company.employee_uuids[2..6] {
        sim.change_title(id, "Managing Director").unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    stack.start_service("projector");
    stack.start_service("writer");
    stack.settle().await;
    assert!(stack.mlc_ok(&["reconcile", "--company", &company, "--quiet"]).await.contains("in sync: 10/10"));
    let status = stack.mlc_ok(&["status", "--json"]).await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["companies"][0]["grant"], "ok");
    assert!(status["outcomes"]["applied"].as_u64().unwrap() >= 10);
}

/// Issue 15 (c), end to end: a retired `gusto.api_version` gives one clear error in
/// `mlc check`, parked work with the reason in `mlc status`, and no retry storm at Gusto.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_gusto_api_version_is_one_clear_error_and_parked_work() {
    let mut stack = Stack::start(StackOptions { employees: 5, ..Default::default() }).await;
    let sim = stack.gusto.sim();
    let before = sim.version_refusals();
    stack.edit_config(|c| c.gusto.api_version = "2025-06-15".into());
    stack.kill_service("projector");
    stack.start_service("projector");
    stack.wait_ready("projector").await;
    sim.expire_tokens(None); // the next call needs the token endpoint, which refuses too
    sim.change_title(&stack.company.employee_uuids[0], "Partner").unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;

    let check = stack.mlc(&["check"]).await;
    let out = String::from_utf8_lossy(&check.stdout).to_string();
    assert!(!check.status.success(), "{out}");
    let refusals: Vec<&str> = out.lines().filter(|l| l.contains("2025-06-15")).collect();
    assert_eq!(refusals.len(), 1, "one clear line: {out}");
    assert!(refusals[0].contains("gusto.api_version"), "{out}");
    println!("mlc check: {}", refusals[0]);
    let status = stack.mlc_ok(&["status"]).await;
    assert!(status.contains("events parked: Gusto refused API version 2025-06-15"), "{status}");
    assert!(status.contains("gusto.api_version"), "{status}");
    let refused = sim.version_refusals() - before;
    assert!(refused <= 3, "{refused} refused requests reached Gusto");
    println!("refused requests at Gusto over 4 s (projector + check): {refused}");
    assert_eq!(stack.stream_len(mlc_bus::StreamKind::DeadLetters).await, 0);
}
