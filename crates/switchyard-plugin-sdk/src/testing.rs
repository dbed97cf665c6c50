//! Native test helpers: the exact request the router would send, built from a `router.toml` and
//! a SQL statement, so plugin logic is tested with `cargo test` and no WebAssembly.

use crate::bindings::switchyard::router::types as w;
use crate::{BackendStatus, Catalog, Cx, Request, Route};

switchyard_core::wit_conversions!();

/// A catalog to build requests against.
#[derive(Debug, Clone)]
pub struct Fixture {
    core: switchyard_core::Catalog,
    wit: Catalog,
}

impl Fixture {
    /// The catalog of a `router.toml` text (environment variables resolve to their defaults).
    ///
    /// # Panics
    /// When the text is not a valid configuration: fixtures are test input.
    pub fn from_toml(text: &str) -> Fixture {
        let config = match switchyard_config::parse_str(text, "fixture.toml", &|_| None) {
            Ok(c) => c,
            Err(e) => panic!("invalid fixture configuration: {e}"),
        };
        let core = switchyard_core::Catalog::from_config(&config);
        let wit = catalog(&core);
        Fixture { core, wit }
    }

    /// Lookups over the catalog, as the plugin gets them.
    pub fn cx(&self) -> Cx<'_> {
        Cx::new(&self.wit)
    }

    /// The catalog as the plugin gets it.
    pub fn catalog(&self) -> &Catalog {
        &self.wit
    }

    /// The request for `sql` with JSON `params` and `context`, every backend healthy.
    ///
    /// # Panics
    /// When the statement does not plan: fixtures are test input.
    pub fn request(
        &self,
        sql: &str,
        params: &[serde_json::Value],
        context: &[(&str, &str)],
    ) -> Request {
        let status = vec![
            switchyard_core::routing::BackendStatus {
                healthy: true,
                ..Default::default()
            };
            self.core.backends.len()
        ];
        self.request_with_status(sql, params, context, status)
    }

    /// [`Fixture::request`] with explicit backend status (by backend index).
    ///
    /// # Panics
    /// When the statement does not plan: fixtures are test input.
    pub fn request_with_status(
        &self,
        sql: &str,
        params: &[serde_json::Value],
        context: &[(&str, &str)],
        status: Vec<switchyard_core::routing::BackendStatus>,
    ) -> Request {
        let context = context
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        match switchyard_core::plan_with_request(sql, params, &self.core, context, status) {
            Ok((_, req)) => request(&req),
            Err(e) => panic!("{sql}: {e}"),
        }
    }

    /// Status of every backend: healthy with the given p50 (µs), by backend name.
    pub fn status(
        &self,
        entries: &[(&str, bool, u32)],
    ) -> Vec<switchyard_core::routing::BackendStatus> {
        self.core
            .backends
            .keys()
            .map(|name| {
                let (healthy, p50) = entries
                    .iter()
                    .find(|(n, _, _)| n == name)
                    .map_or((true, 0), |(_, h, p)| (*h, *p));
                switchyard_core::routing::BackendStatus {
                    healthy,
                    p50_micros: p50,
                    p99_micros: p50 * 4,
                    ..Default::default()
                }
            })
            .collect()
    }

    /// A readable description of a route (backends by name), as `switchyard explain` prints it.
    pub fn describe(&self, route: &Route) -> String {
        let core_route = route_from_wit(route);
        let mut out = String::new();
        let name = |id: usize| {
            self.core
                .backends
                .get_index(id)
                .map_or("?".to_owned(), |(n, _)| n.clone())
        };
        if let Some(b) = core_route.as_single() {
            out.push_str(&format!("route: single backend `{}`\n", name(b)));
        } else {
            for (i, f) in core_route.fragments.iter().enumerate() {
                out.push_str(&format!(
                    "fragment {i}: `{}` {:?}\n",
                    name(f.backend),
                    f.accesses
                ));
            }
            for (i, n) in core_route.nodes.iter().enumerate() {
                out.push_str(&format!("node {i}: {:?} {:?}\n", n.op, n.inputs));
            }
            out.push_str(&format!("root: {:?}\n", core_route.root));
        }
        if let Some(w) = &core_route.write {
            let t: Vec<String> = w.targets.iter().map(|b| name(*b)).collect();
            let i: Vec<String> = w.invalidate.iter().map(|b| name(*b)).collect();
            out.push_str(&format!(
                "write: [{}] invalidate: [{}]\n",
                t.join(", "),
                i.join(", ")
            ));
        }
        out
    }
}

/// Default status for a request built by hand.
pub fn healthy() -> BackendStatus {
    BackendStatus {
        healthy: true,
        p50_micros: 0,
        p99_micros: 0,
        in_flight: 0,
        error_rate: 0.0,
    }
}
