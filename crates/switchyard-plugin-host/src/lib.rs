//! The sandboxed host for WebAssembly placement plugins.
//!
//! Plugins are wasmtime components implementing the WIT world `switchyard:router/placement-plugin`
//! (`wit/router@0.1.0/`). Each loaded plugin keeps an `InstancePre` and a small pool of warm
//! instances; every call runs under an epoch deadline and a memory cap, and a trapped instance
//! is dropped, never entered again. Plugins get no network, no filesystem, no environment and a
//! frozen clock: they are deterministic functions of their input.
//!
//! Invariant: the only crate that knows wasmtime. A plugin failure (trap, timeout, memory, invalid
//! route, incompatible contract) is a [`PluginError`] value; nothing a plugin does can take the
//! router down. API boundary: [`PluginEngine`], [`LoadedPlugin::route`], [`PluginSet`].

mod convert;
mod set;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use switchyard_core::routing::{Route, RouteRequest, validate};
use switchyard_core::{Catalog, ErrorCode};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use set::{PluginListing, PluginSet, PluginSpec, ReloadOutcome};

/// Generated bindings of the contract.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/router@0.1.0",
        world: "placement-plugin",
    });
}

use bindings::PlacementPluginPre;
use bindings::exports::switchyard::router::placement::PluginInfo;

/// The contract version this host speaks.
pub const CONTRACT_VERSION: &str = "0.1.0";
/// The interface every plugin must export.
pub const PLACEMENT_EXPORT: &str = "switchyard:router/placement";

/// Limits applied to every plugin call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostLimits {
    /// Deadline of one `route` call.
    pub call_timeout: Duration,
    /// Largest linear memory a plugin instance may grow to.
    pub max_memory_bytes: usize,
    /// Warm instances kept per plugin (and the pool allocator's size).
    pub max_instances: u32,
}

impl Default for HostLimits {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_millis(5),
            max_memory_bytes: 16 << 20,
            max_instances: 32,
        }
    }
}

/// Why a plugin could not be loaded or could not route a statement.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The plugin file could not be read.
    #[error("cannot read plugin file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid component or does not link against the host.
    #[error("plugin {path} does not compile or link")]
    Compile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The plugin speaks another contract version.
    #[error(
        "plugin {path} implements contract {found}, but this router speaks switchyard:router@{expected}"
    )]
    Contract {
        /// The file.
        path: PathBuf,
        /// What the plugin exports.
        found: String,
        /// What the host needs.
        expected: &'static str,
    },
    /// The plugin refused its catalog in `configure`.
    #[error("plugin `{plugin}` refused the catalog: {message}")]
    Configure {
        /// Plugin name.
        plugin: String,
        /// Its message.
        message: String,
    },
    /// The plugin trapped (panic, unreachable, out-of-bounds access...).
    #[error("plugin `{plugin}` trapped: {message}")]
    Trapped {
        /// Plugin name.
        plugin: String,
        /// The trap.
        message: String,
    },
    /// The plugin did not return before its deadline.
    #[error("plugin `{plugin}` did not return within {after_ms} ms")]
    Timeout {
        /// Plugin name.
        plugin: String,
        /// The deadline.
        after_ms: u64,
    },
    /// The plugin tried to grow its memory past the cap.
    #[error("plugin `{plugin}` exceeded its memory limit of {limit_bytes} bytes")]
    Memory {
        /// Plugin name.
        plugin: String,
        /// The cap.
        limit_bytes: usize,
    },
    /// The plugin returned a route that fails validation.
    #[error("plugin `{plugin}` returned an invalid route: {reason}")]
    InvalidRoute {
        /// Plugin name.
        plugin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The plugin declined to route the statement.
    #[error("plugin `{plugin}` refused the statement: {message}")]
    Refused {
        /// Plugin name.
        plugin: String,
        /// Its message.
        message: String,
    },
}

impl PluginError {
    /// The client-facing code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Trapped { .. } | Self::Configure { .. } => ErrorCode::PluginTrapped,
            Self::Timeout { .. } => ErrorCode::PluginTimeout,
            Self::Memory { .. } => ErrorCode::PluginMemory,
            Self::InvalidRoute { .. } => ErrorCode::RouteInvalid,
            Self::Refused { .. } => ErrorCode::NoRoute,
            Self::Read { .. } | Self::Compile { .. } | Self::Contract { .. } => ErrorCode::Internal,
        }
    }

    /// The failure kind, a closed set for counters and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Trapped { .. } | Self::Configure { .. } => "trap",
            Self::Timeout { .. } => "timeout",
            Self::Memory { .. } => "memory",
            Self::InvalidRoute { .. } => "invalid_route",
            Self::Refused { .. } => "refused",
            Self::Read { .. } | Self::Compile { .. } | Self::Contract { .. } => "load",
        }
    }
}

/// Per-store state: WASI (locked down), the memory cap, and the plugin's name for logs.
struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    plugin: Arc<str>,
    max_memory: usize,
    memory_exceeded: bool,
    /// The running call's budget: CPU time of the calling thread, and a wall-clock cap.
    call: CallBudget,
}

/// A call's deadline. The epoch ticker wakes the check once per millisecond tick; the first
/// check reads the calling thread's CPU clock, later ones charge the CPU time used since, plus one
/// tick for the time before it. The call is interrupted once that reaches `cpu` or `wall_ticks`
/// ticks have passed: a descheduled call on a busy machine is not failed for time it did not run,
/// a spinning one is stopped, and calls that finish within a tick never touch a clock.
#[derive(Clone, Copy)]
struct CallBudget {
    /// CPU time of the calling thread at the first tick (calls are synchronous: every check runs
    /// on the same thread).
    cpu_at_first_tick: Option<Duration>,
    ticks: u64,
    cpu: Duration,
    wall_ticks: u64,
}

fn thread_cpu() -> Option<Duration> {
    cpu_time::ThreadTime::try_now()
        .ok()
        .map(|t| t.as_duration())
}

impl CallBudget {
    fn start(cpu: Duration) -> CallBudget {
        let ms = u64::try_from(cpu.as_millis()).unwrap_or(u64::MAX).max(1);
        CallBudget {
            cpu_at_first_tick: None,
            ticks: 0,
            cpu,
            wall_ticks: ms.saturating_mul(20),
        }
    }

    /// Called at each epoch tick during the call; true when the call must stop.
    fn tick(&mut self) -> bool {
        self.ticks += 1;
        let now = thread_cpu();
        let first = *self
            .cpu_at_first_tick
            .get_or_insert(now.unwrap_or_default());
        let cpu_used = match now {
            Some(now) => now.saturating_sub(first) + TICK,
            None => TICK * u32::try_from(self.ticks).unwrap_or(u32::MAX),
        };
        cpu_used >= self.cpu || self.ticks >= self.wall_ticks
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime::ResourceLimiter for State {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.memory_exceeded = true;
            wasmtime::bail!(
                "memory limit of {} bytes exceeded (asked for {desired})",
                self.max_memory
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 16)
    }
}

impl bindings::switchyard::router::host::Host for State {
    fn log(&mut self, level: bindings::switchyard::router::host::Level, message: String) {
        use bindings::switchyard::router::host::Level;
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(plugin, message, "plugin log"),
            Level::Debug => tracing::debug!(plugin, message, "plugin log"),
            Level::Info => tracing::info!(plugin, message, "plugin log"),
            Level::Warn => tracing::warn!(plugin, message, "plugin log"),
            Level::Error => tracing::error!(plugin, message, "plugin log"),
        }
    }
}

/// A clock that never moves: plugins must not depend on time.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

fn locked_down_wasi() -> WasiCtx {
    let mut b = wasmtime_wasi::WasiCtx::builder();
    b.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        .secure_random(wasmtime_wasi::Deterministic::new(vec![
            0x5a, 0x17, 0xc4, 0x9e,
        ]))
        .insecure_random(wasmtime_wasi::Deterministic::new(vec![0x3c, 0x81]))
        .insecure_random_seed(0);
    b.build()
}

/// The wasmtime engine, linker and epoch ticker shared by all plugins.
pub struct PluginEngine {
    engine: Engine,
    linker: Linker<State>,
    limits: HostLimits,
    stop_ticker: Arc<AtomicBool>,
}

impl std::fmt::Debug for PluginEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginEngine")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

/// Epoch ticks per millisecond of deadline.
const TICK: Duration = Duration::from_millis(1);

impl PluginEngine {
    /// An engine with the pooling allocator, epoch interruption and a 1 ms epoch ticker.
    pub fn new(limits: HostLimits) -> wasmtime::Result<PluginEngine> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let mut pool = PoolingAllocationConfig::default();
        let n = limits.max_instances.max(1) * 4;
        pool.total_component_instances(n)
            .total_core_instances(n * 8)
            .total_memories(n * 2)
            .total_tables(n * 8)
            .max_memory_size(limits.max_memory_bytes.max(1 << 20));
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        // Guest calls are synchronous (a route call takes microseconds). WASI's synchronous stream
        // functions (a panic message on stderr, say) cannot run on a runtime thread; such a call
        // panics in the host function and `guarded` turns it into a trap of that one call.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        bindings::switchyard::router::host::add_to_linker::<State, HasSelf<State>>(
            &mut linker,
            |s| s,
        )?;
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let (ticker_engine, stop) = (engine.clone(), stop_ticker.clone());
        std::thread::Builder::new()
            .name("switchyard-epoch".to_owned())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    ticker_engine.increment_epoch();
                }
            })?;
        Ok(PluginEngine {
            engine,
            linker,
            limits,
            stop_ticker,
        })
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> HostLimits {
        self.limits
    }

    /// Compiles a plugin file and checks its contract version. Blocking (compilation takes tens
    /// of milliseconds): call it off the request path.
    pub fn compile(&self, path: &Path) -> Result<Compiled, PluginError> {
        let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.compile_bytes(&bytes, path)
    }

    /// [`PluginEngine::compile`] from bytes; `path` names the plugin in messages.
    pub fn compile_bytes(&self, bytes: &[u8], path: &Path) -> Result<Compiled, PluginError> {
        let compile = |source: wasmtime::Error| PluginError::Compile {
            path: path.to_owned(),
            source: source.into(),
        };
        let component = Component::new(&self.engine, bytes).map_err(compile)?;
        check_contract(&self.engine, &component, path)?;
        let pre = self.linker.instantiate_pre(&component).map_err(compile)?;
        let pre = PlacementPluginPre::new(pre).map_err(compile)?;
        Ok(Compiled {
            pre,
            path: path.to_owned(),
            sha256: hex(&Sha256::digest(bytes)),
        })
    }

    /// Instantiates a compiled plugin once (describe + configure with `catalog`) and returns it
    /// ready to route.
    pub fn activate(
        &self,
        compiled: Compiled,
        catalog: &Catalog,
    ) -> Result<LoadedPlugin, PluginError> {
        let Compiled { pre, path, sha256 } = compiled;
        let mut plugin = LoadedPlugin {
            info: PluginMeta {
                name: String::new(),
                version: String::new(),
                contract: String::new(),
            },
            name_tag: Arc::from(
                path.file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("plugin"),
            ),
            path,
            sha256,
            loaded_at: SystemTime::now(),
            pre,
            engine: self.engine.clone(),
            limits: self.limits,
            wit_catalog: convert::catalog(catalog),
            catalog: Arc::new(catalog.clone()),
            pool: Mutex::new(Vec::new()),
            stats: PluginStats::default(),
        };
        let mut instance = plugin.instantiate()?;
        let info = instance.describe(&plugin)?;
        if info.contract != CONTRACT_VERSION {
            return Err(PluginError::Contract {
                path: plugin.path.clone(),
                found: format!("switchyard:router@{} (as described)", info.contract),
                expected: CONTRACT_VERSION,
            });
        }
        plugin.name_tag = Arc::from(info.name.as_str());
        instance.store.data_mut().plugin = plugin.name_tag.clone();
        plugin.info = PluginMeta {
            name: info.name,
            version: info.version,
            contract: info.contract,
        };
        plugin.release(instance);
        Ok(plugin)
    }

    /// Compiles on the blocking pool, then activates.
    pub async fn load(
        self: &Arc<Self>,
        path: &Path,
        catalog: &Catalog,
    ) -> Result<LoadedPlugin, PluginError> {
        let engine = self.clone();
        let owned = path.to_owned();
        let compiled = tokio::task::spawn_blocking(move || engine.compile(&owned))
            .await
            .map_err(|e| PluginError::Compile {
                path: path.to_owned(),
                source: Box::new(e),
            })??;
        self.activate(compiled, catalog)
    }
}

/// A compiled plugin, not yet instantiated.
pub struct Compiled {
    pre: PlacementPluginPre<State>,
    path: PathBuf,
    sha256: String,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Runs a guest call, turning a panic in a host function it reached (WASI's blocking stream
/// functions on a runtime thread) into an error: the call fails as a trap, the router goes on.
fn guarded<T>(call: impl FnOnce() -> wasmtime::Result<T>) -> wasmtime::Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(wasmtime::format_err!(
                "the plugin called a host facility that is not available here ({what})"
            ))
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Refuses components that do not export the placement interface at this contract version,
/// naming the version they do export.
fn check_contract(engine: &Engine, component: &Component, path: &Path) -> Result<(), PluginError> {
    let wanted = format!("{PLACEMENT_EXPORT}@{CONTRACT_VERSION}");
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    if exports.contains(&wanted) {
        return Ok(());
    }
    let found = exports
        .iter()
        .find(|e| e.starts_with(PLACEMENT_EXPORT))
        .map(|e| e.replacen("switchyard:router/placement", "switchyard:router", 1))
        .unwrap_or_else(|| {
            format!(
                "none (exports: {})",
                if exports.is_empty() {
                    "nothing".to_owned()
                } else {
                    exports.join(", ")
                }
            )
        });
    Err(PluginError::Contract {
        path: path.to_owned(),
        found,
        expected: CONTRACT_VERSION,
    })
}

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginMeta {
    /// Name.
    pub name: String,
    /// Its own version.
    pub version: String,
    /// Contract version it was built against.
    pub contract: String,
}

/// Counters of one loaded plugin.
#[derive(Debug, Default)]
pub struct PluginStats {
    /// `route` calls.
    pub calls: AtomicU64,
    /// Calls that trapped.
    pub traps: AtomicU64,
    /// Calls past the deadline.
    pub timeouts: AtomicU64,
    /// Calls past the memory cap.
    pub memory: AtomicU64,
    /// Routes refused by validation.
    pub invalid_routes: AtomicU64,
    /// Statements the plugin declined.
    pub refused: AtomicU64,
    /// Failures answered with the default route instead.
    pub fallbacks: AtomicU64,
}

impl PluginStats {
    fn count(&self, err: &PluginError) {
        let counter = match err {
            PluginError::Trapped { .. } | PluginError::Configure { .. } => &self.traps,
            PluginError::Timeout { .. } => &self.timeouts,
            PluginError::Memory { .. } => &self.memory,
            PluginError::InvalidRoute { .. } => &self.invalid_routes,
            PluginError::Refused { .. } => &self.refused,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A warm instance: its store and bindings.
struct Instance {
    store: Store<State>,
    bindings: bindings::PlacementPlugin,
}

impl Instance {
    fn arm(&mut self, limits: HostLimits) {
        self.store.data_mut().call = CallBudget::start(limits.call_timeout);
        self.store.set_epoch_deadline(1);
        self.store.data_mut().memory_exceeded = false;
    }

    fn describe(&mut self, plugin: &LoadedPlugin) -> Result<PluginInfo, PluginError> {
        self.arm(plugin.limits);
        let (bindings, store) = (&self.bindings, &mut self.store);
        let answer = guarded(|| {
            bindings
                .switchyard_router_placement()
                .call_describe(&mut *store)
        });
        answer.map_err(|e| plugin.classify(e, &mut self.store))
    }
}

/// A compiled plugin with its warm instances.
pub struct LoadedPlugin {
    /// What it says about itself.
    pub info: PluginMeta,
    /// The file it came from.
    pub path: PathBuf,
    /// SHA-256 of the file.
    pub sha256: String,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// Its counters.
    pub stats: PluginStats,
    pre: PlacementPluginPre<State>,
    engine: Engine,
    limits: HostLimits,
    wit_catalog: bindings::switchyard::router::types::Catalog,
    catalog: Arc<Catalog>,
    pool: Mutex<Vec<Instance>>,
    name_tag: Arc<str>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("info", &self.info)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    fn instantiate(&self) -> Result<Instance, PluginError> {
        let state = State {
            wasi: locked_down_wasi(),
            table: ResourceTable::new(),
            plugin: self.name_tag.clone(),
            max_memory: self.limits.max_memory_bytes,
            memory_exceeded: false,
            // Instantiation and `configure` get ten call budgets.
            call: CallBudget::start(self.limits.call_timeout * 10),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s as &mut dyn wasmtime::ResourceLimiter);
        store.epoch_deadline_callback(|mut ctx| {
            Ok(if ctx.data_mut().call.tick() {
                wasmtime::UpdateDeadline::Interrupt
            } else {
                wasmtime::UpdateDeadline::Continue(1)
            })
        });
        store.set_epoch_deadline(1);
        let bindings = match guarded(|| self.pre.instantiate(&mut store)) {
            Ok(b) => b,
            Err(e) => return Err(self.classify(e, &mut store)),
        };
        let mut instance = Instance { store, bindings };
        instance.store.data_mut().call = CallBudget::start(self.limits.call_timeout * 10);
        instance.store.set_epoch_deadline(1);
        let (bindings, store) = (&instance.bindings, &mut instance.store);
        let answer = guarded(|| {
            bindings
                .switchyard_router_placement()
                .call_configure(&mut *store, &self.wit_catalog)
        });
        let configured = answer.map_err(|e| self.classify(e, &mut instance.store))?;
        configured.map_err(|message| PluginError::Configure {
            plugin: self.info.name.clone(),
            message,
        })?;
        Ok(instance)
    }

    fn take(&self) -> Result<Instance, PluginError> {
        let pooled = self.pool.lock().ok().and_then(|mut p| p.pop());
        match pooled {
            Some(i) => Ok(i),
            None => self.instantiate(),
        }
    }

    fn release(&self, instance: Instance) {
        if let Ok(mut pool) = self.pool.lock()
            && pool.len() < self.limits.max_instances as usize
        {
            pool.push(instance);
        }
    }

    /// Turns a wasmtime error into the failure kind it stands for.
    fn classify(&self, err: wasmtime::Error, store: &mut Store<State>) -> PluginError {
        let plugin = self.info.name.clone();
        if store.data().memory_exceeded {
            return PluginError::Memory {
                plugin,
                limit_bytes: self.limits.max_memory_bytes,
            };
        }
        if matches!(err.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            return PluginError::Timeout {
                plugin,
                after_ms: self.limits.call_timeout.as_millis() as u64,
            };
        }
        let message = match err.downcast_ref::<Trap>() {
            Some(trap) => trap.to_string(),
            None => format!("{err:#}"),
        };
        PluginError::Trapped { plugin, message }
    }

    /// Asks the plugin for a route and validates it. A trapped instance is dropped; the next call
    /// gets a fresh one.
    pub fn route(&self, request: &RouteRequest) -> Result<Route, PluginError> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let result = self.route_inner(request);
        if let Err(e) = &result {
            self.stats.count(e);
        }
        result
    }

    fn route_inner(&self, request: &RouteRequest) -> Result<Route, PluginError> {
        let mut instance = self.take()?;
        instance.arm(self.limits);
        let wit_request = convert::request(request);
        let (bindings, store) = (&instance.bindings, &mut instance.store);
        let answer = guarded(|| {
            bindings
                .switchyard_router_placement()
                .call_route(&mut *store, &wit_request)
        });
        let answer = match answer {
            Ok(a) => a,
            Err(e) => return Err(self.classify(e, &mut instance.store)),
        };
        self.release(instance);
        let wit_route = answer.map_err(|e| PluginError::Refused {
            plugin: self.info.name.clone(),
            message: e.message,
        })?;
        let route = convert::route_from_wit(&wit_route);
        validate(&route, request, &self.catalog).map_err(|e| PluginError::InvalidRoute {
            plugin: self.info.name.clone(),
            reason: e.0,
        })?;
        Ok(route)
    }

    /// The catalog this plugin was configured with.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }
}
