//! Shard merges: a root union / top-k / aggregate-combine over fragments that each hold every
//! table access sends the statement (or its partial aggregates) to every shard and merges the
//! answers in the router.

use futures::future::try_join_all;
use switchyard_backend::Fragment;
use switchyard_core::BoundQuery;
use switchyard_core::exec::agg;
use switchyard_core::exec::ops::{self, Row, SortSpec};
use switchyard_core::ir::{Expr, OutputColumn, Select, Statement};
use switchyard_core::routing::{Input, MergeNode, MergeOp};

use super::Exec;
use crate::RouterError;

impl Exec<'_> {
    /// The root input is a shard merge over fragments that each hold every table access.
    pub(super) fn scatter(&self) -> Option<(&MergeNode, Vec<usize>)> {
        let Input::Node(n) = self.route.root else {
            return None;
        };
        let node = self.route.nodes.get(n)?;
        if !matches!(
            node.op,
            MergeOp::UnionAll
                | MergeOp::UnionDistinct
                | MergeOp::TopK { .. }
                | MergeOp::AggregateCombine
        ) {
            return None;
        }
        let all: Vec<usize> = (0..self.select.from.len()).collect();
        let mut fragments = Vec::new();
        for input in &node.inputs {
            let Input::Fragment(f) = input else {
                return None;
            };
            let frag = self.route.fragments.get(*f)?;
            let mut acc = frag.accesses.clone();
            acc.sort_unstable();
            acc.dedup();
            let caps = self.caps(frag.backend);
            if acc != all || caps.needs_key || (all.len() > 1 && !caps.joins) {
                return None;
            }
            fragments.push(*f);
        }
        Some((node, fragments))
    }

    /// The statement each shard runs for a non-aggregate merge: the output plus hidden ORDER BY
    /// keys, sorted, with LIMIT + OFFSET as the limit. `None` when DISTINCT would change meaning.
    pub(super) fn shard_select(&self) -> Option<Select> {
        let s = self.select;
        let mut projection = s.projection.clone();
        for (i, o) in s.order_by.iter().enumerate() {
            if s.distinct && !s.projection.iter().any(|c| c.expr == o.expr) {
                return None;
            }
            projection.push(OutputColumn {
                name: format!("__sort{i}"),
                expr: o.expr.clone(),
            });
        }
        Some(Select {
            projection,
            limit: s.limit.map(|l| l.saturating_add(s.offset.unwrap_or(0))),
            offset: None,
            ..s.clone()
        })
    }

    pub(super) fn aggregate_plan(
        &self,
        fragments: &[usize],
    ) -> Option<(agg::PartialPlan, Vec<Expr>)> {
        let all_aggregate = fragments.iter().all(|f| {
            self.route
                .fragments
                .get(*f)
                .is_some_and(|fr| self.caps(fr.backend).aggregates)
        });
        if !all_aggregate {
            return None;
        }
        let aggregates = agg::collect_aggregates(self.select);
        agg::partial_plan(self.select, &aggregates).map(|p| (p, aggregates))
    }

    pub(super) async fn run_scatter(
        &self,
        node: &MergeNode,
        fragments: &[usize],
    ) -> Result<Option<Vec<Row>>, RouterError> {
        self.used(node.op.as_str());
        let s = self.select;
        let backends: Vec<usize> = fragments
            .iter()
            .filter_map(|f| self.route.fragments.get(*f).map(|fr| fr.backend))
            .collect();
        if s.is_aggregate() {
            let Some((plan, aggregates)) = self.aggregate_plan(fragments) else {
                return Ok(None);
            };
            let parts = self.run_everywhere(&backends, &plan.shard).await?;
            let rows = ops::union_all(parts);
            let groups = agg::combine(&rows, &plan, &aggregates, self.budget)?;
            return Ok(Some(switchyard_core::exec::finish_groups(
                s,
                &aggregates,
                groups,
                &self.query.params,
            )?));
        }
        let Some(shard) = self.shard_select() else {
            return Ok(None);
        };
        let width = s.projection.len();
        let parts = self.run_everywhere(&backends, &shard).await?;
        let offset = usize::try_from(s.offset.unwrap_or(0)).unwrap_or(usize::MAX);
        let limit = s
            .limit
            .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let keys: Vec<usize> = (width..width + s.order_by.len()).collect();
        let specs: Vec<SortSpec> = switchyard_core::exec::order_specs(s);
        let dedupe = s.distinct || node.op == MergeOp::UnionDistinct;
        let mut rows = if dedupe {
            let mut rows = ops::distinct(ops::union_all(parts), Some(width));
            ops::sort(&mut rows, &keys, &specs);
            rows
        } else if keys.is_empty() {
            ops::union_all(parts)
        } else {
            ops::top_k(parts, &keys, &specs, limit.saturating_add(offset))
        };
        rows = rows.into_iter().skip(offset).take(limit).collect();
        for r in &mut rows {
            r.truncate(width);
        }
        Ok(Some(rows))
    }

    /// Runs `select` on every backend concurrently.
    async fn run_everywhere(
        &self,
        backends: &[usize],
        select: &Select,
    ) -> Result<Vec<Vec<Row>>, RouterError> {
        let q = BoundQuery {
            statement: Statement::Select(select.clone()),
            params: self.query.params.clone(),
        };
        try_join_all(backends.iter().map(|&b| {
            let q = &q;
            async move {
                let rs = self
                    .router
                    .run_on(
                        b,
                        Fragment {
                            query: q,
                            catalog: &self.router.catalog,
                        },
                    )
                    .await?;
                self.budget.charge(&rs.rows)?;
                Ok::<_, RouterError>(rs.rows)
            }
        }))
        .await
    }
}
