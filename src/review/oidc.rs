//! OIDC login for named users: authorization code flow with PKCE (S256), a public client.
//!
//! 1. `start`: a random `state`, `nonce` and PKCE verifier are stored (10 minutes, used once);
//!    the browser is sent to the IdP's authorization endpoint with the S256 challenge.
//! 2. `callback`: the `state` is taken from the store (a replay finds nothing), the code is
//!    exchanged with the verifier, and the ID token is verified: RS256 signature against the
//!    IdP's JWKS (by `kid`), `iss`, `aud`, `exp`, `nonce`. The `sub` must belong to an active
//!    user provisioned with that subject (`aml-triage users add --oidc-subject`); nobody is
//!    created on the fly. Then a session opens exactly as for a local login.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{Duration, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::{Review, ReviewServiceError};
use crate::Settings;
use crate::store::review::SessionRecord;

/// The OIDC client settings (`OIDC_ISSUER`, `OIDC_CLIENT_ID`, `OIDC_REDIRECT_URI`).
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Issuer URL (exactly as in the tokens' `iss`).
    pub issuer: String,
    /// Client id (the tokens' `aud`).
    pub client_id: String,
    /// Redirect URI registered with the IdP.
    pub redirect_uri: String,
}

impl OidcConfig {
    /// The OIDC settings, when configured.
    pub fn from_settings(s: &Settings) -> Option<OidcConfig> {
        Some(OidcConfig {
            issuer: s.oidc_issuer.clone().filter(|v| !v.trim().is_empty())?,
            client_id: s.oidc_client_id.clone()?,
            redirect_uri: s.oidc_redirect_uri.clone()?,
        })
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

fn oidc_err(message: impl Into<String>) -> ReviewServiceError {
    // What went wrong is logged; the client only learns that login failed.
    tracing::warn!(error = %message.into(), "OIDC login failed");
    ReviewServiceError::Unauthenticated
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap_or_default()
}

async fn discover(
    http: &reqwest::Client,
    cfg: &OidcConfig,
) -> Result<Discovery, ReviewServiceError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        cfg.issuer.trim_end_matches('/')
    );
    let d: Discovery = http
        .get(&url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| oidc_err(format!("discovery: {e}")))?
        .json()
        .await
        .map_err(|e| oidc_err(format!("discovery: {e}")))?;
    if d.issuer != cfg.issuer {
        return Err(oidc_err("discovery: issuer differs from OIDC_ISSUER"));
    }
    Ok(d)
}

/// The S256 PKCE challenge of a verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    use sha2::Digest;
    B64.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

/// Verifies a compact RS256 JWT against a JWKS document; returns its claims.
pub fn verify_rs256(jwt: &str, jwks: &Value) -> Result<Value, String> {
    let mut parts = jwt.split('.');
    let (h, p, sig) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => (h, p, s),
        _ => return Err("not a compact JWT".into()),
    };
    let decode = |s: &str| B64.decode(s).map_err(|e| format!("base64: {e}"));
    let header: Value = serde_json::from_slice(&decode(h)?).map_err(|e| format!("header: {e}"))?;
    if header["alg"] != "RS256" {
        return Err(format!("alg {} is not RS256", header["alg"]));
    }
    let kid = header["kid"].as_str();
    let key = jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["kty"] == "RSA" && (kid.is_none() || k["kid"].as_str() == kid))
        .ok_or("no matching RSA key in the JWKS")?;
    let n = decode(key["n"].as_str().unwrap_or(""))?;
    let e = decode(key["e"].as_str().unwrap_or(""))?;
    let public = aws_lc_rs::signature::RsaPublicKeyComponents { n: &n, e: &e };
    public
        .verify(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            format!("{h}.{p}").as_bytes(),
            &decode(sig)?,
        )
        .map_err(|_| "bad signature".to_string())?;
    serde_json::from_slice(&decode(p)?).map_err(|e| format!("claims: {e}"))
}

impl Review {
    /// Starts an OIDC login: returns the IdP URL to redirect the browser to.
    pub async fn oidc_start(&self, cfg: &OidcConfig) -> Result<String, ReviewServiceError> {
        let d = discover(&client(), cfg).await?;
        let state = super::auth::random_hex(24)?;
        let nonce = super::auth::random_hex(24)?;
        let verifier = super::auth::random_hex(32)?;
        let now = Utc::now();
        self.store
            .insert_oidc_pending(&state, &nonce, &verifier, now, now + Duration::minutes(10))
            .await?;
        let url = reqwest::Url::parse_with_params(
            &d.authorization_endpoint,
            &[
                ("response_type", "code"),
                ("client_id", cfg.client_id.as_str()),
                ("redirect_uri", cfg.redirect_uri.as_str()),
                ("scope", "openid"),
                ("state", state.as_str()),
                ("nonce", nonce.as_str()),
                ("code_challenge", pkce_challenge(&verifier).as_str()),
                ("code_challenge_method", "S256"),
            ],
        )
        .map_err(|e| oidc_err(format!("authorization_endpoint: {e}")))?;
        Ok(url.to_string())
    }

    /// Finishes an OIDC login: exchanges the code, verifies the ID token, opens a session for
    /// the user provisioned with its subject.
    pub async fn oidc_callback(
        &self,
        cfg: &OidcConfig,
        code: &str,
        state: &str,
    ) -> Result<(String, SessionRecord), ReviewServiceError> {
        let (nonce, verifier) = self
            .store
            .take_oidc_pending(state, Utc::now())
            .await?
            .ok_or_else(|| oidc_err("unknown, used or expired state"))?;
        let http = client();
        let d = discover(&http, cfg).await?;
        let mut form = reqwest::Url::parse("http://form.invalid/")
            .map_err(|e| ReviewServiceError::Internal(e.to_string()))?;
        form.query_pairs_mut()
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &cfg.redirect_uri)
            .append_pair("client_id", &cfg.client_id)
            .append_pair("code_verifier", &verifier);
        let tokens: Value = http
            .post(&d.token_endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.query().unwrap_or("").to_string())
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| oidc_err(format!("token endpoint: {e}")))?
            .json()
            .await
            .map_err(|e| oidc_err(format!("token endpoint: {e}")))?;
        let id_token = tokens["id_token"]
            .as_str()
            .ok_or_else(|| oidc_err("no id_token"))?;
        let jwks: Value = http
            .get(&d.jwks_uri)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| oidc_err(format!("jwks: {e}")))?
            .json()
            .await
            .map_err(|e| oidc_err(format!("jwks: {e}")))?;
        let claims =
            verify_rs256(id_token, &jwks).map_err(|e| oidc_err(format!("id_token: {e}")))?;
        let aud_ok = match &claims["aud"] {
            Value::String(a) => *a == cfg.client_id,
            Value::Array(a) => a.iter().any(|x| *x == *cfg.client_id),
            _ => false,
        };
        let now = Utc::now().timestamp();
        if claims["iss"] != *cfg.issuer
            || !aud_ok
            || claims["exp"].as_i64().is_none_or(|e| e <= now)
            || claims["nonce"] != *nonce
        {
            return Err(oidc_err("id_token: iss, aud, exp or nonce check failed"));
        }
        let sub = claims["sub"]
            .as_str()
            .ok_or_else(|| oidc_err("id_token: no sub"))?;
        let user = self
            .store
            .user_by_subject(sub)
            .await?
            .filter(|u| !u.disabled)
            .ok_or_else(|| oidc_err("no active user with this OIDC subject"))?;
        self.open_session(user, "oidc").await
    }

    /// Links an OIDC subject to a user.
    pub async fn link_oidc_subject(
        &self,
        by: &str,
        user_id: &str,
        subject: &str,
    ) -> Result<(), ReviewServiceError> {
        let mut u = self.user(user_id).await?;
        u.oidc_subject = Some(subject.to_string());
        u.updated_at = Utc::now();
        self.store.update_user(&u).await?;
        self.audit(
            by,
            "user_oidc_link",
            None,
            serde_json::json!({"user_id": user_id, "subject_sha256": crate::store::audit::sha256_hex(subject)}),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
    use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
    use serde_json::json;

    fn sign(key: &RsaKeyPair, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let mut sig = vec![0; key.public_modulus_len()];
        key.sign(
            &RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut sig,
        )
        .unwrap();
        format!("{input}.{}", B64.encode(sig))
    }

    #[test]
    fn id_tokens_are_verified_against_the_jwks() {
        let key = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let other = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let p = PublicKeyComponents::<Vec<u8>>::from(key.public_key());
        let jwks = json!({"keys": [{"kty": "RSA", "kid": "k1", "n": B64.encode(&p.n), "e": B64.encode(&p.e)}]});
        let h = json!({"alg": "RS256", "kid": "k1"});
        let claims = json!({"sub": "u1", "nonce": "n"});
        let good = sign(&key, &h, &claims);
        assert_eq!(verify_rs256(&good, &jwks).unwrap()["sub"], "u1");
        // Signed by another key, tampered claims, alg none: refused.
        assert!(verify_rs256(&sign(&other, &h, &claims), &jwks).is_err());
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged = B64.encode(json!({"sub": "admin", "nonce": "n"}).to_string());
        parts[1] = &forged;
        assert!(verify_rs256(&parts.join("."), &jwks).is_err());
        let none = format!(
            "{}.{}.",
            B64.encode(json!({"alg": "none"}).to_string()),
            B64.encode(claims.to_string())
        );
        assert!(verify_rs256(&none, &jwks).unwrap_err().contains("RS256"));
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
