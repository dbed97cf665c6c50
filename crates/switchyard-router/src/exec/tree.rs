//! The route tree: evaluating merge nodes and join groups, and the schedule of a join group
//! (dynamic filtering: semi-join reduction from the units already fetched).

use std::collections::HashSet;

use futures::future::{BoxFuture, FutureExt, try_join_all};
use switchyard_core::Value;
use switchyard_core::exec::ops::{self, Key};
use switchyard_core::ir::{BinaryOp, Expr, ExprKind, JoinKind};
use switchyard_core::routing::{AccessId, ColumnRef, CompareOp, Input, JoinEdge, MergeOp};

use super::{Exec, Reduce, Reduction, Relation, Unit, no_route};
use crate::RouterError;

impl Exec<'_> {
    fn input_accesses(&self, input: Input) -> Vec<AccessId> {
        match input {
            Input::Fragment(f) => self
                .route
                .fragments
                .get(f)
                .map(|fr| fr.accesses.clone())
                .unwrap_or_default(),
            Input::Node(n) => self
                .route
                .nodes
                .get(n)
                .map(|node| {
                    let mut out: Vec<AccessId> = node
                        .inputs
                        .iter()
                        .flat_map(|i| self.input_accesses(*i))
                        .collect();
                    out.sort_unstable();
                    out.dedup();
                    out
                })
                .unwrap_or_default(),
        }
    }

    /// The fragments an input reads.
    pub(super) fn fragments_under(&self, input: Input) -> Vec<usize> {
        match input {
            Input::Fragment(f) => vec![f],
            Input::Node(n) => self
                .route
                .nodes
                .get(n)
                .map(|node| {
                    node.inputs
                        .iter()
                        .flat_map(|i| self.fragments_under(*i))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// A guess of the rows an input returns: key lookups know their count; fragments on stores
    /// that need a key are small; anything else is unknown (`None`, treated as large).
    fn estimate(&self, input: Input) -> Option<usize> {
        let keyed = |a: &AccessId| {
            self.request
                .accesses
                .get(*a)
                .and_then(|x| x.key_lookup.as_ref())
                .map(Vec::len)
        };
        match input {
            Input::Fragment(f) => {
                let frag = self.route.fragments.get(f)?;
                let by_key = frag.accesses.iter().filter_map(keyed).min();
                // A key-value read pinned by part of its key (a cart by customer) is small.
                let pinned = frag.accesses.iter().any(|a| {
                    let pk = self
                        .table(*a)
                        .map(|t| t.primary_key.clone())
                        .unwrap_or_default();
                    self.request.accesses.get(*a).is_some_and(|x| {
                        x.predicates.iter().any(|p| {
                            pk.contains(&p.column)
                                && matches!(p.op, CompareOp::Eq | CompareOp::InList)
                        })
                    })
                });
                by_key.or_else(|| (self.caps(frag.backend).needs_key && pinned).then_some(100))
            }
            Input::Node(n) => {
                let node = self.route.nodes.get(n)?;
                match node.op {
                    MergeOp::FirstHit { .. } => node.inputs.first().and_then(|i| self.estimate(*i)),
                    _ => None,
                }
            }
        }
    }

    /// The units of the join group rooted at `input`: hash joins are flattened, every fragment
    /// gives its scans, any other merge node (first-hit, a union of shards) is one unit.
    pub(super) fn group_units(&self, input: Input, out: &mut Vec<Unit>) -> Result<(), RouterError> {
        match input {
            Input::Fragment(f) => {
                for scan in self.fragment_scans(f, false)? {
                    out.push(Unit::Scan {
                        fragment: f,
                        scan: Box::new(scan),
                    });
                }
            }
            Input::Node(n) => {
                let node = self
                    .route
                    .nodes
                    .get(n)
                    .ok_or_else(|| no_route(format!("node {n} does not exist")))?;
                match node.op {
                    MergeOp::HashJoin { .. } if node.inputs.len() == 2 => {
                        self.group_units(node.inputs[0], out)?;
                        self.group_units(node.inputs[1], out)?;
                    }
                    _ => out.push(Unit::Node(input)),
                }
            }
        }
        Ok(())
    }

    fn unit_accesses(&self, unit: &Unit) -> Vec<AccessId> {
        match unit {
            Unit::Scan { scan, .. } => scan.accesses.clone(),
            Unit::Node(input) => self.input_accesses(*input),
        }
    }

    /// How selective a unit looks before it runs: 0 key lookups (and first-hit), 1 filtered,
    /// 2 a whole table.
    fn rank(&self, unit: &Unit) -> u8 {
        let accesses = self.unit_accesses(unit);
        let pinned = accesses.iter().any(|a| {
            let pk = self
                .table(*a)
                .map(|t| t.primary_key.clone())
                .unwrap_or_default();
            self.request.accesses.get(*a).is_some_and(|x| {
                x.key_lookup.is_some()
                    || x.predicates.iter().any(|p| {
                        pk.contains(&p.column) && matches!(p.op, CompareOp::Eq | CompareOp::InList)
                    })
            })
        });
        let filtered = match unit {
            Unit::Scan { scan, .. } => scan.select.filter.is_some(),
            Unit::Node(_) => accesses.iter().any(|a| {
                self.request
                    .accesses
                    .get(*a)
                    .is_some_and(|x| !x.predicates.is_empty())
            }),
        };
        match unit {
            Unit::Node(input) if self.estimate(*input).is_some() => 0,
            _ if pinned => 0,
            _ if filtered => 1,
            _ => 2,
        }
    }

    /// Whether join keys may be pushed into a unit: scans, and unions of shard fragments.
    fn reducible(&self, unit: &Unit) -> bool {
        match unit {
            Unit::Scan { .. } => true,
            Unit::Node(Input::Node(n)) => self.route.nodes.get(*n).is_some_and(|nd| {
                matches!(nd.op, MergeOp::UnionAll | MergeOp::UnionDistinct)
                    && nd.inputs.iter().all(|i| matches!(i, Input::Fragment(_)))
            }),
            Unit::Node(Input::Fragment(_)) => true,
        }
    }

    /// Whether rows of `to` that match no `from` value can be dropped before the join: always
    /// under an inner join's ON; under a LEFT JOIN only on its nullable (joined) side, never
    /// on the preserved side.
    fn may_reduce(&self, edge: &JoinEdge, from: ColumnRef, to: ColumnRef) -> bool {
        if edge.kind == JoinKind::Inner {
            return true;
        }
        let is_col = |e: &Expr, c: ColumnRef| matches!(e.kind, ExprKind::Column { table, column } if table == c.access && column == c.column);
        to == edge.right
            && self.join_kind(to.access) == JoinKind::Left
            && self.on(to.access).is_some_and(|on| {
                on.conjuncts().iter().any(|c| {
                    matches!(&c.kind, ExprKind::Binary { op: BinaryOp::Eq, left, right }
                        if (is_col(left, from) && is_col(right, to))
                            || (is_col(left, to) && is_col(right, from)))
                })
            })
    }

    /// A join edge from an access already fetched into one of `target`'s.
    fn reducing_edge(&self, done: &[AccessId], target: &[AccessId]) -> Option<Reduction> {
        self.request.joins.iter().find_map(|e| {
            [(e.left, e.right), (e.right, e.left)]
                .into_iter()
                .find(|(from, to)| {
                    done.contains(&from.access)
                        && target.contains(&to.access)
                        && !target.contains(&from.access)
                        && self.may_reduce(e, *from, *to)
                })
                .map(|(from, to)| Reduction { from, to })
        })
    }

    /// When each unit of a join group runs (dynamic filtering): stage by stage, the units of a
    /// stage concurrently. A unit a join edge reaches from a fetched unit runs next, restricted
    /// to the fetched keys; when none is reachable, the most selective-looking units run.
    pub(super) fn schedule(&self, units: &[Unit]) -> Vec<Vec<(usize, Option<Reduction>)>> {
        if self.router.config.execution.semi_join_max_keys == 0 {
            return vec![(0..units.len()).map(|u| (u, None)).collect()];
        }
        let accesses: Vec<Vec<AccessId>> = units.iter().map(|u| self.unit_accesses(u)).collect();
        let mut done: Vec<AccessId> = Vec::new();
        let mut left: Vec<usize> = (0..units.len()).collect();
        let mut stages = Vec::new();
        while !left.is_empty() {
            let mut stage: Vec<(usize, Option<Reduction>)> = left
                .iter()
                .filter(|u| self.reducible(&units[**u]))
                .filter_map(|&u| {
                    self.reducing_edge(&done, &accesses[u])
                        .map(|r| (u, Some(r)))
                })
                .collect();
            if stage.is_empty() {
                let best = left
                    .iter()
                    .map(|u| self.rank(&units[*u]))
                    .min()
                    .unwrap_or(0);
                stage = left
                    .iter()
                    .filter(|u| self.rank(&units[**u]) == best)
                    .map(|u| (*u, None))
                    .collect();
            }
            left.retain(|u| !stage.iter().any(|(s, _)| s == u));
            for (u, _) in &stage {
                done.extend(accesses[*u].iter().copied());
            }
            stages.push(stage);
        }
        stages
    }

    /// Runs the join group rooted at `input` by its schedule; `incoming` restricts the unit
    /// holding its access when no edge of the group reduces it.
    async fn run_group(
        &self,
        input: Input,
        incoming: Option<Reduce>,
    ) -> Result<Vec<Relation>, RouterError> {
        let mut units = Vec::new();
        self.group_units(input, &mut units)?;
        let max =
            usize::try_from(self.router.config.execution.semi_join_max_keys).unwrap_or(usize::MAX);
        let mut relations: Vec<Relation> = Vec::new();
        for stage in self.schedule(&units) {
            let mut runs: Vec<BoxFuture<'_, Result<Vec<Relation>, RouterError>>> = Vec::new();
            for (u, reduction) in stage {
                let unit = &units[u];
                let accesses = self.unit_accesses(unit);
                let reduce = reduction
                    .and_then(|r| {
                        let keys = self.keys_of(&relations, r.from.access, r.from.column, max)?;
                        tracing::debug!(keys = keys.len(), "semi-join reduction");
                        self.used("semi_join");
                        Some(Reduce {
                            access: r.to.access,
                            column: r.to.column,
                            keys,
                        })
                    })
                    .or_else(|| incoming.clone().filter(|r| accesses.contains(&r.access)));
                runs.push(match unit {
                    Unit::Scan { scan, .. } => async move {
                        Ok(vec![self.run_maybe_reduced(scan, reduce.as_ref()).await?])
                    }
                    .boxed(),
                    Unit::Node(i) => self.eval(*i, reduce),
                });
            }
            for part in try_join_all(runs).await? {
                relations.extend(part);
            }
        }
        Ok(relations)
    }

    /// Distinct non-NULL values of `(access, column)` in relations, up to `max` (None past it).
    fn keys_of(
        &self,
        relations: &[Relation],
        access: AccessId,
        column: usize,
        max: usize,
    ) -> Option<Vec<Value>> {
        let rel = relations.iter().find(|r| r.accesses.contains(&access))?;
        let slot = self.layout.offsets.get(access)? + column;
        let mut seen: HashSet<Key> = HashSet::new();
        let mut out = Vec::new();
        for r in &rel.rows {
            let v = r.get(slot)?;
            if !v.is_null() && seen.insert(ops::key_of(v)) {
                if out.len() >= max {
                    return None;
                }
                out.push(v.clone());
            }
        }
        Some(out)
    }

    /// Evaluates an input of the route into relations (not yet joined with each other).
    /// `reduce` restricts the scans of `(access, column)` to the given keys.
    pub(super) fn eval(
        &self,
        input: Input,
        reduce: Option<Reduce>,
    ) -> BoxFuture<'_, Result<Vec<Relation>, RouterError>> {
        async move {
            match input {
                Input::Fragment(_) => self.run_group(input, reduce).await,
                Input::Node(n) => {
                    let node = self
                        .route
                        .nodes
                        .get(n)
                        .ok_or_else(|| no_route(format!("node {n} does not exist")))?;
                    if !matches!(node.op, MergeOp::HashJoin { .. }) {
                        self.used(node.op.as_str());
                    }
                    let pass = |i: Input| {
                        reduce
                            .clone()
                            .filter(|r| self.input_accesses(i).contains(&r.access))
                    };
                    match &node.op {
                        MergeOp::HashJoin { .. } if node.inputs.len() == 2 => {
                            self.run_group(input, reduce).await
                        }
                        MergeOp::FirstHit { fill, .. } if node.inputs.len() == 2 => {
                            self.first_hit(node, *fill).await
                        }
                        MergeOp::HashJoin { .. } | MergeOp::FirstHit { .. } => Err(no_route(
                            format!("node {n} ({}) needs two inputs", node.op.as_str()),
                        )),
                        MergeOp::UnionAll
                        | MergeOp::UnionDistinct
                        | MergeOp::TopK { .. }
                        | MergeOp::AggregateCombine => {
                            let parts = try_join_all(
                                node.inputs.iter().map(|i| self.eval(*i, pass(*i))),
                            )
                            .await?;
                            let mut accesses: Option<Vec<AccessId>> = None;
                            let mut inputs = Vec::new();
                            for mut part in parts {
                                let one = match (part.len(), part.pop()) {
                                    (1, Some(r)) => r,
                                    _ => {
                                        return Err(no_route(format!(
                                            "node {n} ({}) merges inputs that are not one table each",
                                            node.op.as_str()
                                        )));
                                    }
                                };
                                let mut acc = one.accesses.clone();
                                acc.sort_unstable();
                                if accesses.get_or_insert_with(|| acc.clone()) != &acc {
                                    return Err(no_route(format!(
                                        "node {n} ({}) merges inputs over different tables",
                                        node.op.as_str()
                                    )));
                                }
                                inputs.push(one.rows);
                            }
                            let mut rows = ops::union_all(inputs);
                            if node.op == MergeOp::UnionDistinct {
                                rows = ops::distinct(rows, None);
                            }
                            Ok(vec![Relation {
                                accesses: accesses.unwrap_or_default(),
                                rows,
                            }])
                        }
                    }
                }
            }
        }
        .boxed()
    }
}
