//! Finding 2 of the 2026-12-01 security review: the connector must be able to log in to
//! a NATS that requires it. Every way `nats.*` offers (password, token, NKey, creds
//! file, TLS with a CA) against a real nats-server, through `mlc_bus::connect_now`, the
//! function every process connects with; each ends with a JetStream round trip.

use mlc_bus::{ensure_topology, NatsConfig, Topology};
use mlc_config::Secret;
use mlc_testkit::auth::{nkey_user, Operator, TestCa};
use mlc_testkit::NatsServer;

/// Proves the connection works end to end: the whole topology, created and read back.
async fn round_trip(cfg: &NatsConfig) {
    let client = mlc_bus::connect_now(cfg, "auth-test").await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let topo = Topology::new(&mlc_testkit::unique("a"), 1).unwrap();
    ensure_topology(&js, &topo).await.expect("topology over the authenticated connection");
}

fn with(url: &str, f: impl FnOnce(&mut NatsConfig)) -> NatsConfig {
    let mut c = NatsConfig::at(url);
    f(&mut c);
    c
}

#[tokio::test]
async fn password_and_nkey_users_authenticate_and_others_are_refused() {
    let (seed, public) = nkey_user();
    let server = NatsServer::start_with(
        &format!(
            "authorization {{\n  users = [\n    {{ user: svc, password: \"pw-1\" }}\n    {{ nkey: {public} }}\n  ]\n}}\n"
        ),
        NatsConfig::default(),
    );
    let url = server.url();
    round_trip(&with(&url, |c| {
        c.user = Some("svc".into());
        c.password = Some(Secret::new("pw-1"));
    }))
    .await;
    round_trip(&with(&url, |c| c.nkey_seed = Some(Secret::new(seed.clone())))).await;

    // The seed from a file, as k8s mounts it.
    let file = server.dir().join("user.nk");
    std::fs::write(&file, format!("{seed}\n")).unwrap();
    round_trip(&with(&url, |c| c.nkey_seed_file = Some(file.clone()))).await;

    // Anonymous, a wrong password and an unknown NKey are refused, and the error never
    // shows the password.
    assert!(mlc_bus::connect_now(&NatsConfig::at(&url), "t").await.is_err());
    let wrong = with(&url, |c| {
        c.user = Some("svc".into());
        c.password = Some(Secret::new("wrong-SECRET"));
    });
    let e = mlc_bus::connect_now(&wrong, "t").await.expect_err("refused").to_string();
    assert!(e.contains("authorization"), "{e}");
    assert!(!e.contains("SECRET"), "{e}");
    let (other, _) = nkey_user();
    assert!(mlc_bus::connect_now(&with(&url, |c| c.nkey_seed = Some(Secret::new(other))), "t")
        .await
        .is_err());
}

#[tokio::test]
async fn a_token_authenticates() {
    let server = NatsServer::start_with("authorization {\n  token: \"tok-1\"\n}\n", NatsConfig::default());
    round_trip(&with(&server.url(), |c| c.token = Some(Secret::new("tok-1")))).await;
    assert!(mlc_bus::connect_now(&NatsConfig::at(server.url()), "t").await.is_err());
}

#[tokio::test]
async fn a_creds_file_authenticates_in_operator_mode() {
    let op = Operator::new();
    let dir = tempfile::tempdir().unwrap();
    let creds = op.creds(dir.path(), "writer", &[], &[]);
    let server = NatsServer::start_with(&op.server_conf(), NatsConfig::default());
    round_trip(&with(&server.url(), |c| c.creds_file = Some(creds.clone()))).await;
    // A user of another operator is not trusted.
    let stranger = Operator::new().creds(dir.path(), "stranger", &[], &[]);
    assert!(mlc_bus::connect_now(&with(&server.url(), |c| c.creds_file = Some(stranger)), "t")
        .await
        .is_err());
}

#[tokio::test]
async fn tls_with_a_test_ca_and_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let server = NatsServer::start_in(
        dir,
        &format!("{}authorization {{\n  user: svc\n  password: \"pw-1\"\n}}\n", ca.server_conf()),
        NatsConfig::default(),
    );
    let login = |c: &mut NatsConfig| {
        c.user = Some("svc".into());
        c.password = Some(Secret::new("pw-1"));
    };
    round_trip(&with(&server.url(), |c| {
        login(c);
        c.tls_ca_file = Some(ca.ca_file.clone());
    }))
    .await;
    // Without our CA the server's certificate is not trusted: no connection.
    assert!(mlc_bus::connect_now(
        &with(&server.url(), |c| {
            login(c);
            c.tls_required = true;
        }),
        "t"
    )
    .await
    .is_err());
}

#[tokio::test]
async fn tls_with_a_client_certificate_the_server_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (cert, key) = ca.client_cert(dir.path(), "writer");
    let server = NatsServer::start_in(dir, &ca.server_conf_verifying_clients(), NatsConfig::default());
    round_trip(&with(&server.url(), |c| {
        c.tls_ca_file = Some(ca.ca_file.clone());
        c.tls_cert_file = Some(cert.clone());
        c.tls_key_file = Some(key.clone());
    }))
    .await;
    // Without a client certificate the server refuses the connection.
    let without = with(&server.url(), |c| c.tls_ca_file = Some(ca.ca_file.clone()));
    assert!(mlc_bus::connect_now(&without, "t").await.is_err());
}
