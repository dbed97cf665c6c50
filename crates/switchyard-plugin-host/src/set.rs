//! The set of configured plugins: which one serves a request, hot reload, and the listing the
//! admin API shows.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use sha2::{Digest, Sha256};
use switchyard_core::Catalog;

use crate::{LoadedPlugin, PluginEngine, PluginError, hex};

/// One configured plugin module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSpec {
    /// Name in `[plugins.modules]`.
    pub name: String,
    /// Its `.wasm` file.
    pub path: PathBuf,
}

/// The result of loading or reloading one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// Module name.
    pub module: String,
    /// `Ok(version)` when the new version serves, `Err(message)` when the old one (if any) stays.
    pub result: Result<String, String>,
}

/// What `GET /admin/plugins` shows for one module.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginListing {
    /// Module name.
    pub module: String,
    /// File.
    pub path: PathBuf,
    /// Whether it serves requests without a tenant match.
    pub active: bool,
    /// Tenants (context values) it serves.
    pub tenants: Vec<String>,
    /// The loaded version, if any.
    pub loaded: Option<LoadedListing>,
    /// The last load error, if the last attempt failed.
    pub last_error: Option<String>,
    /// Successful reloads since start.
    pub reloads_ok: u64,
    /// Failed reloads since start.
    pub reloads_failed: u64,
}

/// The loaded version of a module.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedListing {
    /// Plugin name (from `describe`).
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// Contract version.
    pub contract: String,
    /// SHA-256 of the file.
    pub sha256: String,
    /// Load time.
    pub loaded_at: SystemTime,
    /// Counters: calls, traps, timeouts, memory, invalid routes, refused, fallbacks.
    pub counters: Vec<(&'static str, u64)>,
}

struct Slot {
    spec: PluginSpec,
    current: ArcSwapOption<LoadedPlugin>,
    last_error: Mutex<Option<String>>,
    fingerprint: Mutex<Option<(SystemTime, u64)>>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
}

/// Every configured plugin, which one serves which request, and hot reload.
pub struct PluginSet {
    engine: Arc<PluginEngine>,
    catalog: Catalog,
    slots: Vec<Slot>,
    active: Option<String>,
    tenants: HashMap<String, String>,
    tenant_key: String,
    /// Serializes reloads (file watcher, admin endpoint, SIGHUP).
    reload_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for PluginSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginSet")
            .field("active", &self.active)
            .field("tenants", &self.tenants)
            .finish_non_exhaustive()
    }
}

fn fingerprint(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl PluginSet {
    /// A set over `specs`; nothing is loaded until [`PluginSet::load_all`].
    pub fn new(
        engine: PluginEngine,
        catalog: Catalog,
        specs: Vec<PluginSpec>,
        active: Option<String>,
        tenants: HashMap<String, String>,
        tenant_key: String,
    ) -> PluginSet {
        let slots = specs
            .into_iter()
            .map(|spec| Slot {
                spec,
                current: ArcSwapOption::empty(),
                last_error: Mutex::new(None),
                fingerprint: Mutex::new(None),
                reloads_ok: AtomicU64::new(0),
                reloads_failed: AtomicU64::new(0),
            })
            .collect();
        PluginSet {
            engine: Arc::new(engine),
            catalog,
            slots,
            active,
            tenants,
            tenant_key,
            reload_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<PluginEngine> {
        &self.engine
    }

    /// Loads (or reloads) every module, compiling on the blocking pool.
    pub async fn load_all(&self) -> Vec<ReloadOutcome> {
        let _guard = self.reload_lock.lock().await;
        let mut out = Vec::new();
        for slot in &self.slots {
            out.push(self.load_slot(slot).await);
        }
        out
    }

    /// Reloads the modules whose file changed (size or modification time, then content hash).
    pub async fn reload_changed(&self) -> Vec<ReloadOutcome> {
        let _guard = self.reload_lock.lock().await;
        let mut out = Vec::new();
        for slot in &self.slots {
            let now = fingerprint(&slot.spec.path);
            let before = slot.fingerprint.lock().ok().and_then(|f| *f);
            if now.is_some() && now != before {
                let same_content = match (std::fs::read(&slot.spec.path), slot.current.load_full())
                {
                    (Ok(bytes), Some(current)) => hex(&Sha256::digest(&bytes)) == current.sha256,
                    _ => false,
                };
                if same_content {
                    if let Ok(mut f) = slot.fingerprint.lock() {
                        *f = now;
                    }
                } else {
                    out.push(self.load_slot(slot).await);
                }
            }
        }
        out
    }

    async fn load_slot(&self, slot: &Slot) -> ReloadOutcome {
        let print = fingerprint(&slot.spec.path);
        let result = self.engine.load(&slot.spec.path, &self.catalog).await;
        if let Ok(mut f) = slot.fingerprint.lock() {
            *f = print;
        }
        let module = slot.spec.name.clone();
        match result {
            Ok(plugin) => {
                let version = plugin.info.version.clone();
                tracing::info!(module = %module, plugin = %plugin.info.name, version = %version, sha256 = %plugin.sha256, "plugin loaded");
                slot.current.store(Some(Arc::new(plugin)));
                slot.reloads_ok.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut e) = slot.last_error.lock() {
                    *e = None;
                }
                ReloadOutcome {
                    module,
                    result: Ok(version),
                }
            }
            Err(err) => {
                let message = error_chain(&err);
                tracing::error!(module = %module, error = %message, "plugin load failed; the previous version keeps serving");
                slot.reloads_failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut e) = slot.last_error.lock() {
                    *e = Some(message.clone());
                }
                ReloadOutcome {
                    module,
                    result: Err(message),
                }
            }
        }
    }

    /// The plugin serving a request with this context: the tenant's module when
    /// `context[tenant_key]` names one, else the active module. `None`: use the default route.
    pub fn select(&self, context: &HashMap<String, String>) -> Option<(&str, Arc<LoadedPlugin>)> {
        let module = context
            .get(&self.tenant_key)
            .and_then(|tenant| self.tenants.get(tenant))
            .or(self.active.as_ref())?;
        let slot = self.slots.iter().find(|s| &s.spec.name == module)?;
        Some((slot.spec.name.as_str(), slot.current.load_full()?))
    }

    /// Every module with its loaded version, counters and last error.
    pub fn list(&self) -> Vec<PluginListing> {
        self.slots
            .iter()
            .map(|s| {
                let loaded = s.current.load_full().map(|p| LoadedListing {
                    name: p.info.name.clone(),
                    version: p.info.version.clone(),
                    contract: p.info.contract.clone(),
                    sha256: p.sha256.clone(),
                    loaded_at: p.loaded_at,
                    counters: vec![
                        ("calls", p.stats.calls.load(Ordering::Relaxed)),
                        ("traps", p.stats.traps.load(Ordering::Relaxed)),
                        ("timeouts", p.stats.timeouts.load(Ordering::Relaxed)),
                        ("memory", p.stats.memory.load(Ordering::Relaxed)),
                        (
                            "invalid_routes",
                            p.stats.invalid_routes.load(Ordering::Relaxed),
                        ),
                        ("refused", p.stats.refused.load(Ordering::Relaxed)),
                        ("fallbacks", p.stats.fallbacks.load(Ordering::Relaxed)),
                    ],
                });
                PluginListing {
                    module: s.spec.name.clone(),
                    path: s.spec.path.clone(),
                    active: self.active.as_ref() == Some(&s.spec.name),
                    tenants: self
                        .tenants
                        .iter()
                        .filter(|(_, m)| **m == s.spec.name)
                        .map(|(t, _)| t.clone())
                        .collect(),
                    loaded,
                    last_error: s.last_error.lock().ok().and_then(|e| e.clone()),
                    reloads_ok: s.reloads_ok.load(Ordering::Relaxed),
                    reloads_failed: s.reloads_failed.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Polls the plugin files every `interval` and reloads the ones that changed, compiling on
    /// the blocking pool, until the set is dropped.
    pub fn spawn_watcher(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let set = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(set) = set.upgrade() else { return };
                set.reload_changed().await;
            }
        })
    }
}

/// The error and its causes on one line.
pub(crate) fn error_chain(err: &PluginError) -> String {
    let mut out = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
