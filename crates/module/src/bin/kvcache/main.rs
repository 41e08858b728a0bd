//! `kvcache`: the example ThingsDB module of `thingsdb-module`, a
//! key-value cache held in the module's memory.
//!
//! Install it from the node's `modules_path` (see the crate's README):
//! copy this binary to `<modules_path>/kvcache/kvcache`, then in the
//! `@thingsdb` scope run
//! `new_module('kvcache', 'kvcache', {max_keys: 1000});`.
//!
//! Requests (`future({module: 'kvcache', load: true, op: ..., ...})`):
//!
//! | op | fields | answer |
//! |---|---|---|
//! | `set` | `key`, `value`, optional `ttl` (seconds) | `nil` |
//! | `get` | `key`, optional `wait` (seconds to wait for the key to be set), optional `default` | the value; `lookup_err` if missing and no `default` |
//! | `del` | `key` | whether the key was there |
//! | `keys` | | the keys, sorted |
//!
//! Configuration: `{max_keys: int, timeout: float}` (both optional;
//! defaults 10000 keys and 60 seconds per request). More keys than
//! `max_keys` give `max_quota_err`; a request running past `timeout` is
//! answered with `cancelled_err`.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rmpv::Value;
use serde::Deserialize;
use thingsdb_module::{Error, Handler, Module};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{error, info};

const DEFAULT_MAX_KEYS: usize = 10_000;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The module's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    max_keys: Option<usize>,
    /// Seconds a request may take.
    timeout: Option<f64>,
}

/// One request; `op` says which.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Request {
    Set {
        key: String,
        value: Value,
        ttl: Option<f64>,
    },
    Get {
        key: String,
        wait: Option<f64>,
        default: Option<Value>,
    },
    Del {
        key: String,
    },
    Keys,
}

struct Entry {
    value: Value,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|t| t > now)
    }
}

struct Settings {
    max_keys: usize,
    timeout: Duration,
}

/// The cache.
struct KvCache {
    entries: Mutex<HashMap<String, Entry>>,
    settings: Mutex<Settings>,
    /// Woken on every `set`, for `get` with `wait`.
    changed: Notify,
}

impl Default for KvCache {
    fn default() -> Self {
        KvCache {
            entries: Mutex::new(HashMap::new()),
            settings: Mutex::new(Settings {
                max_keys: DEFAULT_MAX_KEYS,
                timeout: DEFAULT_TIMEOUT,
            }),
            changed: Notify::new(),
        }
    }
}

fn seconds(field: &str, v: f64) -> Result<Duration, Error> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| Error::value(format!("`{field}` must be a positive number of seconds")))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a map half-changed here
    // (every change is one insert or remove), so the data stays usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl KvCache {
    fn lookup(&self, key: &str) -> Option<Value> {
        let now = Instant::now();
        let mut entries = lock(&self.entries);
        match entries.get(key) {
            Some(e) if e.live(now) => Some(e.value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn set(&self, key: String, value: Value, ttl: Option<f64>) -> Result<(), Error> {
        let expires = ttl
            .map(|t| seconds("ttl", t).map(|d| Instant::now() + d))
            .transpose()?;
        let max = lock(&self.settings).max_keys;
        {
            let now = Instant::now();
            let mut entries = lock(&self.entries);
            if !entries.contains_key(&key) && entries.len() >= max {
                entries.retain(|_, e| e.live(now));
                if entries.len() >= max {
                    return Err(Error::max_quota(format!("the cache is full ({max} keys)")));
                }
            }
            entries.insert(key, Entry { value, expires });
        }
        self.changed.notify_waiters();
        Ok(())
    }

    async fn get(
        &self,
        key: String,
        wait: Option<f64>,
        default: Option<Value>,
    ) -> Result<Value, Error> {
        let deadline = wait
            .map(|w| seconds("wait", w).map(|d| Instant::now() + d))
            .transpose()?;
        loop {
            // Listen before looking, so that a `set` in between is seen.
            let changed = self.changed.notified();
            if let Some(v) = self.lookup(&key) {
                return Ok(v);
            }
            match deadline {
                Some(d) if Instant::now() < d => {
                    let _ = tokio::time::timeout_at(d, changed).await;
                }
                _ => {
                    return default.ok_or_else(|| Error::lookup(format!("no key `{key}`")));
                }
            }
        }
    }
}

impl Handler for KvCache {
    type Config = Config;
    type Request = Request;
    type Response = Value;

    async fn configure(&self, config: Config) -> Result<(), Error> {
        let max_keys = config.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
        if max_keys == 0 {
            return Err(Error::value("`max_keys` must be at least 1"));
        }
        let timeout = match config.timeout {
            Some(t) => seconds("timeout", t)?,
            None => DEFAULT_TIMEOUT,
        };
        *lock(&self.settings) = Settings { max_keys, timeout };
        info!(max_keys, ?timeout, "kvcache configured");
        Ok(())
    }

    async fn handle(&self, request: Request) -> Result<Value, Error> {
        match request {
            Request::Set { key, value, ttl } => self.set(key, value, ttl).map(|()| Value::Nil),
            Request::Get { key, wait, default } => self.get(key, wait, default).await,
            Request::Del { key } => Ok(Value::from(lock(&self.entries).remove(&key).is_some())),
            Request::Keys => {
                let now = Instant::now();
                let mut keys: Vec<String> = lock(&self.entries)
                    .iter()
                    .filter(|(_, e)| e.live(now))
                    .map(|(k, _)| k.clone())
                    .collect();
                keys.sort();
                Ok(Value::Array(keys.into_iter().map(Value::from).collect()))
            }
        }
    }

    fn timeout(&self, _request: &Request) -> Option<Duration> {
        Some(lock(&self.settings).timeout)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = thingsdb_module::init_logging();
    info!(pid = std::process::id(), "kvcache module started");
    match Module::new(KvCache::default()).run().await {
        Ok(stopped) => {
            info!(
                pid = std::process::id(),
                "kvcache module stopped ({stopped:?})"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!(pid = std::process::id(), "kvcache module failed: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use thingsdb_module::ErrorCode;

    fn req(v: Value) -> Request {
        rmp_serde::from_slice(&rmp_serde::to_vec_named(&v).unwrap()).unwrap()
    }

    fn map(kv: &[(&str, Value)]) -> Value {
        Value::Map(
            kv.iter()
                .map(|(k, v)| (Value::from(*k), v.clone()))
                .collect(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn set_get_del_keys() {
        let c = KvCache::default();
        let set = req(map(&[
            ("module", "kvcache".into()),
            ("op", "set".into()),
            ("key", "a".into()),
            ("value", Value::from(5)),
        ]));
        assert_eq!(c.handle(set).await.unwrap(), Value::Nil);
        let get = req(map(&[("op", "get".into()), ("key", "a".into())]));
        assert_eq!(c.handle(get).await.unwrap(), Value::from(5));
        let keys = req(map(&[("op", "keys".into())]));
        assert_eq!(
            c.handle(keys).await.unwrap(),
            Value::Array(vec!["a".into()])
        );
        let del = req(map(&[("op", "del".into()), ("key", "a".into())]));
        assert_eq!(c.handle(del).await.unwrap(), Value::from(true));
        let get = req(map(&[("op", "get".into()), ("key", "a".into())]));
        assert_eq!(c.handle(get).await.unwrap_err().code(), ErrorCode::Lookup);
    }

    #[tokio::test(start_paused = true)]
    async fn ttl_expires_and_wait_sees_a_later_set() {
        let c = std::sync::Arc::new(KvCache::default());
        c.set("t".into(), Value::from(1), Some(1.0)).unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(c.lookup("t").is_none());
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.get("w".into(), Some(30.0), None).await })
        };
        tokio::task::yield_now().await;
        c.set("w".into(), Value::from("x"), None).unwrap();
        assert_eq!(waiter.await.unwrap().unwrap(), Value::from("x"));
        let e = c.get("never".into(), Some(1.0), None).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::Lookup);
        let v = c
            .get("never".into(), None, Some(Value::from(0)))
            .await
            .unwrap();
        assert_eq!(v, Value::from(0));
    }

    #[tokio::test]
    async fn limits_and_bad_values_are_typed_errors() {
        let c = KvCache::default();
        c.configure(Config {
            max_keys: Some(1),
            timeout: Some(2.5),
        })
        .await
        .unwrap();
        assert_eq!(c.timeout(&Request::Keys), Some(Duration::from_millis(2500)));
        c.set("a".into(), Value::Nil, None).unwrap();
        c.set("a".into(), Value::from(2), None).unwrap();
        let e = c.set("b".into(), Value::Nil, None).unwrap_err();
        assert_eq!(e.code(), ErrorCode::MaxQuota);
        assert_eq!(
            c.set("c".into(), Value::Nil, Some(-1.0))
                .unwrap_err()
                .code(),
            ErrorCode::Value
        );
        for bad in [
            Config {
                max_keys: Some(0),
                timeout: None,
            },
            Config {
                max_keys: None,
                timeout: Some(f64::NAN),
            },
        ] {
            assert_eq!(c.configure(bad).await.unwrap_err().code(), ErrorCode::Value);
        }
    }

    /// The module.json shipped for a packaged install holds what a node
    /// 1.9.2 requires (src/ti/mod/manifest.c): `main` (a file, or a map
    /// of `os/arch` to files) and a `version` of up to three numbers.
    #[test]
    fn module_json_has_what_a_node_requires() {
        let m: serde_json::Value = serde_json::from_str(include_str!("module.json")).unwrap();
        let obj = m.as_object().unwrap();
        let known = [
            "main",
            "version",
            "doc",
            "defaults",
            "includes",
            "exposes",
            "requirements",
        ];
        for k in obj.keys() {
            assert!(known.contains(&k.as_str()), "a node refuses key {k}");
        }
        let main = obj["main"].as_object().unwrap();
        assert!(main.contains_key("linux/amd64"));
        for file in main.values() {
            let f = file.as_str().unwrap();
            assert!(!f.is_empty() && !f.starts_with('/') && !f.contains("..") && !f.contains("./"));
        }
        let version = obj["version"].as_str().unwrap();
        let parts: Vec<&str> = version.split('.').collect();
        assert!(parts.len() <= 3);
        assert!(parts
            .iter()
            .all(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit())));
        assert_eq!(obj["defaults"]["load"], serde_json::Value::Bool(true));
        // Every exposed function names an `op` this module knows.
        for (name, f) in obj["exposes"].as_object().unwrap() {
            let op = f["defaults"]["op"].as_str().unwrap();
            assert_eq!(op, name);
            let mut fields = vec![("op", Value::from(op)), ("key", Value::from("k"))];
            if op == "set" {
                fields.push(("value", Value::Nil));
            }
            let _: Request = req(map(&fields));
        }
    }
}
