//! The command line as an operator meets it, through the real binary against a real
//! installation (nats-server, the simulators, the services as processes): read-only
//! commands create nothing, a closed pipe is a normal end, `--json` keeps its documented
//! shape, bulk dead-letter retry takes exactly what the filter names, and `backfill --wait`
//! follows 3,000 employees to the end with progress on a terminal only.

use mlc_e2e::{mlc_bin, Stack, StackBuilder, StackOptions};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Output;
use std::time::{Duration, Instant};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

async fn stream_names(stack: &Stack) -> BTreeSet<String> {
    use futures::TryStreamExt as _;
    stack.js.stream_names().try_collect().await.expect("stream names")
}

/// `mlc --config <stack> args` with extra environment.
async fn mlc_env(stack: &Stack, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = tokio::process::Command::new(mlc_bin());
    c.arg("--config").arg(&stack.config).args(args).env_remove("MLC_CONFIG");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().await.expect("run mlc")
}

/// Runs `mlc args | reader` in bash; returns mlc's own exit status and its stderr.
async fn piped(stack: &Stack, args: &[&str], reader: &str) -> (Option<i32>, String) {
    let script = format!(
        "\"$0\" --config \"$1\" \"${{@:2}}\" 2>\"$ERR\" | {reader} >/dev/null; exit ${{PIPESTATUS[0]}}"
    );
    let err = stack.dir.path().join(format!("stderr-{}", uuid::Uuid::new_v4().simple()));
    let out = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .arg(mlc_bin())
        .arg(&stack.config)
        .args(args)
        .env("ERR", &err)
        .env_remove("MLC_CONFIG")
        .output()
        .await
        .expect("bash");
    (out.status.code(), std::fs::read_to_string(&err).unwrap_or_default())
}

/// Visma without these departments: the employees of those departments dead-letter.
fn seed_without(departments: &[&str]) -> sim_visma::Seed {
    let mut seed = sim_visma::nordic_seed();
    seed.departments.retain(|d| !departments.contains(&d.id.as_str()));
    seed
}

async fn letters(stack: &Stack) -> Vec<Value> {
    serde_json::from_str(&stack.mlc_ok(&["dlq", "list", "--json"]).await).expect("dlq list --json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_commands_against_a_wrong_prefix_fail_and_create_nothing() {
    let stack = Stack::start(StackOptions { employees: 3, subscribe: false, ..Default::default() }).await;
    let company = stack.company_uuid().to_string();
    let employee = stack.company.employee_uuids[0].clone();
    // The services have made what they make at start (the projector its rate window).
    for s in ["gateway", "projector", "writer"] {
        stack.wait_ready(s).await;
    }
    let before = stream_names(&stack).await;
    assert!(before.len() >= 5, "{before:?}");
    let typo = [("MLC_STREAM_PREFIX", "typo")];
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["explain", "--employee", &employee],
        vec!["dlq", "list"],
        vec!["dlq", "retry", "--all", "--dry-run"],
        vec!["replay", "employee-state", "--from-seq", "1", "--dry-run"],
        vec!["reconcile", "--company", &company],
    ] {
        let out = mlc_env(&stack, &typo, &args).await;
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "mlc {args:?}: a configuration error: {err}");
        assert!(err.contains("`typo`"), "names the prefix: {err}");
        assert!(err.contains(&format!("`{}`", stack.prefix)), "names the prefix that exists: {err}");
        assert!(err.contains("nothing was created"), "{err}");
        assert!(out.stdout.is_empty(), "no healthy-looking report: {}", text(&out.stdout));
    }
    assert_eq!(stream_names(&stack).await, before, "no stream was created");
    println!(
        "mlc status with MLC_STREAM_PREFIX=typo: {}",
        text(&mlc_env(&stack, &typo, &["status"]).await.stderr)
    );

    // On the right prefix it reads, and still creates nothing.
    let status = stack.mlc_ok(&["status"]).await;
    assert!(status.contains("streams") && status.contains("first seq"), "{status}");
    assert_eq!(stream_names(&stack).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_piped_into_head_ends_without_a_panic() {
    let stack = Stack::start(StackOptions {
        employees: 40,
        visma_seed: seed_without(&["HR"]),
        subscribe: false,
        ..Default::default()
    })
    .await;
    let company = stack.company_uuid().to_string();
    let employee = stack.company.employee_uuids[0].clone();
    stack.mlc_ok(&["backfill", "--company", &company]).await;
    stack.settle().await;
    let seq = letters(&stack).await.first().expect("a dead letter")["seq"].to_string();
    let review = stack.dir.path().join("review.csv");
    let review = review.to_str().unwrap();
    let commands: Vec<Vec<&str>> = vec![
        vec!["status"],
        vec!["status", "--json"],
        vec!["explain", "--employee", &employee],
        vec!["explain", "--employee", &employee, "--json"],
        vec!["dlq", "list"],
        vec!["dlq", "show", &seq],
        vec!["dlq", "retry", "--all", "--dry-run"],
        vec!["company", "list"],
        vec!["check"],
        vec!["replay", "employee-state", "--from-seq", "1", "--dry-run"],
        vec!["replay", "visma-commands", "--from-seq", "1", "--dry-run"],
        vec!["reconcile", "--company", &company],
        vec!["mapping", "preview", "--company", &company, "--all"],
        vec!["match", "--company", &company, "--out", review],
        vec!["config", "print"],
        vec!["config", "env"],
        vec!["docs"],
        vec!["man"],
        vec!["completions", "zsh"],
        vec!["--help"],
    ];
    for args in &commands {
        // What the command exits with when its reader keeps reading.
        let whole = stack.mlc(args).await;
        for reader in ["head -1", "true"] {
            let (code, err) = piped(&stack, args, reader).await;
            assert!(
                !err.contains("panicked") && code != Some(101),
                "mlc {args:?} | {reader}: {code:?} {err}"
            );
            assert_eq!(
                code,
                whole.status.code(),
                "mlc {args:?} | {reader}: its own status, not the pipe's: {err}"
            );
        }
    }
}

/// The ```json example under `### <heading>` in docs/CLI.md.
fn documented(doc: &str, heading: &str) -> Value {
    let start =
        doc.find(&format!("### {heading}\n")).unwrap_or_else(|| panic!("docs/CLI.md has no `### {heading}`"));
    let rest = &doc[start..];
    let open = rest.find("```json\n").expect("a json block") + "```json\n".len();
    let close = rest[open..].find("```").expect("the block's end") + open;
    serde_json::from_str(&rest[open..close])
        .unwrap_or_else(|e| panic!("{heading}: the example is not JSON: {e}"))
}

/// Same keys at every level (objects), each element like the example's first (arrays),
/// same scalar kinds; `null` on either side matches anything; keys in `opaque` are not
/// compared below themselves.
fn same_shape(doc: &Value, real: &Value, path: &str, opaque: &[&str], gaps: &mut Vec<String>) {
    match (doc, real) {
        (Value::Null, _) | (_, Value::Null) => {}
        (Value::Object(d), Value::Object(r)) => {
            for k in d.keys().filter(|k| !r.contains_key(*k)) {
                gaps.push(format!("{path}.{k}: documented, not in the output"));
            }
            for k in r.keys().filter(|k| !d.contains_key(*k)) {
                gaps.push(format!("{path}.{k}: in the output, not documented"));
            }
            for (k, dv) in d {
                if let (Some(rv), false) = (r.get(k), opaque.contains(&k.as_str())) {
                    same_shape(dv, rv, &format!("{path}.{k}"), opaque, gaps);
                }
            }
        }
        (Value::Array(d), Value::Array(r)) => {
            if let Some(d0) = d.first() {
                for (i, rv) in r.iter().enumerate() {
                    same_shape(d0, rv, &format!("{path}[{i}]"), opaque, gaps);
                }
            }
        }
        (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_)) => {}
        (d, r) => gaps.push(format!("{path}: documented {d}, got {r}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_of_each_command_parses_and_matches_its_documented_shape() {
    let doc =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/CLI.md"))
            .expect("docs/CLI.md");
    let stack = Stack::start(StackOptions {
        employees: 20,
        visma_seed: seed_without(&["HR"]),
        subscribe: false,
        ..Default::default()
    })
    .await;
    let company = stack.company_uuid().to_string();
    let employee = stack.company.employee_uuids[0].clone();
    let backfill = stack.mlc_ok(&["backfill", "--company", &company, "--json"]).await;
    stack.settle().await;
    let seq = letters(&stack).await.first().expect("a dead letter")["seq"].to_string();
    let review = stack.dir.path().join("review.csv");
    let cases: Vec<(&str, Vec<&str>, &[&str])> = vec![
        ("mlc status --json", vec!["status"], &["outcomes"]),
        ("mlc explain --json", vec!["explain", "--employee", &employee], &["detail"]),
        ("mlc dlq list --json", vec!["dlq", "list"], &[]),
        ("mlc dlq show --json", vec!["dlq", "show", &seq], &[]),
        ("mlc dlq retry --json", vec!["dlq", "retry", "--stage", "writer", "--dry-run"], &[]),
        ("mlc replay --json", vec!["replay", "employee-state", "--from-seq", "1", "--dry-run"], &[]),
        ("mlc check --json", vec!["check"], &[]),
        ("mlc company list --json", vec!["company", "list"], &[]),
        ("mlc reconcile --json", vec!["reconcile", "--company", &company], &[]),
        (
            "mlc match --json",
            vec!["match", "--company", &company, "--out", review.to_str().unwrap()],
            &["rows"],
        ),
    ];
    let mut gaps = Vec::new();
    let check = |heading: &str, out: &str, opaque: &[&str], gaps: &mut Vec<String>| {
        let real: Value = serde_json::from_str(out)
            .unwrap_or_else(|e| panic!("{heading}: not one JSON document ({e}): {out}"));
        same_shape(&documented(&doc, heading), &real, heading, opaque, gaps);
        real
    };
    let b = check("mlc backfill --json", &backfill, &[], &mut gaps);
    assert_eq!(b["queued"], 20, "{backfill}");
    for (heading, mut args, opaque) in cases {
        args.push("--json");
        let out = stack.mlc(&args).await;
        // reconcile exits 3 on drift (the HR people), check 1 on its warnings' failures: the
        // document is printed all the same.
        assert!(!out.stdout.is_empty(), "{heading}: {}", text(&out.stderr));
        let real = check(heading, &text(&out.stdout), opaque, &mut gaps);
        if heading == "mlc status --json" {
            assert_eq!(real["schema"], 1);
            assert_eq!(real["companies"][0]["grant"], "ok");
            assert!(real["streams"].as_array().unwrap().len() == 5);
        }
    }
    assert!(gaps.is_empty(), "the output differs from docs/CLI.md:\n{}", gaps.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_retry_with_a_filter_retries_exactly_the_matching_letters() {
    let stack = Stack::start(StackOptions {
        employees: 60,
        visma_seed: seed_without(&["HR", "FIN"]),
        subscribe: false,
        ..Default::default()
    })
    .await;
    let company = stack.company_uuid().to_string();
    stack.mlc_ok(&["backfill", "--company", &company]).await;
    stack.settle().await;
    let all = letters(&stack).await;
    let seqs = |pred: &dyn Fn(&str) -> bool| -> BTreeSet<u64> {
        all.iter()
            .filter(|l| pred(l["reason"].as_str().unwrap()))
            .map(|l| l["seq"].as_u64().unwrap())
            .collect()
    };
    let hr = seqs(&|r| r.contains("HR"));
    let fin = seqs(&|r| r.contains("FIN"));
    assert!(!hr.is_empty() && !fin.is_empty(), "letters of both departments: {all:?}");
    assert!(hr.is_disjoint(&fin) && hr.len() + fin.len() == all.len(), "{all:?}");

    // The department is created in Visma; the FIN one is not.
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

    // A count first: the dry run names exactly the HR letters and changes nothing.
    let dry: Value = serde_json::from_str(
        &stack.mlc_ok(&["dlq", "retry", "--filter", "reason=HR", "--dry-run", "--json"]).await,
    )
    .unwrap();
    let named: BTreeSet<u64> =
        dry["results"].as_array().unwrap().iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(named, hr, "{dry}");
    assert_eq!(dry["matched"].as_u64(), Some(hr.len() as u64));
    let text_dry = stack.mlc_ok(&["dlq", "retry", "--reason", "hr", "--stage", "writer", "--dry-run"]).await;
    assert!(text_dry.starts_with(&format!("{} letter(s) match", hr.len())), "{text_dry}");
    assert_eq!(letters(&stack).await.len(), all.len(), "a dry run retries nothing");

    let done: Value =
        serde_json::from_str(&stack.mlc_ok(&["dlq", "retry", "--filter", "reason=HR", "--json"]).await)
            .unwrap();
    assert_eq!(done["done"].as_u64(), Some(hr.len() as u64), "{done}");
    assert_eq!(done["failed"].as_u64(), Some(0), "{done}");
    stack.settle().await;
    let left: BTreeSet<u64> = letters(&stack).await.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(left, fin, "exactly the FIN letters are left, untouched");
    // The retried people are in Visma now; only the FIN ones are missing.
    let out = stack.mlc(&["reconcile", "--company", &company, "--quiet"]).await;
    let report = text(&out.stdout);
    assert!(report.contains(&format!("in sync: {}/60", 60 - fin.len())), "{report}");
    println!(
        "dlq retry --filter reason=HR: {} of {} letters retried, {} left",
        hr.len(),
        all.len(),
        left.len()
    );
}

/// Runs `command` under a pseudo-terminal (util-linux `script`); returns its exit status
/// and everything the terminal showed.
async fn under_pty(command: &str) -> (Option<i32>, String) {
    let out = tokio::process::Command::new("script")
        .args(["-qefc", command, "/dev/null"])
        .env("COLUMNS", "120")
        .env("LINES", "40")
        .env_remove("MLC_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("script(1) from util-linux");
    (out.status.code(), text(&out.stdout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_waits_for_3000_employees_with_progress_on_a_terminal_only() {
    let n = 3000;
    // Gusto's 200 requests per 60 s, compressed tenfold (simulator and connector alike).
    let stack = StackBuilder::one(n, sim_visma::nordic_seed())
        .gusto(sim_gusto::SimConfig { rate_window: Duration::from_secs(6), ..Default::default() })
        .configure(|c| c.gusto.rate_window_ms = 6_000)
        .subscribe(false)
        .start()
        .await;
    let company = stack.company_uuid().to_string();
    let command = format!(
        "'{}' --config '{}' backfill --company {company}",
        mlc_bin().display(),
        stack.config.display()
    );
    let started = Instant::now();
    let (code, screen) = under_pty(&command).await;
    let took = started.elapsed();
    assert_eq!(code, Some(0), "{screen}");
    // The summary once all are applied: the command waited (the default on a terminal).
    let summary =
        screen.lines().find(|l| l.contains("done in")).unwrap_or_else(|| panic!("no summary: {screen}"));
    assert!(summary.contains(&format!("created {n},")), "{summary}");
    assert!(summary.contains("dead-lettered 0"), "{summary}");
    assert_eq!(stack.visma_employees().len(), n, "every employee is in Visma when the command ends");
    assert_eq!(stack.in_flight().await, 0);
    // Progress was drawn on the terminal.
    assert!(screen.contains("hydrated") && screen.contains("in Visma") && screen.contains("[="), "{screen}");
    println!("backfill --wait of {n} under a pty: {:.1} s; {summary}", took.as_secs_f64());

    // With --json, on the same terminal: one document and no progress at all.
    let (code, screen) = under_pty(&format!("{command} --wait --json")).await;
    assert_eq!(code, Some(0), "{screen}");
    let doc: Value =
        serde_json::from_str(screen.trim()).unwrap_or_else(|e| panic!("not only JSON ({e}): {screen}"));
    assert!(!screen.contains("hydrated ["), "{screen}");
    assert_eq!(doc["queued"], n);
    let s = &doc["summary"];
    assert_eq!(s["unchanged"], n, "a second backfill changes nothing: {doc}");
    assert_eq!(s["created"], 0);
}
