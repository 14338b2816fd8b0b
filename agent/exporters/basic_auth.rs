//! Basic auth against the web config's bcrypt hashes, as exporter-toolkit does it: every refusal
//! costs one bcrypt verification (an unknown user and a request without credentials are
//! verified against a dummy hash of the same cost), so timing tells neither which users exist
//! nor whether credentials were sent. Verifications run one at a time off the async workers.
//! Successes are cached so that a scraper does not pay bcrypt on every request; the cache is
//! keyed by an HMAC (a key made at start) of user, hash and password, so it holds no password.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine;
use ring::hmac;
use tokio::sync::Semaphore;

use crate::config::web::WebConfig;

/// Entries kept: a handful of scrapers and operators, as in exporter-toolkit.
const CACHE_SIZE: usize = 100;

pub struct BasicAuth {
    key: hmac::Key,
    /// exporter-toolkit runs one bcrypt at a time: it is CPU-bound by design.
    bcrypt: Semaphore,
    verified: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    keys: HashSet<Vec<u8>>,
    order: VecDeque<Vec<u8>>,
}

impl Default for BasicAuth {
    fn default() -> BasicAuth {
        BasicAuth::new()
    }
}

impl BasicAuth {
    pub fn new() -> BasicAuth {
        let rng = ring::rand::SystemRandom::new();
        // A failed generate leaves no usable key: fall back to a fixed one, which only makes
        // the cache keys predictable, never wrong.
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .unwrap_or_else(|_| hmac::Key::new(hmac::HMAC_SHA256, b"poolwatch basic auth cache"));
        BasicAuth {
            key,
            bcrypt: Semaphore::new(1),
            verified: Mutex::new(Cache::default()),
        }
    }

    /// Whether the request's credentials are those of a user of `config`.
    pub async fn allows(&self, config: &WebConfig, headers: &HeaderMap) -> bool {
        let (user, password) = credentials(headers).unwrap_or_default();
        let known = config.users.get(&user);
        let Some(hash) = known.or(config.dummy_hash.as_ref()) else {
            return false;
        };
        let key = self.cache_key(&user, hash.as_str(), &password);
        if known.is_some() && self.cached(&key) {
            return true;
        }
        let Ok(_permit) = self.bcrypt.acquire().await else {
            return false;
        };
        let hash = hash.as_str().to_string();
        let matches = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        let allowed = matches && known.is_some();
        if allowed {
            self.remember(key);
        }
        allowed
    }

    fn cache_key(&self, user: &str, hash: &str, password: &str) -> Vec<u8> {
        let mut context = hmac::Context::with_key(&self.key);
        for part in [user, hash, password] {
            // Length-prefixed, so that no two triples give the same input.
            context.update(&(part.len() as u64).to_le_bytes());
            context.update(part.as_bytes());
        }
        context.sign().as_ref().to_vec()
    }

    fn cached(&self, key: &[u8]) -> bool {
        self.verified
            .lock()
            .map(|cache| cache.keys.contains(key))
            .unwrap_or(false)
    }

    fn remember(&self, key: Vec<u8>) {
        let Ok(mut cache) = self.verified.lock() else {
            return;
        };
        if cache.keys.contains(&key) {
            return;
        }
        while cache.order.len() >= CACHE_SIZE {
            if let Some(oldest) = cache.order.pop_front() {
                cache.keys.remove(&oldest);
            }
        }
        cache.order.push_back(key.clone());
        cache.keys.insert(key);
    }
}

/// `Authorization: Basic base64(user:password)`; `None` when absent or malformed.
fn credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::web::Hash;
    use axum::http::HeaderValue;

    fn config() -> WebConfig {
        let mut config = WebConfig::default();
        let hash = bcrypt::hash("right", 4).unwrap();
        config.users.insert("alice".into(), Hash::new(hash));
        config.dummy_hash = Some(Hash::new(bcrypt::hash("dummy", 4).unwrap()));
        config
    }

    fn basic(user_password: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let encoded = base64::engine::general_purpose::STANDARD.encode(user_password);
        let value = HeaderValue::from_str(&format!("Basic {encoded}")).unwrap();
        headers.insert(AUTHORIZATION, value);
        headers
    }

    #[tokio::test]
    async fn right_wrong_missing_and_unknown() {
        let auth = BasicAuth::new();
        let config = config();
        assert!(auth.allows(&config, &basic("alice:right")).await);
        // Cached now: the same answer.
        assert!(auth.allows(&config, &basic("alice:right")).await);
        assert!(!auth.allows(&config, &basic("alice:wrong")).await);
        assert!(!auth.allows(&config, &basic("mallory:right")).await);
        assert!(!auth.allows(&config, &HeaderMap::new()).await);
        // The dummy hash's own password opens nothing.
        assert!(!auth.allows(&config, &basic("nobody:dummy")).await);
    }

    #[test]
    fn the_cache_holds_no_password_and_stays_bounded() {
        let auth = BasicAuth::new();
        let key = auth.cache_key("alice", "$2y$…", "hunter2");
        assert_eq!(key.len(), 32);
        assert!(!key.windows(7).any(|w| w == b"hunter2"));
        assert_ne!(key, auth.cache_key("alice", "$2y$…", "hunter3"));
        for i in 0..CACHE_SIZE + 10 {
            auth.remember(auth.cache_key("u", "h", &i.to_string()));
        }
        let cache = auth.verified.lock().unwrap();
        assert_eq!(
            (cache.keys.len(), cache.order.len()),
            (CACHE_SIZE, CACHE_SIZE)
        );
    }
}
