//! `explain`: which backend runs which part of a statement, with the native statement text,
//! without executing it.

use switchyard_backend::{Fragment, NativeStatement};
use switchyard_core::routing::Route;
use switchyard_core::{ErrorCode, Statement};

use crate::{Context, Planner, Router, RouterError, exec};

/// One backend's part of an `explain`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainedFragment {
    /// Index of the route fragment this statement belongs to.
    pub fragment: usize,
    /// How the fragment is executed beyond its statement (semi-join reduction, first-hit).
    pub note: Option<String>,
    /// Backend name.
    pub backend: String,
    /// Backend kind.
    pub backend_kind: &'static str,
    /// The native statement.
    pub native: NativeStatement,
}

/// What `explain` answers: the route, the native statements, and the bound logical plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Explain {
    /// The route.
    pub route: Route,
    /// Who produced the route.
    pub planner: Planner,
    /// One entry per fragment.
    pub fragments: Vec<ExplainedFragment>,
    /// Text form of the bound statement (for the engine: its optimized plan).
    pub logical: String,
    /// For a statement the router-side engine runs: its plan and the scans it reads.
    pub engine: Option<EngineExplain>,
}

/// How the router-side engine runs a statement.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineExplain {
    /// The optimized plan, one operator per line.
    pub plan: String,
    /// The single-table reads it needs, each routed like any statement.
    pub scans: Vec<ScanExplain>,
}

/// One engine scan and how it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanExplain {
    /// The logical table.
    pub table: String,
    /// The statement the router runs for it.
    pub sql: String,
    /// Its parameters.
    pub params: Vec<serde_json::Value>,
    /// Its route and native statements.
    pub explain: Explain,
}

impl Router {
    /// Which backend runs which part, with native statement text, without executing.
    pub async fn explain(
        &self,
        sql: &str,
        params: &[serde_json::Value],
        context: &Context,
    ) -> Result<Explain, RouterError> {
        match self.explain_routed(sql, params, context).await {
            Err(RouterError::Plan(refused)) if refused.code() == ErrorCode::Unsupported => {
                self.engine_explain(sql, params, context, refused).await
            }
            other => other,
        }
    }

    /// `explain` of a statement the fast path runs.
    pub(crate) async fn explain_routed(
        &self,
        sql: &str,
        params: &[serde_json::Value],
        context: &Context,
    ) -> Result<Explain, RouterError> {
        let (plan, planner, request) = self.routed(sql, params, context).await?;
        let mut fragments = Vec::new();
        let targets: Vec<usize> = match (&plan.route.write, plan.route.as_single()) {
            (Some(w), _) => w.targets.clone(),
            (None, Some(b)) => vec![b],
            (None, None) => Vec::new(),
        };
        if let (None, None, Statement::Select(select)) = (
            &plan.route.write,
            plan.route.as_single(),
            &plan.query.statement,
        ) {
            let budget = self.budget();
            fragments = exec::Exec::new(self, &plan.query, select, &plan.route, &request, &budget)
                .explain()?;
        }
        for id in targets {
            let b = self.backend_by_id(id)?;
            let native = b.explain(Fragment {
                query: &plan.query,
                catalog: &self.catalog,
            })?;
            fragments.push(ExplainedFragment {
                fragment: 0,
                note: None,
                backend: b.name().to_owned(),
                backend_kind: b.kind().as_str(),
                native,
            });
        }
        Ok(Explain {
            logical: plan.describe(&self.catalog),
            route: plan.route.clone(),
            planner,
            fragments,
            engine: None,
        })
    }
}
