//! The refresh lease under faults: an OAuth server that never answers a refresh must not
//! keep the grant's lease (and with it every other process's calls of that grant) for
//! longer than the lease itself.

use gusto::{
    GrantId, GustoError, MemoryTokenStore, OAuthClient, Secret, TokenManager, TokenManagerConfig,
    TokenResponse, TokenStore,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_refresh_without_an_answer_gives_its_lease_back_within_the_lease() {
    // Accepts connections and never answers them.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let oauth = OAuthClient::new(
        reqwest::Client::new(),
        format!("http://{addr}").parse().unwrap(),
        "client".into(),
        Secret::new("secret".to_string()),
    );
    let store = Arc::new(MemoryTokenStore::new());
    let lease_ttl = Duration::from_secs(2);
    let tokens =
        TokenManager::new(store.clone(), oauth, TokenManagerConfig { lease_ttl, ..Default::default() });
    let grant = GrantId("g1".into());
    let answer = TokenResponse {
        access_token: "a1".into(),
        refresh_token: Some("r1".into()),
        expires_in: Some(7200.0),
        scope: None,
        token_type: None,
    };
    tokens.install(&grant, &answer).await.unwrap();
    store.expire_now(&grant);

    let started = Instant::now();
    let err = tokens.access_token(&grant).await.expect_err("no answer, no token");
    let took = started.elapsed();
    assert!(matches!(err, GustoError::RefreshTimedOut { .. }), "{err:?}");
    assert!(err.is_transient(), "a refresh without an answer is tried again");
    assert!(took < lease_ttl, "gave up after {took:?}, the lease is {lease_ttl:?}");
    let row = store.load(&grant).await.unwrap().unwrap();
    assert!(row.refresh_lease_until.is_none(), "the lease was given back: {:?}", row.refresh_lease_until);
    println!(
        "refresh without an answer: gave up after {} ms (lease {} ms); lease released",
        took.as_millis(),
        lease_ttl.as_millis()
    );
    hold.abort();
}
