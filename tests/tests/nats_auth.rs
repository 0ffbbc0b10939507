//! Finding 2 of the 2026-12-01 security review, deployment side: the shipped
//! `ops/nats/auth.conf` (one NATS user per service) run by a real nats-server, with the
//! real services each logged in as its own user. Every service can do its job; none can
//! publish another's subjects; a service refused by the permissions says so in its log.

use mlc_bus::StreamKind;
use mlc_e2e::{mlc_bin, NatsUsers, Stack, StackOptions};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_permissions_let_each_service_do_its_job_and_no_more() {
    let stack = Stack::start(StackOptions { employees: 4, nats_users: true, ..Default::default() }).await;
    let users = stack.nats_users.clone().expect("users");

    // Their jobs: a change in Gusto reaches Visma through the gateway (webhook), the
    // projector and the writer, each logged in as itself.
    let e = stack.company.employee_uuids[1].clone();
    stack.gusto.sim().change_title(&e, "Partner").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while stack.visma_employees().iter().all(|r| r.employee_class != "EMPPART") {
        assert!(
            Instant::now() < deadline,
            "the change did not reach Visma{}\n{}",
            stack.logs(),
            stack.nats.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stack.settle().await;
    let log = stack.nats.log();
    // nats-server 2.9 logs a refusal as `Publish Violation` / `Subscription Violation`.
    assert!(!log.contains("Violation"), "a service needed more than auth.conf gives it:\n{log}");

    // No more: with the gateway's credentials, a Visma command is refused by NATS (and
    // so is an event with the writer's). Nothing reaches the streams.
    let commands = stack.stream_len(StreamKind::VismaCommands).await;
    let events = stack.stream_len(StreamKind::GustoEvents).await;
    for (user, subject) in [("gateway", "visma.commands.c1.e1"), ("writer", "gusto.events.c1.Employee")] {
        let client = mlc_bus::connect_now(&users.config(user, &stack.nats.url()), "intruder").await.unwrap();
        let js = async_nats::jetstream::new(client);
        let acked = tokio::time::timeout(Duration::from_secs(3), async {
            js.publish(subject.to_string(), "forged".into()).await?.await
        })
        .await;
        assert!(!matches!(acked, Ok(Ok(_))), "{user} could publish to {subject}");
    }
    // Nor can one service read the replies meant for another (its inbox prefix is its own).
    let gateway =
        mlc_bus::connect_now(&users.config("gateway", &stack.nats.url()), "intruder").await.unwrap();
    let _sub = gateway.subscribe("_INBOX.writer.>").await.unwrap();
    gateway.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = stack.nats.log();
    assert!(log.contains("Subscription Violation - User \"gateway\", Subject \"_INBOX.writer.>\""), "{log}");
    assert!(log.contains("Publish Violation - User \"gateway\", Subject \"visma.commands.c1.e1\""), "{log}");
    assert!(
        log.contains("Publish Violation - User \"writer\", Subject \"gusto.events.c1.Employee\""),
        "{log}"
    );
    assert_eq!(stack.stream_len(StreamKind::VismaCommands).await, commands);
    assert_eq!(stack.stream_len(StreamKind::GustoEvents).await, events);

    // A writer started with the gateway's credentials is refused, and its log says why.
    let log_path = stack.dir.path().join("misconfigured-writer.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let mut child = std::process::Command::new(mlc_bin())
        .arg("--config")
        .arg(&stack.config)
        .args(["run", "writer"])
        .envs(users.env("gateway"))
        .env("MLC_WRITER_METRICS_LISTEN", format!("127.0.0.1:{}", mlc_testkit::free_port()))
        .env_remove("MLC_CONFIG")
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.contains("lack of permission") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    let line = text.lines().find(|l| l.contains("lack of permission")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("\"level\":\"ERROR\"") && line.contains("gateway"), "{line}");
    assert!(!text.contains(users.password("gateway")), "the password must not be logged");
}

#[test]
fn the_shipped_file_refuses_to_start_without_its_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("auth.conf");
    std::fs::write(&conf, NatsUsers::SHIPPED).unwrap();
    let out = std::process::Command::new(mlc_testkit::nats_server_bin())
        .arg("-c")
        .arg(&conf)
        .arg("-t")
        .env_remove("NATS_GATEWAY_PASSWORD")
        .output()
        .unwrap();
    assert!(!out.status.success(), "nats-server accepted auth.conf without passwords");
}

/// Runs `mlc run writer` against `nats` with the login in `env`, and waits until its
/// `/readyz` says it is connected and consuming. Returns its log on failure.
async fn writer_becomes_ready(nats: &mlc_testkit::NatsServer, env: &[(&str, String)]) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let metrics = format!("127.0.0.1:{}", mlc_testkit::free_port());
    let config = dir.path().join("mlc.toml");
    std::fs::write(
        &config,
        format!(
            "[nats]\nurl = \"{}\"\n[store]\nurl = \"sqlite://{}\"\n[writer]\nmetrics_listen = \"{metrics}\"\n",
            nats.url(),
            dir.path().join("mlc.db").display()
        ),
    )
    .unwrap();
    let log_path = dir.path().join("writer.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = std::process::Command::new(mlc_bin())
        .arg("--config")
        .arg(&config)
        .args(["run", "writer"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("MLC_CONFIG")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let ready = loop {
        let ok =
            reqwest::get(format!("http://{metrics}/readyz")).await.is_ok_and(|r| r.status().is_success());
        let refused = std::fs::read_to_string(&log_path).unwrap_or_default().contains("NATS refused");
        if ok || refused || Instant::now() > deadline {
            break ok;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    if ready {
        Ok(())
    } else {
        Err(std::fs::read_to_string(&log_path).unwrap_or_default())
    }
}

/// The services themselves (not only `mlc_bus`) log in with an NKey over TLS with a
/// test CA, and with a creds file in operator mode; a wrong seed gets no readiness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_logs_in_with_an_nkey_over_tls_and_with_a_creds_file() {
    use mlc_testkit::auth::{nkey_user, Operator, TestCa};
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (seed, public) = nkey_user();
    let nats = mlc_testkit::NatsServer::start_in(
        dir,
        &format!("{}authorization {{\n  users = [ {{ nkey: {public} }} ]\n}}\n", ca.server_conf()),
        mlc_bus::NatsConfig::default(),
    );
    let tls = ("MLC_NATS_TLS_CA_FILE", ca.ca_file.display().to_string());
    writer_becomes_ready(&nats, &[("MLC_NATS_NKEY_SEED", seed.clone()), tls.clone()]).await.unwrap();
    let (stranger, _) = nkey_user();
    let log =
        writer_becomes_ready(&nats, &[("MLC_NATS_NKEY_SEED", stranger.clone()), tls]).await.unwrap_err();
    assert!(log.contains("NATS refused to authenticate this process"), "{log}");
    assert!(!log.contains(&stranger) && !log.contains(&seed), "a seed was logged");

    let op = Operator::new();
    let creds_dir = tempfile::tempdir().unwrap();
    let creds = op.creds(creds_dir.path(), "writer", &[], &[]);
    let nats = mlc_testkit::NatsServer::start_with(&op.server_conf(), mlc_bus::NatsConfig::default());
    writer_becomes_ready(&nats, &[("MLC_NATS_CREDS_FILE", creds.display().to_string())]).await.unwrap();
}
