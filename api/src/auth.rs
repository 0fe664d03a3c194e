//! API keys, JWT bearer tokens, scopes and per-principal rate limits.
//!
//! A key looks like `ps_<id>_<secret>`; the store keeps only the SHA-256 of the whole key,
//! and the key is shown once, at creation (`pricestream keys create`). Requests present it
//! in `X-API-Key`. Without a key a request is anonymous (scope `read`, tier `anonymous`)
//! unless `api.auth.required` is set. 401 means "who are you?" (missing, unknown or revoked
//! key), 403 "you may not" (scope missing). Each principal has a token bucket of its tier;
//! an empty bucket answers 429 with `Retry-After`. Health and metrics stay open.
//!
//! A request may instead carry `Authorization: Bearer <jwt>` (see [`crate::jwt`]); the
//! token's `scope` and `tier` claims give the same [`Principal`], with id `jwt:<sub>`.
//! A request carrying both an API key and a bearer token is refused (400).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use pricestream_store::{ApiKeyRecord, Store};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{ApiError, AppState, Result};

pub const AUTH_FAILURES: &str = "pricestream_api_auth_failures_total";
pub const RATE_LIMITED: &str = "pricestream_api_rate_limited_total";

/// Requests per second and burst of a tier.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierLimit {
    pub requests_per_sec: f64,
    pub burst: u32,
}

/// Settings of `[api.auth]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Refuse requests without a key (401).
    pub required: bool,
    /// Rate limits per tier; a key's tier must be one of these.
    pub tiers: BTreeMap<String, TierLimit>,
    /// JWT bearer tokens (`[api.auth.jwt]`).
    pub jwt: crate::jwt::JwtConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        let tier = |rps: f64, burst: u32| TierLimit {
            requests_per_sec: rps,
            burst,
        };
        AuthConfig {
            required: false,
            tiers: [
                ("anonymous".to_string(), tier(100.0, 200)),
                ("basic".to_string(), tier(50.0, 100)),
                ("pro".to_string(), tier(500.0, 1_000)),
            ]
            .into_iter()
            .collect(),
            jwt: crate::jwt::JwtConfig::default(),
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The key id, or `anonymous`.
    pub id: String,
    pub scopes: Vec<String>,
    pub tier: String,
}

impl Principal {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope || s == "admin")
    }
}

/// SHA-256 of a presented key, hex.
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new key and the record to store. The key itself is returned once and never stored.
pub fn new_key(
    name: &str,
    scopes: &str,
    tier: &str,
    now: i64,
) -> std::io::Result<(String, ApiKeyRecord)> {
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let (id, secret) = hex.split_at(12);
    let key = format!("ps_{id}_{secret}");
    let record = ApiKeyRecord {
        id: id.to_string(),
        name: name.to_string(),
        secret_hash: hash_key(&key),
        scopes: scopes
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
        tier: tier.to_string(),
        created_at: now,
        revoked_at: None,
    };
    Ok((key, record))
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Authentication and rate-limit state shared by all requests.
pub struct Auth {
    cfg: AuthConfig,
    /// `None` when bearer tokens are not configured; `Err` when their configuration failed
    /// (bearer requests then answer 503; [`Auth::try_new`] refuses such a configuration).
    jwt: std::result::Result<Option<crate::jwt::JwtVerifier>, String>,
    cache: Mutex<HashMap<String, (Option<ApiKeyRecord>, Instant)>>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// How long a key lookup is trusted (a revoked key stops working within this).
const CACHE_TTL: Duration = Duration::from_secs(5);

impl Auth {
    pub fn new(cfg: AuthConfig) -> Arc<Self> {
        let jwt = crate::jwt::JwtVerifier::new(&cfg.jwt);
        if let Err(e) = &jwt {
            tracing::error!(error = %e, "bearer tokens are misconfigured and will be refused");
        }
        Arc::new(Auth {
            jwt,
            cfg,
            cache: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Like [`Auth::new`], but fails on a bad JWT configuration and loads the JWK set now.
    pub async fn try_new(cfg: AuthConfig) -> std::result::Result<Arc<Self>, String> {
        let auth = Auth::new(cfg);
        match &auth.jwt {
            Err(e) => return Err(e.clone()),
            Ok(Some(v)) => {
                v.load_keys().await?;
            }
            Ok(None) => {}
        }
        Ok(auth)
    }

    /// Resolves the caller of a request carrying `Authorization: Bearer <token>`.
    pub async fn principal_for_bearer(&self, token: &str) -> Result<Principal> {
        match &self.jwt {
            Ok(Some(v)) => v.verify(token).await,
            Ok(None) => Err(ApiError::InvalidToken(
                "bearer tokens are not enabled on this server; use X-API-Key".into(),
            )),
            Err(_) => Err(ApiError::Unavailable(
                "bearer token verification is misconfigured".into(),
            )),
        }
    }

    async fn lookup(&self, store: &Arc<dyn Store>, key: &str) -> Result<Option<ApiKeyRecord>> {
        let hash = hash_key(key);
        if let Ok(cache) = self.cache.lock() {
            if let Some((rec, at)) = cache.get(&hash) {
                if at.elapsed() < CACHE_TTL {
                    return Ok(rec.clone());
                }
            }
        }
        let rec = store.find_api_key(&hash).await?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(hash, (rec.clone(), Instant::now()));
        }
        Ok(rec)
    }

    /// Resolves the caller of a request.
    pub async fn principal(&self, store: &Arc<dyn Store>, key: Option<&str>) -> Result<Principal> {
        let Some(key) = key else {
            if self.cfg.required {
                return Err(ApiError::Unauthorized(
                    "credentials are required: an API key (header X-API-Key) or a bearer token (Authorization: Bearer)".into(),
                ));
            }
            return Ok(Principal {
                id: "anonymous".into(),
                scopes: vec!["read".into()],
                tier: "anonymous".into(),
            });
        };
        match self.lookup(store, key).await? {
            Some(rec) if rec.revoked_at.is_none() => Ok(Principal {
                id: rec.id,
                scopes: rec.scopes.split(' ').map(str::to_string).collect(),
                tier: rec.tier,
            }),
            Some(_) => Err(ApiError::Unauthorized("this API key was revoked".into())),
            None => Err(ApiError::Unauthorized("unknown API key".into())),
        }
    }

    /// Takes one token from the principal's bucket.
    pub fn admit(&self, p: &Principal) -> Result<()> {
        let Some(limit) = self.cfg.tiers.get(&p.tier).copied() else {
            return Err(ApiError::Forbidden(format!(
                "tier {:?} is not configured",
                p.tier
            )));
        };
        let mut buckets = self
            .buckets
            .lock()
            .map_err(|_| ApiError::Internal("rate limiter lock poisoned".into()))?;
        let now = Instant::now();
        let b = buckets.entry(p.id.clone()).or_insert(Bucket {
            tokens: f64::from(limit.burst),
            at: now,
        });
        let refill = now.duration_since(b.at).as_secs_f64() * limit.requests_per_sec;
        b.tokens = (b.tokens + refill).min(f64::from(limit.burst));
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / limit.requests_per_sec.max(1e-9);
            Err(ApiError::TooManyRequests {
                tier: p.tier.clone(),
                retry_after_secs: wait.ceil().max(1.0) as u64,
            })
        }
    }
}

/// The scope a request needs.
fn required_scope(method: &Method) -> &'static str {
    if method == Method::GET || method == Method::HEAD {
        "read"
    } else {
        "alerts:write"
    }
}

/// What a request presents to prove who it is.
enum Credentials {
    None,
    ApiKey(String),
    Bearer(String),
}

fn credentials(headers: &axum::http::HeaderMap) -> Result<Credentials> {
    let key = headers
        .get("x-api-key")
        .map(|v| v.to_str().unwrap_or("").to_string());
    let bearer = match headers.get(axum::http::header::AUTHORIZATION) {
        None => None,
        Some(v) => {
            let v = v.to_str().map_err(|_| {
                ApiError::InvalidToken("the Authorization header is not ASCII".into())
            })?;
            match v.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                    Some(token.trim().to_string())
                }
                _ => {
                    return Err(ApiError::Unauthorized(
                        "the Authorization scheme is not supported; use Bearer <jwt>".into(),
                    ))
                }
            }
        }
    };
    match (key, bearer) {
        (Some(_), Some(_)) => Err(ApiError::BadRequest(
            "send either X-API-Key or Authorization: Bearer, not both".into(),
        )),
        (Some(k), None) => Ok(Credentials::ApiKey(k)),
        (None, Some(t)) => Ok(Credentials::Bearer(t)),
        (None, None) => Ok(Credentials::None),
    }
}

/// Middleware for `/v1/*`: authenticates, checks the scope, applies the rate limit.
pub async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let checked = match credentials(req.headers()) {
        Ok(c) => check(&state, c, &method).await,
        Err(e) => Err(e),
    };
    match checked {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(e) => {
            let kind = e.code();
            if kind == "rate_limited" {
                metrics::counter!(RATE_LIMITED).increment(1);
            } else {
                metrics::counter!(AUTH_FAILURES, "code" => kind).increment(1);
            }
            axum::response::IntoResponse::into_response(e)
        }
    }
}

async fn check(state: &AppState, creds: Credentials, method: &Method) -> Result<Principal> {
    let p = match creds {
        Credentials::None => state.auth.principal(&state.store, None).await?,
        Credentials::ApiKey(k) => state.auth.principal(&state.store, Some(&k)).await?,
        Credentials::Bearer(t) => state.auth.principal_for_bearer(&t).await?,
    };
    let scope = required_scope(method);
    if !p.has_scope(scope) {
        return Err(ApiError::Forbidden(format!(
            "these credentials lack the {scope:?} scope"
        )));
    }
    state.auth.admit(&p)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hash_and_scopes() {
        let (key, rec) = new_key("ci", "read,alerts:write", "basic", 1).unwrap();
        assert!(key.starts_with(&format!("ps_{}_", rec.id)));
        assert_eq!(rec.secret_hash, hash_key(&key));
        assert_ne!(rec.secret_hash, key);
        assert_eq!(rec.scopes, "read alerts:write");
        let (key2, _) = new_key("ci", "read", "basic", 1).unwrap();
        assert_ne!(key, key2);
    }

    #[test]
    fn token_bucket_refuses_beyond_the_burst() {
        let mut cfg = AuthConfig::default();
        cfg.tiers.insert(
            "tiny".into(),
            TierLimit {
                requests_per_sec: 1.0,
                burst: 3,
            },
        );
        let auth = Auth::new(cfg);
        let p = Principal {
            id: "k".into(),
            scopes: vec!["read".into()],
            tier: "tiny".into(),
        };
        for _ in 0..3 {
            auth.admit(&p).unwrap();
        }
        match auth.admit(&p) {
            Err(ApiError::TooManyRequests {
                retry_after_secs, ..
            }) => assert_eq!(retry_after_secs, 1),
            other => panic!("{other:?}"),
        }
        // another principal has its own bucket
        let q = Principal {
            id: "other".into(),
            ..p
        };
        auth.admit(&q).unwrap();
    }
}
