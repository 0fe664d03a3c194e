//! JWT bearer tokens: HS256 with a shared secret, RS256 with keys from a JWK set served by
//! a real local HTTP server (and from a file), key rotation, 401 vs 403, per-subject limits.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use pricestream_api::auth::{Auth, AuthConfig, TierLimit};
use pricestream_api::jwt::JwtConfig;
use pricestream_api::{router, ApiConfig, AppState};
use serde_json::{json, Value};
use tower::ServiceExt;

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn app(jwt: JwtConfig) -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = pricestream_store::open(&url, 1).await.unwrap();
    store.migrate().await.unwrap();
    let mut auth = AuthConfig {
        required: true,
        jwt,
        ..AuthConfig::default()
    };
    auth.tiers.insert(
        "tiny".into(),
        TierLimit {
            requests_per_sec: 0.01,
            burst: 2,
        },
    );
    let state = AppState {
        store,
        metrics: None,
        lake_dir: None,
        pipeline: None,
        live: None,
        auth: Auth::try_new(auth.clone()).await.unwrap(),
    };
    let cfg = ApiConfig {
        auth,
        ..ApiConfig::default()
    };
    (router(state, &cfg), dir)
}

async fn call(app: &axum::Router, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Value) {
    let mut req = Request::get("/v1/symbols");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, serde_json::from_slice(&body).unwrap())
}

async fn bearer(app: &axum::Router, token: &str) -> (StatusCode, HeaderMap, Value) {
    call(app, &[("authorization", &format!("Bearer {token}"))]).await
}

fn hs256(claims: &Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn rs256(claims: &Value, key_file: &str, kid: Option<&str>) -> String {
    let der = std::fs::read(fixture(key_file)).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_string);
    encode(&header, claims, &EncodingKey::from_rsa_der(&der)).unwrap()
}

fn claims(sub: &str, scope: &str) -> Value {
    json!({
        "sub": sub,
        "scope": scope,
        "tier": "basic",
        "iss": "https://issuer.test",
        "aud": "pricestream",
        "exp": now() + 600,
        "nbf": now() - 10,
    })
}

fn hs_config() -> JwtConfig {
    JwtConfig {
        hs256_secret: Some(SECRET.into()),
        issuer: Some("https://issuer.test".into()),
        audience: Some("pricestream".into()),
        leeway_secs: 0,
        ..JwtConfig::default()
    }
}

fn assert_invalid_token(r: &(StatusCode, HeaderMap, Value), needle: &str) {
    assert_eq!(r.0, StatusCode::UNAUTHORIZED, "{}", r.2);
    assert_eq!(r.2["error"]["code"], "invalid_token", "{}", r.2);
    let msg = r.2["error"]["message"].as_str().unwrap();
    assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    let challenge = r.1["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains("invalid_token"),
        "{challenge}"
    );
}

#[tokio::test]
async fn hs256_tokens() {
    let (app, _dir) = app(hs_config()).await;
    // happy path
    let ok = bearer(&app, &hs256(&claims("alice", "read"), SECRET)).await;
    assert_eq!(ok.0, StatusCode::OK, "{}", ok.2);
    // the scheme is case-insensitive
    let t = hs256(&claims("alice", "read"), SECRET);
    let ok = call(&app, &[("authorization", &format!("bearer {t}"))]).await;
    assert_eq!(ok.0, StatusCode::OK);

    // expired (no leeway configured)
    let mut c = claims("alice", "read");
    c["exp"] = json!(now() - 5);
    assert_invalid_token(&bearer(&app, &hs256(&c, SECRET)).await, "expired");
    // not valid yet
    let mut c = claims("alice", "read");
    c["nbf"] = json!(now() + 300);
    assert_invalid_token(&bearer(&app, &hs256(&c, SECRET)).await, "not valid yet");
    // bad signature
    let forged = hs256(
        &claims("alice", "read"),
        "another-secret-of-at-least-32-bytes!",
    );
    assert_invalid_token(&bearer(&app, &forged).await, "signature");
    // wrong audience, wrong issuer
    let mut c = claims("alice", "read");
    c["aud"] = json!("someone-else");
    assert_invalid_token(&bearer(&app, &hs256(&c, SECRET)).await, "audience");
    let mut c = claims("alice", "read");
    c["iss"] = json!("https://evil.test");
    assert_invalid_token(&bearer(&app, &hs256(&c, SECRET)).await, "issuer");
    // no exp
    let mut c = claims("alice", "read");
    c.as_object_mut().unwrap().remove("exp");
    assert_invalid_token(&bearer(&app, &hs256(&c, SECRET)).await, "exp");
    // garbage, and an RS256 token where only HS256 is configured
    assert_invalid_token(&bearer(&app, "not.a.jwt").await, "well-formed");
    let rs = rs256(&claims("alice", "read"), "k1.der", Some("k1"));
    assert_invalid_token(&bearer(&app, &rs).await, "RS256");

    // a valid token without the needed scope: 403, not 401
    let r = bearer(&app, &hs256(&claims("bob", "alerts:write"), SECRET)).await;
    assert_eq!(r.0, StatusCode::FORBIDDEN, "{}", r.2);
    assert_eq!(r.2["error"]["code"], "forbidden");
    // admin implies read
    let r = bearer(&app, &hs256(&claims("root", "admin"), SECRET)).await;
    assert_eq!(r.0, StatusCode::OK);
    // a tier that is not configured
    let mut c = claims("carol", "read");
    c["tier"] = json!("platinum");
    assert_eq!(
        bearer(&app, &hs256(&c, SECRET)).await.0,
        StatusCode::FORBIDDEN
    );

    // no credentials, another scheme, both kinds at once
    let r = call(&app, &[]).await;
    assert_eq!(r.0, StatusCode::UNAUTHORIZED);
    let schemes: Vec<_> = r.1.get_all("www-authenticate").iter().collect();
    assert_eq!(schemes.len(), 2, "{schemes:?}");
    let r = call(&app, &[("authorization", "Basic dXNlcjpwYXNz")]).await;
    assert_eq!(r.0, StatusCode::UNAUTHORIZED);
    let r = call(
        &app,
        &[
            ("authorization", &format!("Bearer {t}")),
            ("x-api-key", "ps_x_y"),
        ],
    )
    .await;
    assert_eq!(r.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn rate_limits_apply_per_subject() {
    let (app, _dir) = app(hs_config()).await;
    let token = |sub: &str| {
        let mut c = claims(sub, "read");
        c["tier"] = json!("tiny");
        hs256(&c, SECRET)
    };
    let (a1, a2) = (token("alice"), token("alice"));
    assert_eq!(bearer(&app, &a1).await.0, StatusCode::OK);
    assert_eq!(bearer(&app, &a2).await.0, StatusCode::OK);
    // another token of the same subject shares the bucket
    let r = bearer(&app, &a1).await;
    assert_eq!(r.0, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.1.contains_key("retry-after"));
    // another subject has its own
    assert_eq!(bearer(&app, &token("bob")).await.0, StatusCode::OK);
}

/// A real HTTP server that serves a JWK set which the test can replace, counting fetches.
struct JwksServer {
    url: String,
    body: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

async fn jwks_server(initial: &[&str]) -> JwksServer {
    let body = Arc::new(Mutex::new(jwk_set(initial)));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (b, f) = (body.clone(), fetches.clone());
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let (b, f) = (b.clone(), f.clone());
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                let text = b.lock().unwrap().clone();
                ([("content-type", "application/json")], text)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    JwksServer {
        url: format!("http://{addr}/.well-known/jwks.json"),
        body,
        fetches,
        _task: task,
    }
}

/// The union of the fixture JWK sets named.
fn jwk_set(names: &[&str]) -> String {
    let keys: Vec<Value> = names
        .iter()
        .flat_map(|n| {
            let text = std::fs::read_to_string(fixture(&format!("{n}.jwks.json"))).unwrap();
            let v: Value = serde_json::from_str(&text).unwrap();
            v["keys"].as_array().unwrap().clone()
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

#[tokio::test]
async fn rs256_tokens_from_a_jwks_url_with_rotation() {
    let server = jwks_server(&["k1"]).await;
    let cfg = JwtConfig {
        jwks_url: Some(server.url.clone()),
        jwks_min_refresh_secs: 0,
        audience: Some("pricestream".into()),
        ..JwtConfig::default()
    };
    let (app, _dir) = app(cfg).await;
    // fetched once at start
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);
    let t1 = rs256(&claims("svc", "read"), "k1.der", Some("k1"));
    let r = bearer(&app, &t1).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.2);
    assert_eq!(
        server.fetches.load(Ordering::SeqCst),
        1,
        "a known kid needs no fetch"
    );
    // a token without kid is checked against the keys held
    let r = bearer(&app, &rs256(&claims("svc", "read"), "k1.der", None)).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.2);

    // signed by k2 but claiming k1: the signature does not verify
    let forged = rs256(&claims("svc", "read"), "k2.der", Some("k1"));
    assert_invalid_token(&bearer(&app, &forged).await, "signature");
    // an HS256 token is refused when only RS256 keys are configured
    assert_invalid_token(
        &bearer(&app, &hs256(&claims("svc", "read"), SECRET)).await,
        "HS256",
    );

    // rotation: the issuer now publishes k2 (and drops k1); a k2 token makes the server
    // fetch the set again at once
    *server.body.lock().unwrap() = jwk_set(&["k2"]);
    let t2 = rs256(&claims("svc", "read"), "k2.der", Some("k2"));
    let r = bearer(&app, &t2).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.2);
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
    // k1 is gone from the set: its tokens now fail after one more fetch
    assert_invalid_token(&bearer(&app, &t1).await, "key id");
    assert_eq!(server.fetches.load(Ordering::SeqCst), 3);
    // scopes and wrong audience behave as with HS256
    let r = bearer(&app, &rs256(&claims("svc", ""), "k2.der", Some("k2"))).await;
    assert_eq!(r.0, StatusCode::FORBIDDEN);
    let mut c = claims("svc", "read");
    c["aud"] = json!(["x", "y"]);
    assert_invalid_token(
        &bearer(&app, &rs256(&c, "k2.der", Some("k2"))).await,
        "audience",
    );
}

#[tokio::test]
async fn unknown_kids_do_not_hammer_the_jwks_url() {
    let server = jwks_server(&["k1"]).await;
    let cfg = JwtConfig {
        jwks_url: Some(server.url.clone()),
        jwks_min_refresh_secs: 3_600,
        ..JwtConfig::default()
    };
    let (app, _dir) = app(cfg).await;
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);
    for _ in 0..5 {
        let t = rs256(&claims("svc", "read"), "k2.der", Some("k2"));
        assert_invalid_token(&bearer(&app, &t).await, "key id");
    }
    // within jwks_min_refresh_secs of the last fetch, an unknown kid causes no fetch
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn rs256_keys_from_a_jwks_file() {
    let cfg = JwtConfig {
        jwks_file: Some(fixture("k2.jwks.json")),
        ..JwtConfig::default()
    };
    let (app, _dir) = app(cfg).await;
    let r = bearer(&app, &rs256(&claims("svc", "read"), "k2.der", Some("k2"))).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.2);
    let r = bearer(&app, &rs256(&claims("svc", "read"), "k1.der", Some("k1"))).await;
    assert_eq!(r.0, StatusCode::UNAUTHORIZED);
    // a missing file is refused at start
    let bad = AuthConfig {
        jwt: JwtConfig {
            jwks_file: Some(fixture("missing.json")),
            ..JwtConfig::default()
        },
        ..AuthConfig::default()
    };
    assert!(Auth::try_new(bad).await.is_err());
}
