//! What the fragments of a multi-fragment SELECT run, for `explain`, with notes on semi-join
//! reduction and first-hit.

use switchyard_backend::{Fragment, NativeStatement};
use switchyard_core::BoundQuery;
use switchyard_core::ir::{Select, Statement};
use switchyard_core::routing::{AccessId, Input, MergeOp};

use super::{Exec, Unit};
use crate::{ExplainedFragment, RouterError};

impl Exec<'_> {
    /// The statements the fragments run, for `explain` (before runtime key lists).
    pub(crate) fn explain(&self) -> Result<Vec<ExplainedFragment>, RouterError> {
        let mut out = Vec::new();
        let scatter = self.scatter();
        // Notes by target: a fragment (all its scans), one scan (fragment, accesses), or a
        // node (the fragments under it).
        let mut notes: Vec<(Input, Option<Vec<AccessId>>, String)> = Vec::new();
        let mut units = Vec::new();
        if scatter.is_none() && self.group_units(self.route.root, &mut units).is_ok() {
            let name = |a: AccessId, c: usize| {
                let t = self.select.from.get(a).map_or("?", |t| t.alias.as_str());
                let col = self
                    .table(a)
                    .and_then(|t| t.columns.get(c))
                    .map_or("?", |c| c.name.as_str());
                format!("{t}.{col}")
            };
            for (u, reduction) in self.schedule(&units).into_iter().flatten() {
                let Some(r) = reduction else { continue };
                let text = format!(
                    "semi-join reduction: runs after its join partner with `{} IN (distinct {})` in batches of {} when there are at most {} keys",
                    name(r.to.access, r.to.column),
                    name(r.from.access, r.from.column),
                    self.router.config.execution.semi_join_batch_size,
                    self.router.config.execution.semi_join_max_keys
                );
                match &units[u] {
                    Unit::Scan { fragment, scan } => notes.push((
                        Input::Fragment(*fragment),
                        Some(scan.accesses.clone()),
                        text,
                    )),
                    Unit::Node(input) => notes.push((*input, None, text)),
                }
            }
        }
        for node in &self.route.nodes {
            if let MergeOp::FirstHit { fill, .. } = node.op
                && let (Some(Input::Fragment(c)), Some(src)) =
                    (node.inputs.first(), node.inputs.get(1))
            {
                notes.push((
                    Input::Fragment(*c),
                    None,
                    "first-hit: reads the cached keys".to_owned(),
                ));
                notes.push((
                    *src,
                    None,
                    format!(
                        "first-hit: reads the keys the cache missed{}",
                        if fill {
                            " and writes them back to the cache"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
        for (f, frag) in self.route.fragments.iter().enumerate() {
            let scans: Vec<(usize, Vec<AccessId>, Select)> = match &scatter {
                Some((_, frags)) if frags.contains(&f) => {
                    let select = if self.select.is_aggregate() {
                        self.aggregate_plan(frags).map(|(p, _)| p.shard)
                    } else {
                        self.shard_select()
                    };
                    match select {
                        Some(s) => vec![(frag.backend, frag.accesses.clone(), s)],
                        None => self
                            .fragment_scans(f, false)?
                            .into_iter()
                            .map(|s| (s.backend, s.accesses, s.select))
                            .collect(),
                    }
                }
                _ => self
                    .fragment_scans(f, false)?
                    .into_iter()
                    .map(|s| (s.backend, s.accesses, s.select))
                    .collect(),
            };
            for (backend, accesses, select) in scans {
                let note = notes
                    .iter()
                    .filter(|(i, scan, _)| match i {
                        Input::Fragment(g) => {
                            *g == f && scan.as_ref().is_none_or(|a| *a == accesses)
                        }
                        Input::Node(_) => self.fragments_under(*i).contains(&f),
                    })
                    .map(|(_, _, n)| n.clone())
                    .collect::<Vec<_>>();
                let b = self.router.backend_by_id(backend)?;
                let q = BoundQuery {
                    statement: Statement::Select(select),
                    params: self.query.params.clone(),
                };
                let native: NativeStatement = b.explain(Fragment {
                    query: &q,
                    catalog: &self.router.catalog,
                })?;
                out.push(ExplainedFragment {
                    fragment: f,
                    backend: b.name().to_owned(),
                    backend_kind: b.kind().as_str(),
                    native,
                    note: (!note.is_empty()).then(|| note.join("; ")),
                });
            }
        }
        Ok(out)
    }
}
