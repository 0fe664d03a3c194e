//! JWT bearer tokens (`Authorization: Bearer <jwt>`), beside API keys.
//!
//! Two algorithms are accepted, each only with its own kind of key (no algorithm
//! confusion): HS256 with the shared secret `api.auth.jwt.hs256_secret`, and RS256 with the
//! RSA keys of a JWK set, read from `jwks_file` and/or fetched from `jwks_url`. The set is
//! cached; it is fetched again when it is older than `jwks_refresh_secs`, and at once when a
//! token names a key id the cache does not hold (key rotation), at most once per
//! `jwks_min_refresh_secs`. A failed refresh keeps the keys already held.
//!
//! `exp` and `sub` are required; `nbf`, `iss` (when `issuer` is set) and `aud` (when
//! `audience` is set) are checked, with `leeway_secs` of clock skew. The claims `scope`
//! (space-separated: `read`, `alerts:write`, `admin`) and `tier` map onto the same
//! [`Principal`] an API key gives, with id `jwt:<sub>`, so rate limits apply per subject.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::{ApiError, Result};

pub const JWKS_REFRESHES: &str = "pricestream_api_jwks_refreshes_total";

/// Settings of `[api.auth.jwt]`. Bearer tokens are accepted when `hs256_secret`,
/// `jwks_url` or `jwks_file` is set.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// Shared secret of HS256 tokens (at least 32 bytes); better given by the environment
    /// (`PRICESTREAM_API__AUTH__JWT__HS256_SECRET`) than in a file.
    pub hs256_secret: Option<String>,
    /// URL of a JWK set with the RSA keys of RS256 tokens.
    pub jwks_url: Option<String>,
    /// A JWK set file with RSA keys (read at start and at each refresh).
    pub jwks_file: Option<PathBuf>,
    /// Age after which the JWK set is fetched again.
    pub jwks_refresh_secs: u64,
    /// Least time between two fetches caused by an unknown key id.
    pub jwks_min_refresh_secs: u64,
    /// Timeout of one JWK set fetch.
    pub jwks_fetch_timeout_ms: u64,
    /// Required `iss` claim, when set.
    pub issuer: Option<String>,
    /// Required `aud` claim (one of the token's audiences), when set.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// Tier of a token without a `tier` claim.
    pub default_tier: String,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            hs256_secret: None,
            jwks_url: None,
            jwks_file: None,
            jwks_refresh_secs: 300,
            jwks_min_refresh_secs: 10,
            jwks_fetch_timeout_ms: 5_000,
            issuer: None,
            audience: None,
            leeway_secs: 30,
            default_tier: "basic".into(),
        }
    }
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field(
                "hs256_secret",
                &self.hs256_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("jwks_url", &self.jwks_url)
            .field("jwks_file", &self.jwks_file)
            .field("jwks_refresh_secs", &self.jwks_refresh_secs)
            .field("jwks_min_refresh_secs", &self.jwks_min_refresh_secs)
            .field("jwks_fetch_timeout_ms", &self.jwks_fetch_timeout_ms)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_secs", &self.leeway_secs)
            .field("default_tier", &self.default_tier)
            .finish()
    }
}

impl JwtConfig {
    /// Whether bearer tokens are accepted at all.
    pub fn enabled(&self) -> bool {
        self.hs256_secret.is_some() || self.jwks_url.is_some() || self.jwks_file.is_some()
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if let Some(s) = &self.hs256_secret {
            if s.len() < 32 {
                return Err("api.auth.jwt.hs256_secret must be at least 32 bytes".into());
            }
        }
        if let Some(u) = &self.jwks_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(format!(
                    "api.auth.jwt.jwks_url {u:?} must be an http:// or https:// URL"
                ));
            }
        }
        if self.jwks_fetch_timeout_ms == 0 {
            return Err("api.auth.jwt.jwks_fetch_timeout_ms must be positive".into());
        }
        Ok(())
    }
}

/// The claims read from a token (the registered ones are checked by the validation).
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    tier: Option<String>,
}

/// The RSA keys held, and when they were last fetched.
#[derive(Default)]
struct KeyCache {
    keys: Vec<(Option<String>, DecodingKey)>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
}

impl KeyCache {
    fn find(&self, kid: Option<&str>) -> Vec<DecodingKey> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|(k, _)| k.as_deref() == Some(kid))
                .map(|(_, key)| key.clone())
                .collect(),
            // a token without a key id may be signed by any key of the set
            None => self.keys.iter().map(|(_, key)| key.clone()).collect(),
        }
    }
}

/// Verifies bearer tokens.
pub struct JwtVerifier {
    cfg: JwtConfig,
    hs256: Option<DecodingKey>,
    http: reqwest::Client,
    cache: tokio::sync::RwLock<KeyCache>,
    /// One refresh at a time; the others wait for its result.
    refreshing: tokio::sync::Mutex<()>,
}

impl JwtVerifier {
    /// Builds the verifier; `None` when bearer tokens are not configured.
    pub fn new(cfg: &JwtConfig) -> std::result::Result<Option<Self>, String> {
        if !cfg.enabled() {
            return Ok(None);
        }
        cfg.validate()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.jwks_fetch_timeout_ms))
            .build()
            .map_err(|e| format!("building the JWKS HTTP client: {e}"))?;
        Ok(Some(JwtVerifier {
            hs256: cfg
                .hs256_secret
                .as_ref()
                .map(|s| DecodingKey::from_secret(s.as_bytes())),
            cfg: cfg.clone(),
            http,
            cache: tokio::sync::RwLock::new(KeyCache::default()),
            refreshing: tokio::sync::Mutex::new(()),
        }))
    }

    fn uses_jwks(&self) -> bool {
        self.cfg.jwks_url.is_some() || self.cfg.jwks_file.is_some()
    }

    /// Reads and fetches the JWK set now (at start, to fail early on a bad file or URL).
    pub async fn load_keys(&self) -> std::result::Result<usize, String> {
        if !self.uses_jwks() {
            return Ok(0);
        }
        let _one = self.refreshing.lock().await;
        self.refresh_locked().await
    }

    /// Verifies a token and returns its principal.
    pub async fn verify(&self, token: &str) -> Result<Principal> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("the bearer token is not a well-formed JWT"))?;
        let validation = self.validation(header.alg)?;
        let claims = match header.alg {
            Algorithm::HS256 => {
                let key = self
                    .hs256
                    .as_ref()
                    .ok_or_else(|| invalid("HS256 tokens are not accepted"))?;
                decode(token, key, &validation)?
            }
            Algorithm::RS256 => {
                if !self.uses_jwks() {
                    return Err(invalid("RS256 tokens are not accepted"));
                }
                let keys = self.keys_for(header.kid.as_deref()).await?;
                let mut last = invalid("no signing key matches the token's key id");
                let mut found = None;
                for key in &keys {
                    match decode(token, key, &validation) {
                        Ok(c) => {
                            found = Some(c);
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                found.ok_or(last)?
            }
            other => {
                return Err(invalid(&format!(
                    "algorithm {other:?} is not accepted (HS256 or RS256)"
                )))
            }
        };
        if claims.sub.is_empty() {
            return Err(invalid("the token's sub claim is empty"));
        }
        Ok(Principal {
            id: format!("jwt:{}", claims.sub),
            scopes: claims
                .scope
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            tier: claims.tier.unwrap_or_else(|| self.cfg.default_tier.clone()),
        })
    }

    fn validation(&self, alg: Algorithm) -> Result<Validation> {
        let mut v = Validation::new(alg);
        v.leeway = self.cfg.leeway_secs;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "sub"]);
        if let Some(iss) = &self.cfg.issuer {
            v.set_issuer(&[iss]);
        }
        match &self.cfg.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        Ok(v)
    }

    /// The RSA keys that may have signed a token with key id `kid`, refreshing the set
    /// when it is stale or does not know the key id.
    async fn keys_for(&self, kid: Option<&str>) -> Result<Vec<DecodingKey>> {
        let refresh_after = Duration::from_secs(self.cfg.jwks_refresh_secs);
        let min_gap = Duration::from_secs(self.cfg.jwks_min_refresh_secs);
        {
            let cache = self.cache.read().await;
            let fresh = cache
                .fetched_at
                .is_some_and(|t| t.elapsed() < refresh_after);
            let keys = cache.find(kid);
            let may_retry = cache.last_attempt.is_none_or(|t| t.elapsed() >= min_gap);
            if !keys.is_empty() && fresh {
                return Ok(keys);
            }
            if !may_retry {
                return if keys.is_empty() {
                    Err(invalid("no signing key matches the token's key id"))
                } else {
                    Ok(keys)
                };
            }
        }
        let _one = self.refreshing.lock().await;
        // another request may have refreshed while this one waited
        let again = {
            let cache = self.cache.read().await;
            cache.last_attempt.is_none_or(|t| t.elapsed() >= min_gap)
        };
        if again {
            if let Err(e) = self.refresh_locked().await {
                tracing::warn!(error = %e, "JWK set refresh failed; keeping the keys held");
                let cache = self.cache.read().await;
                if cache.keys.is_empty() {
                    return Err(ApiError::Unavailable(
                        "the token signing keys cannot be fetched".into(),
                    ));
                }
            }
        }
        let keys = self.cache.read().await.find(kid);
        if keys.is_empty() {
            Err(invalid("no signing key matches the token's key id"))
        } else {
            Ok(keys)
        }
    }

    /// Reads the file and fetches the URL; replaces the cache when both succeed. Called
    /// with `refreshing` held.
    async fn refresh_locked(&self) -> std::result::Result<usize, String> {
        self.cache.write().await.last_attempt = Some(Instant::now());
        let result = self.fetch_all().await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!(JWKS_REFRESHES, "result" => outcome).increment(1);
        let keys = result?;
        let n = keys.len();
        let mut cache = self.cache.write().await;
        cache.keys = keys;
        cache.fetched_at = Some(Instant::now());
        tracing::debug!(keys = n, "JWK set refreshed");
        Ok(n)
    }

    async fn fetch_all(&self) -> std::result::Result<Vec<(Option<String>, DecodingKey)>, String> {
        let mut keys = Vec::new();
        if let Some(path) = &self.cfg.jwks_file {
            let text = tokio::fs::read_to_string(path)
                .await
                .map_err(|e| format!("reading JWK set {}: {e}", path.display()))?;
            keys.extend(rsa_keys(&text).map_err(|e| format!("{}: {e}", path.display()))?);
        }
        if let Some(url) = &self.cfg.jwks_url {
            let resp = self
                .http
                .get(url)
                .send()
                .await
                .map_err(|e| format!("fetching JWK set {url}: {e}"))?;
            if !resp.status().is_success() {
                return Err(format!("fetching JWK set {url}: HTTP {}", resp.status()));
            }
            let text = resp
                .text()
                .await
                .map_err(|e| format!("reading JWK set {url}: {e}"))?;
            keys.extend(rsa_keys(&text).map_err(|e| format!("{url}: {e}"))?);
        }
        Ok(keys)
    }
}

/// The RS256 signing keys of a JWK set document; other keys are skipped.
fn rsa_keys(text: &str) -> std::result::Result<Vec<(Option<String>, DecodingKey)>, String> {
    let set: JwkSet = serde_json::from_str(text).map_err(|e| format!("not a JWK set: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        if jwk
            .common
            .key_algorithm
            .is_some_and(|a| a != KeyAlgorithm::RS256)
        {
            continue;
        }
        let key = DecodingKey::from_rsa_components(&rsa.n, &rsa.e)
            .map_err(|e| format!("bad RSA key {:?}: {e}", jwk.common.key_id))?;
        keys.push((jwk.common.key_id.clone(), key));
    }
    Ok(keys)
}

fn invalid(msg: &str) -> ApiError {
    ApiError::InvalidToken(msg.to_string())
}

fn decode(token: &str, key: &DecodingKey, v: &Validation) -> Result<Claims> {
    jsonwebtoken::decode::<Claims>(token, key, v)
        .map(|d| d.claims)
        .map_err(|e| {
            invalid(match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
                ErrorKind::InvalidSignature => "the token's signature does not verify",
                ErrorKind::InvalidAudience => "the token's audience (aud) is not accepted",
                ErrorKind::InvalidIssuer => "the token's issuer (iss) is not accepted",
                ErrorKind::MissingRequiredClaim(_) => {
                    "the token lacks a required claim (exp and sub)"
                }
                ErrorKind::InvalidAlgorithm => "the token's algorithm does not match its key",
                _ => "the bearer token is not valid",
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_checks() {
        assert!(JwtConfig::default().validate().is_ok());
        assert!(!JwtConfig::default().enabled());
        let short = JwtConfig {
            hs256_secret: Some("short".into()),
            ..JwtConfig::default()
        };
        assert!(short.validate().is_err());
        let secret = JwtConfig {
            hs256_secret: Some("s3cret-s3cret-s3cret-s3cret-s3cret".into()),
            ..JwtConfig::default()
        };
        assert!(secret.validate().is_ok());
        assert!(!format!("{secret:?}").contains("s3cret"));
        let bad_url = JwtConfig {
            jwks_url: Some("ftp://x".into()),
            ..JwtConfig::default()
        };
        assert!(bad_url.validate().is_err());
    }

    #[test]
    fn jwk_sets_keep_only_rs256_signing_keys() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/jwt/k1.jwks.json"
        );
        let text = std::fs::read_to_string(dir).unwrap_or_default();
        let keys = rsa_keys(&text).unwrap_or_default();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].0.as_deref(), Some("k1"));
        let other = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"},
            {"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"}]}"#;
        assert_eq!(rsa_keys(other).map(|k| k.len()), Ok(0));
        assert!(rsa_keys("not json").is_err());
    }
}
