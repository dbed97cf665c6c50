//! Ready-made policies: each returns `Some(route)` when it applies to the request and `None`
//! otherwise, so a plugin chains them and ends with `request.default_route.clone()`.

use crate::{
    Cx, FirstHit, Input, MergeOp, Request, Role, Route, RouteBuilder, StatementKind, shard_of,
};

/// Whether the request's context asks for strongly consistent reads (`consistency = "strong"`).
pub fn wants_strong(request: &Request) -> bool {
    request.context("consistency") == Some("strong")
}

/// Whether the request's context accepts stale reads (`consistency = "eventual"`).
pub fn allows_stale(request: &Request) -> bool {
    request.context("consistency") == Some("eventual")
}

/// Point lookups (the statement pins the whole primary key) of a single `table`: read its cache
/// placement first, fall back to the primary for the keys that miss, and fill the cache with the
/// placement's TTL.
pub fn first_hit_for_point_lookups(request: &Request, cx: &Cx<'_>, table: &str) -> Option<Route> {
    let [access] = request.accesses.as_slice() else {
        return None;
    };
    if !request.is_read() || access.key_lookup.is_none() || cx.table_name(access.table) != table {
        return None;
    }
    let cache = cx.placements(access.table, Role::Cache).next()?;
    let primary = cx.primary(access.table)?;
    let mut b = RouteBuilder::new();
    let from_cache = b.fragment(cache.backend, &[0]);
    let from_primary = b.fragment(primary, &[0]);
    let root = b.node(
        MergeOp::FirstHit(FirstHit {
            fill: true,
            ttl_seconds: cache.ttl_seconds,
        }),
        &[from_cache, from_primary],
    );
    Some(b.build(root))
}

/// Reads go to the healthiest backend (lowest p50) that holds a replica of every table they
/// touch, unless the context asks for strong consistency (`consistency = "strong"`).
pub fn prefer_healthy_replica(request: &Request, cx: &Cx<'_>) -> Option<Route> {
    if !request.is_read() || wants_strong(request) {
        return None;
    }
    replica_route(request, cx)
}

/// The whole read on the healthiest backend holding a replica of every accessed table.
pub fn replica_route(request: &Request, cx: &Cx<'_>) -> Option<Route> {
    let first = request.accesses.first()?;
    let candidates = cx.placements(first.table, Role::Replica).map(|p| p.backend);
    let best = candidates
        .filter(|b| request.healthy(*b))
        .filter(|b| {
            request.accesses.iter().all(|a| {
                cx.placements(a.table, Role::Replica)
                    .any(|p| p.backend == *b)
            })
        })
        .min_by_key(|b| {
            request
                .status
                .get(*b as usize)
                .map_or(u32::MAX, |s| s.p50_micros)
        })?;
    Some(Route::single(best, request.accesses.len() as u32))
}

/// Every table on its primary: one fragment per primary backend, co-located tables pushed down
/// together, fragments hash-joined along the join edges. `None` when no join edge connects two
/// fragments or a table has no primary.
pub fn primaries_only(request: &Request, cx: &Cx<'_>) -> Option<Route> {
    let mut groups: Vec<(u32, Vec<u32>)> = Vec::new();
    for (i, a) in request.accesses.iter().enumerate() {
        let backend = cx.primary(a.table)?;
        match groups.iter_mut().find(|(b, _)| *b == backend) {
            Some((_, accesses)) => accesses.push(i as u32),
            None => groups.push((backend, vec![i as u32])),
        }
    }
    let mut b = RouteBuilder::new();
    let mut joined = groups.first()?.1.clone();
    let mut current = b.fragment(groups[0].0, &groups[0].1);
    for (backend, accesses) in groups.iter().skip(1) {
        let edge = request.joins.iter().position(|e| {
            (joined.contains(&e.left.access) && accesses.contains(&e.right.access))
                || (joined.contains(&e.right.access) && accesses.contains(&e.left.access))
        })?;
        let next = b.fragment(*backend, accesses);
        current = b.node(MergeOp::HashJoin(edge as u32), &[current, next]);
        joined.extend(accesses.iter().copied());
    }
    if request.kind != StatementKind::Select {
        let target = cx.primary(request.accesses.first()?.table)?;
        let caches: Vec<u32> = cx
            .placements(request.accesses[0].table, Role::Cache)
            .map(|p| p.backend)
            .collect();
        b.write(&[target], &caches);
    }
    Some(b.build(current))
}

/// A statement on one sharded table that pins its shard key (equality, or key lookups whose
/// keys all hash to one shard) goes to that shard alone; writes follow the same rule. Other reads
/// are left to the default route, which scatters to every shard.
pub fn shard_by_key(request: &Request, cx: &Cx<'_>) -> Option<Route> {
    let [access] = request.accesses.as_slice() else {
        return None;
    };
    let table = cx.table(access.table)?;
    let rule = table.shard_rule.as_ref()?;
    let shards = rule.backends.len() as u32;
    let by_predicate = access
        .predicates
        .iter()
        .find(|p| p.column == rule.column && p.op == crate::CompareOp::Eq)
        .and_then(|p| p.values.first())
        .map(|v| shard_of(v, shards));
    let by_keys = || {
        let pos = table.primary_key.iter().position(|c| *c == rule.column)?;
        let keys = access.key_lookup.as_ref()?;
        let mut shard_ids = keys
            .iter()
            .filter_map(|k| k.get(pos))
            .map(|v| shard_of(v, shards));
        let first = shard_ids.next()?;
        shard_ids.all(|s| s == first).then_some(first)
    };
    let shard = by_predicate.or_else(by_keys)?;
    let backend = *rule.backends.get(shard as usize)?;
    let mut route = Route::single(backend, 1);
    if request.kind != StatementKind::Select {
        let caches: Vec<u32> = cx
            .placements(access.table, Role::Cache)
            .map(|p| p.backend)
            .collect();
        route.write = Some(crate::WritePlan {
            targets: vec![backend],
            invalidate: caches,
        });
    }
    Some(route)
}

/// The input that reads fragment `i` (for hand-built routes).
pub fn fragment(i: u32) -> Input {
    Input::Fragment(i)
}
