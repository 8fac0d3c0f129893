//! Auth tokens of this member: etcd's `--auth-token` providers (`simple` and `jwt`),
//! `--auth-token-ttl` and `--bcrypt-cost`.
//!
//! # Simple tokens
//!
//! A token is issued by `Authenticate` through the log, so every member learns it (as
//! in etcd, where the simple token provider assigns the token while applying the
//! request); the replicated store cannot expire it (it has no clock). Each member
//! therefore tracks when it last saw each token: a token unused for `--auth-token-ttl`
//! seconds (etcd's default: 300) on this member is refused from then on ("etcdserver:
//! invalid auth token"), and every use restarts the countdown, as etcd's simple tokens
//! do. A token's countdown starts the first time this member sees it. Tracking is in
//! memory: after a restart, tokens that the member re-learns from its log are valid
//! again for one time-to-live (the token itself dies with the user's password change,
//! deletion or `AuthDisable`).
//!
//! # JWT tokens
//!
//! `--auth-token jwt,pub-key=<file>,priv-key=<file>,sign-method=<alg>[,ttl=<duration>]`
//! (etcd's options; `ttl` defaults to 5m): `Authenticate` signs, on the member that
//! checked the password, a JWT with the claims `username`, `revision` (the auth store's
//! revision) and `exp`; nothing goes through the log. Every member holding the key
//! verifies such a token by its signature alone. A token older than the auth store
//! (issued before a later user, role or permission change) is refused for key-value
//! requests with "etcdserver: revision of auth store is old", on which etcd's clients
//! authenticate again. Sign methods: RS256/384/512, PS256/384/512 (RSA keys, PEM),
//! ES256/ES384 (EC keys, PEM), HS256/384/512 (the `priv-key` file's bytes are the
//! secret). etcd also knows ES512, which the crypto library here (ring) lacks: refused.
//! A member given only `pub-key` verifies tokens and refuses to sign them, as etcd.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a simple token stays valid without being used (etcd's `--auth-token-ttl`
/// default: 5 minutes).
pub const SIMPLE_TOKEN_TTL: Duration = Duration::from_secs(300);

/// etcd's default `--bcrypt-cost`.
pub const BCRYPT_COST_DEFAULT: u32 = 10;

/// Lifetime of a JWT when `ttl` is not given (etcd: 5 minutes).
pub const JWT_TTL_DEFAULT: Duration = Duration::from_secs(300);

/// Most tokens tracked before the tracker forgets tokens the store no longer knows.
const TRACKED_TOKENS_MAX: usize = 2 * kv::SIMPLE_TOKENS_MAX;

#[derive(Clone, Copy, Debug)]
struct Activity {
    last_used: Instant,
    expired: bool,
}

/// Last use of every simple token seen by this member.
#[derive(Debug)]
pub struct TokenActivity {
    time_to_live: Duration,
    tokens: Mutex<HashMap<String, Activity>>,
}

impl Default for TokenActivity {
    fn default() -> TokenActivity {
        TokenActivity::new(SIMPLE_TOKEN_TTL)
    }
}

impl TokenActivity {
    /// A tracker that expires tokens unused for `time_to_live`.
    pub fn new(time_to_live: Duration) -> TokenActivity {
        assert!(!time_to_live.is_zero(), "tokens must live a while");
        TokenActivity { time_to_live, tokens: Mutex::new(HashMap::new()) }
    }

    /// Records a use of `token` (known to `auth`) at `now`; false if it has expired.
    pub fn touch(&self, token: &str, now: Instant, auth: &kv::AuthStore) -> bool {
        let mut tokens = self.tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if tokens.len() >= TRACKED_TOKENS_MAX {
            tokens.retain(|tracked, _| auth.user_for_token(tracked).is_some());
        }
        let activity = tokens.entry(token.to_string()).or_insert(Activity { last_used: now, expired: false });
        if activity.expired || now.saturating_duration_since(activity.last_used) > self.time_to_live {
            activity.expired = true;
            return false;
        }
        activity.last_used = activity.last_used.max(now);
        assert!(tokens.len() <= TRACKED_TOKENS_MAX + 1, "token tracking is bounded");
        true
    }
}

/// The auth settings of a member: token provider, simple-token lifetime, bcrypt cost.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// Which tokens `Authenticate` hands out and requests must carry.
    pub provider: TokenProvider,
    /// How long a simple token lives unused (`--auth-token-ttl`).
    pub simple_token_ttl: Duration,
    /// bcrypt cost of password hashes made by this member (`--bcrypt-cost`).
    pub bcrypt_cost: u32,
}

impl Default for AuthSettings {
    fn default() -> AuthSettings {
        AuthSettings {
            provider: TokenProvider::Simple,
            simple_token_ttl: SIMPLE_TOKEN_TTL,
            bcrypt_cost: BCRYPT_COST_DEFAULT,
        }
    }
}

impl AuthSettings {
    /// From `--auth-token`, `--auth-token-ttl` (seconds) and `--bcrypt-cost`; errors name
    /// the flag and the option.
    pub fn from_flags(auth_token: &str, auth_token_ttl_seconds: u64, bcrypt_cost: u32) -> Result<AuthSettings, String> {
        if !(4..=31).contains(&bcrypt_cost) {
            return Err(format!("--bcrypt-cost: {bcrypt_cost} is outside bcrypt's range 4..31"));
        }
        if auth_token_ttl_seconds == 0 {
            return Err("--auth-token-ttl: must be at least 1 second".into());
        }
        Ok(AuthSettings {
            provider: TokenProvider::from_flag(auth_token)?,
            simple_token_ttl: Duration::from_secs(auth_token_ttl_seconds),
            bcrypt_cost,
        })
    }
}

/// Which tokens this member issues and accepts (`--auth-token`).
#[derive(Clone, Debug)]
pub enum TokenProvider {
    /// Random tokens replicated through the log (etcd's default).
    Simple,
    /// Signed JWTs.
    Jwt(Arc<JwtProvider>),
}

impl TokenProvider {
    /// Parses `--auth-token` as etcd: `simple`, or `jwt` followed by `,key=value` options.
    pub fn from_flag(text: &str) -> Result<TokenProvider, String> {
        let mut parts = text.split(',');
        let kind = parts.next().unwrap_or_default();
        let mut options = BTreeMap::new();
        for part in parts {
            let Some((key, value)) = part.split_once('=').filter(|(_, value)| !value.contains('=')) else {
                return Err(format!("--auth-token: option '{part}' is not key=value"));
            };
            if options.insert(key.to_string(), value.to_string()).is_some() {
                return Err(format!("--auth-token: option '{key}' is given twice"));
            }
        }
        match kind {
            "simple" => Ok(TokenProvider::Simple),
            "jwt" => Ok(TokenProvider::Jwt(Arc::new(JwtProvider::from_options(&options)?))),
            other => Err(format!("--auth-token: unknown token type '{other}' (expected 'simple' or 'jwt,...')")),
        }
    }
}

/// What a verified token says.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JwtClaims {
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// The auth store revision the token was issued at.
    pub revision: u64,
    /// The authenticated user.
    pub username: String,
}

/// Signs and verifies etcd's JWT tokens.
pub struct JwtProvider {
    algorithm: jsonwebtoken::Algorithm,
    signing: Option<jsonwebtoken::EncodingKey>,
    verifying: jsonwebtoken::DecodingKey,
    /// Lifetime of a token (`ttl`).
    pub ttl: Duration,
}

impl std::fmt::Debug for JwtProvider {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("JwtProvider")
            .field("algorithm", &self.algorithm)
            .field("signs", &self.signing.is_some())
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// Why a JWT could not be issued.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Only `pub-key` was given (etcd's `ErrVerifyOnly`).
    #[error("auth: token signing attempted with verify-only key")]
    VerifyOnly,
    /// The signing library failed.
    #[error("auth: cannot sign the token: {0}")]
    Signing(String),
}

fn read_option_file(key: &str, path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|error| format!("--auth-token: {key}={path}: cannot read: {error}"))
}

impl JwtProvider {
    /// From etcd's jwt options (`sign-method` required; `pub-key`, `priv-key`, `ttl`).
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<JwtProvider, String> {
        use jsonwebtoken::Algorithm;
        for key in options.keys() {
            if !["sign-method", "pub-key", "priv-key", "ttl"].contains(&key.as_str()) {
                tracing::warn!(option = %key, "--auth-token: unknown JWT option (ignored, as etcd)");
            }
        }
        let ttl = match options.get("ttl").filter(|ttl| !ttl.is_empty()) {
            None => JWT_TTL_DEFAULT,
            Some(text) => {
                let parsed = crate::compactor::parse_go_duration(text)
                    .map_err(|error| format!("--auth-token: ttl={text}: {error}"))?;
                if parsed.negative || parsed.nanoseconds == 0 {
                    return Err(format!("--auth-token: ttl={text}: must be positive"));
                }
                Duration::from_nanos(u64::try_from(parsed.nanoseconds).unwrap_or(u64::MAX))
            }
        };
        let method = options.get("sign-method").map(String::as_str).unwrap_or_default();
        let algorithm =
            match method {
                "" => return Err("--auth-token: jwt needs the option sign-method (e.g. sign-method=RS256)".into()),
                "ES512" => return Err(
                    "--auth-token: sign-method=ES512 is not supported by raftkv (no P-521 curve); use ES256 or ES384"
                        .into(),
                ),
                other => other
                    .parse::<Algorithm>()
                    .ok()
                    .filter(|algorithm| *algorithm != Algorithm::EdDSA)
                    .ok_or_else(|| format!("--auth-token: sign-method={other} is not a known signing method"))?,
            };
        let private_key = options.get("priv-key").filter(|path| !path.is_empty());
        let public_key = options.get("pub-key").filter(|path| !path.is_empty());
        let private_bytes = private_key.map(|path| read_option_file("priv-key", path)).transpose()?;
        let public_bytes = public_key.map(|path| read_option_file("pub-key", path)).transpose()?;
        let (signing, verifying) = jwt_keys(algorithm, private_bytes.as_deref(), public_bytes.as_deref())?;
        Ok(JwtProvider { algorithm, signing, verifying, ttl })
    }

    /// A signed token for `username` at auth revision `revision`, expiring `ttl` from now.
    pub fn assign(&self, username: &str, revision: u64) -> Result<String, JwtError> {
        let signing = self.signing.as_ref().ok_or(JwtError::VerifyOnly)?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let claims = JwtClaims { exp: (now + self.ttl).as_secs(), revision, username: username.to_string() };
        jsonwebtoken::encode(&jsonwebtoken::Header::new(self.algorithm), &claims, signing)
            .map_err(|error| JwtError::Signing(error.to_string()))
    }

    /// The claims of `token` if its signature and method are this provider's and it has
    /// not expired.
    pub fn verify(&self, token: &str) -> Option<JwtClaims> {
        let mut validation = jsonwebtoken::Validation::new(self.algorithm);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp"]);
        match jsonwebtoken::decode::<JwtClaims>(token, &self.verifying, &validation) {
            Ok(data) => Some(data.claims),
            Err(error) => {
                tracing::debug!(%error, "refused a JWT");
                None
            }
        }
    }
}

/// The signing key (if a private key is given) and the verifying key (the public key,
/// or derived from the private key) for `algorithm`.
fn jwt_keys(
    algorithm: jsonwebtoken::Algorithm,
    private_pem: Option<&[u8]>,
    public_pem: Option<&[u8]>,
) -> Result<(Option<jsonwebtoken::EncodingKey>, jsonwebtoken::DecodingKey), String> {
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
    let key_error = |option: &str, error: jsonwebtoken::errors::Error| {
        format!("--auth-token: {option}: unusable key for {algorithm:?}: {error}")
    };
    match algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            let secret = private_pem
                .filter(|secret| !secret.is_empty())
                .ok_or("--auth-token: HMAC sign methods need priv-key (the secret)")?;
            Ok((Some(EncodingKey::from_secret(secret)), DecodingKey::from_secret(secret)))
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            let signing = private_pem
                .map(|pem| EncodingKey::from_ec_pem(pem).map_err(|error| key_error("priv-key", error)))
                .transpose()?;
            let verifying = match (public_pem, private_pem) {
                (Some(pem), _) => DecodingKey::from_ec_pem(pem).map_err(|error| key_error("pub-key", error))?,
                (None, Some(pem)) => DecodingKey::from_ec_der(&ec_public_point(algorithm, pem)?),
                (None, None) => return Err("--auth-token: jwt needs pub-key or priv-key".into()),
            };
            Ok((signing, verifying))
        }
        _ => {
            let signing = private_pem
                .map(|pem| EncodingKey::from_rsa_pem(pem).map_err(|error| key_error("priv-key", error)))
                .transpose()?;
            let verifying = match (public_pem, private_pem) {
                (Some(pem), _) => DecodingKey::from_rsa_pem(pem).map_err(|error| key_error("pub-key", error))?,
                (None, Some(pem)) => DecodingKey::from_rsa_der(&rsa_public_key(pem)?),
                (None, None) => return Err("--auth-token: jwt needs pub-key or priv-key".into()),
            };
            Ok((signing, verifying))
        }
    }
}

/// The PKCS#1 public key of an RSA private key (PEM, PKCS#1 or PKCS#8).
fn rsa_public_key(private_pem: &[u8]) -> Result<Vec<u8>, String> {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::PrivateKeyDer::from_pem_slice(private_pem)
        .map_err(|error| format!("--auth-token: priv-key: not a PEM private key: {error}"))?;
    let pair = match &der {
        rustls_pki_types::PrivateKeyDer::Pkcs1(key) => ring::rsa::KeyPair::from_der(key.secret_pkcs1_der()),
        rustls_pki_types::PrivateKeyDer::Pkcs8(key) => ring::rsa::KeyPair::from_pkcs8(key.secret_pkcs8_der()),
        _ => return Err("--auth-token: priv-key: not an RSA private key".into()),
    }
    .map_err(|error| format!("--auth-token: priv-key: unusable RSA key: {error}"))?;
    Ok(ring::signature::KeyPair::public_key(&pair).as_ref().to_vec())
}

/// The public point of an EC private key (PEM, PKCS#8).
fn ec_public_point(algorithm: jsonwebtoken::Algorithm, private_pem: &[u8]) -> Result<Vec<u8>, String> {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(private_pem)
        .map_err(|error| format!("--auth-token: priv-key: not a PKCS#8 PEM private key: {error}"))?;
    let curve = if algorithm == jsonwebtoken::Algorithm::ES256 {
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING
    } else {
        &ring::signature::ECDSA_P384_SHA384_FIXED_SIGNING
    };
    let random = ring::rand::SystemRandom::new();
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(curve, der.secret_pkcs8_der(), &random)
        .map_err(|error| format!("--auth-token: priv-key: unusable EC key: {error}"))?;
    Ok(ring::signature::KeyPair::public_key(&pair).as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expire_when_unused_and_stay_expired() {
        let activity = TokenActivity::new(Duration::from_secs(10));
        let auth = kv::AuthStore::default();
        let start = Instant::now();
        assert!(activity.touch("t", start, &auth));
        assert!(activity.touch("t", start + Duration::from_secs(9), &auth));
        assert!(activity.touch("t", start + Duration::from_secs(18), &auth), "each use restarts the countdown");
        assert!(!activity.touch("t", start + Duration::from_secs(29), &auth));
        assert!(!activity.touch("t", start + Duration::from_secs(29), &auth), "an expired token stays expired");
        assert!(activity.touch("other", start + Duration::from_secs(29), &auth));
    }
}

#[cfg(test)]
mod jwt_tests {
    use super::*;

    fn provider_files(directory: &std::path::Path, method: &str) -> (String, String) {
        let algorithm = if method == "ES384" { &rcgen::PKCS_ECDSA_P384_SHA384 } else { &rcgen::PKCS_ECDSA_P256_SHA256 };
        let pair = rcgen::KeyPair::generate_for(algorithm).expect("key pair");
        let private = directory.join("private.pem");
        let public = directory.join("public.pem");
        std::fs::write(&private, pair.serialize_pem()).expect("write");
        std::fs::write(&public, pair.public_key_pem()).expect("write");
        (private.display().to_string(), public.display().to_string())
    }

    #[test]
    fn jwt_tokens_carry_etcds_claims_and_verify_with_the_public_key_only() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let (private, public) = provider_files(directory.path(), "ES256");
        let flag = format!("jwt,pub-key={public},priv-key={private},sign-method=ES256,ttl=10m");
        let TokenProvider::Jwt(signer) = TokenProvider::from_flag(&flag).expect("parses") else { panic!("jwt") };
        assert_eq!(signer.ttl, Duration::from_secs(600));
        let token = signer.assign("alice", 7).expect("signs");
        let claims = signer.verify(&token).expect("verifies");
        assert_eq!((claims.username.as_str(), claims.revision), ("alice", 7));
        let verifier_flag = format!("jwt,pub-key={public},sign-method=ES256");
        let TokenProvider::Jwt(verifier) = TokenProvider::from_flag(&verifier_flag).expect("parses") else { panic!() };
        assert_eq!(verifier.verify(&token), Some(claims.clone()), "another member with the public key");
        assert_eq!(verifier.assign("alice", 7), Err(JwtError::VerifyOnly));
        let private_only = format!("jwt,priv-key={private},sign-method=ES256");
        let TokenProvider::Jwt(derived) = TokenProvider::from_flag(&private_only).expect("parses") else { panic!() };
        assert_eq!(derived.verify(&token), Some(claims), "public key derived from the private key");
        let mut tampered = token.clone();
        tampered.insert(tampered.len() / 2, 'x');
        assert_eq!(signer.verify(&tampered), None);
        let (other_private, other_public) = provider_files(&directory.path().join(""), "ES384");
        let other = format!("jwt,pub-key={other_public},priv-key={other_private},sign-method=ES384");
        let TokenProvider::Jwt(stranger) = TokenProvider::from_flag(&other).expect("parses") else { panic!() };
        assert_eq!(stranger.verify(&token), None, "another key and method");
    }

    #[test]
    fn expired_jwt_tokens_are_refused() {
        let secret = tempfile::NamedTempFile::new().expect("file");
        std::fs::write(secret.path(), b"shared secret").expect("write");
        let flag = format!("jwt,priv-key={},sign-method=HS256,ttl=1ns", secret.path().display());
        let TokenProvider::Jwt(provider) = TokenProvider::from_flag(&flag).expect("parses") else { panic!() };
        let claims = JwtClaims { exp: 1, revision: 1, username: "alice".into() };
        let key = jsonwebtoken::EncodingKey::from_secret(b"shared secret");
        let old =
            jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key).unwrap();
        assert_eq!(provider.verify(&old), None, "expired in 1970");
        let fresh = JwtClaims { exp: u64::MAX / 2, ..claims };
        let good =
            jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &fresh, &key).unwrap();
        assert_eq!(provider.verify(&good), Some(fresh));
    }

    #[test]
    fn malformed_auth_token_flags_name_the_option() {
        let cases = [
            ("bogus", "unknown token type 'bogus'"),
            ("jwt", "sign-method"),
            ("jwt,sign-method=RS256,pub-key", "'pub-key' is not key=value"),
            ("jwt,sign-method=XX999", "sign-method=XX999"),
            ("jwt,sign-method=ES512", "ES512"),
            ("jwt,sign-method=RS256,pub-key=/nonexistent/key.pem", "pub-key=/nonexistent/key.pem"),
            ("jwt,sign-method=RS256,ttl=5", "ttl=5"),
            ("jwt,sign-method=RS256,ttl=1m,ttl=2m", "'ttl' is given twice"),
            ("jwt,sign-method=RS256", "pub-key or priv-key"),
        ];
        for (flag, expected) in cases {
            let error = TokenProvider::from_flag(flag).expect_err(flag);
            assert!(error.starts_with("--auth-token") && error.contains(expected), "{flag}: {error}");
        }
        assert!(matches!(TokenProvider::from_flag("simple"), Ok(TokenProvider::Simple)));
        assert!(AuthSettings::from_flags("simple", 300, 3).expect_err("cost").contains("--bcrypt-cost"));
        assert!(AuthSettings::from_flags("simple", 0, 10).expect_err("ttl").contains("--auth-token-ttl"));
        assert_eq!(
            AuthSettings::from_flags("simple", 60, 12).expect("valid").simple_token_ttl,
            Duration::from_secs(60)
        );
    }
}
