//! First-hit (cache-aside) over one table access: the cache answers the keys it holds, the
//! source of truth the rest, which are written back to the cache (versioned when the store
//! supports it), all bounded by `execution.cache_timeout_ms`.

use std::collections::{HashMap, HashSet};

use switchyard_backend::{BackendError, Fragment};
use switchyard_core::exec::ops::{self, Key, Row};
use switchyard_core::ir::{Expr, ExprKind, Insert, OnConflict, Statement};
use switchyard_core::routing::{AccessId, Input, MergeNode};
use switchyard_core::{BoundQuery, Value};

use super::{Exec, Relation, Scan, in_list, no_route};
use crate::RouterError;

impl Exec<'_> {
    /// Cache-aside over one table access: the cache fragment answers the keys it holds; the
    /// source of truth answers the rest, which are written back to the cache when `fill`.
    pub(super) async fn first_hit(
        &self,
        node: &MergeNode,
        fill: bool,
    ) -> Result<Vec<Relation>, RouterError> {
        let Input::Fragment(cf) = node.inputs[0] else {
            return Err(no_route("first-hit reads its cache from a fragment"));
        };
        let source = node.inputs[1];
        let frag = self
            .route
            .fragments
            .get(cf)
            .ok_or_else(|| no_route(format!("fragment {cf} does not exist")))?;
        let [access] = frag.accesses.as_slice() else {
            return Err(no_route("first-hit covers exactly one table"));
        };
        let access = *access;
        let Some(table) = self.table(access) else {
            return Err(no_route("first-hit over an unknown table"));
        };
        let Some(keys) = self
            .request
            .accesses
            .get(access)
            .and_then(|a| a.key_lookup.clone())
        else {
            // Without keys the cache cannot answer: read the source of truth.
            return self.eval(source, None).await;
        };
        let pk = table.primary_key.clone();
        let offset = self.layout.offsets.get(access).copied().unwrap_or(0);
        let row_key = |r: &Row| -> Vec<Key> {
            pk.iter()
                .map(|c| ops::key_of(r.get(offset + c).unwrap_or(&Value::Null)))
                .collect()
        };
        let by_keys = |scan: &Scan, tuples: &[Vec<Value>]| -> Scan {
            let mut s = scan.clone();
            s.select.filter = None;
            for (i, &c) in pk.iter().enumerate() {
                let mut values: Vec<Value> = Vec::new();
                let mut seen = HashSet::new();
                for t in tuples {
                    if let Some(v) = t.get(i)
                        && seen.insert(ops::key_of(v))
                    {
                        values.push(v.clone());
                    }
                }
                s = self.restricted(&s, in_list(access, c, table.columns[c].ty, &values));
            }
            s
        };
        let mut fill = fill;
        let caps = self.caps(frag.backend);
        let cache_scan = by_keys(&self.scan(frag.backend, &[access], &caps, true), &keys);
        // A cache that does not answer within `execution.cache_timeout_ms` is skipped.
        let cache_timeout = self.router.cache_timeout();
        let cached = match tokio::time::timeout(cache_timeout, self.run_scan(&cache_scan)).await {
            Ok(Ok(r)) => r.rows,
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "cache read failed; reading the source of truth");
                Vec::new()
            }
            Err(_) => {
                self.cache_timed_out(frag.backend);
                // The missing keys' versions would hang the same way: no fill this time.
                fill = false;
                Vec::new()
            }
        };
        let hits: HashSet<Vec<Key>> = cached.iter().map(&row_key).collect();
        let missing: Vec<Vec<Value>> = keys
            .into_iter()
            .filter(|k| !hits.contains(&ops::keys_of(k)))
            .collect();
        let lookups = &self.router.metrics.cache_lookups;
        lookups
            .with_label_values(&[table.name.as_str(), "hit"])
            .inc_by(hits.len() as u64);
        lookups
            .with_label_values(&[table.name.as_str(), "miss"])
            .inc_by(missing.len() as u64);
        if missing.is_empty() {
            return Ok(vec![Relation {
                accesses: vec![access],
                rows: cached,
            }]);
        }
        // Versioned caches: the version of each missing key, taken before the source is read,
        // so a write that lands in between makes the fill of its key fail (see VersionedCache).
        let versioned = self
            .router
            .backend_by_id(frag.backend)
            .ok()
            .and_then(|b| b.versioned_cache());
        let tokens: Option<HashMap<Vec<Key>, u64>> = match (fill, versioned) {
            (true, Some(vc)) => {
                match tokio::time::timeout(cache_timeout, vc.tokens(table, &missing)).await {
                    Ok(Ok(t)) => Some(missing.iter().map(|k| ops::keys_of(k)).zip(t).collect()),
                    Ok(Err(BackendError::Unsupported { .. })) => None,
                    Ok(Err(err)) => {
                        tracing::warn!(error = %err, "cache versions unreadable; not filling");
                        fill = false;
                        None
                    }
                    Err(_) => {
                        self.cache_timed_out(frag.backend);
                        fill = false;
                        None
                    }
                }
            }
            _ => None,
        };
        let source_rows = match source {
            Input::Fragment(sf)
                if self
                    .route
                    .fragments
                    .get(sf)
                    .is_some_and(|f| f.accesses == [access]) =>
            {
                let backend = self.route.fragments[sf].backend;
                let caps = self.caps(backend);
                let scan = by_keys(&self.scan(backend, &[access], &caps, true), &missing);
                self.run_scan(&scan).await?.rows
            }
            other => self
                .eval(other, None)
                .await?
                .into_iter()
                .find(|r| r.accesses.contains(&access))
                .map(|r| r.rows)
                .unwrap_or_default(),
        };
        let (rows, filled) = ops::first_hit(cached, source_rows, row_key);
        if fill && !filled.is_empty() {
            lookups
                .with_label_values(&[table.name.as_str(), "fill"])
                .inc_by(filled.len() as u64);
            crate::failpoint::hit(&format!("cache.before_fill.{}", table.name)).await;
            let fill = self.fill_cache(frag.backend, access, table, &filled, tokens.as_ref());
            if tokio::time::timeout(cache_timeout, fill).await.is_err() {
                self.cache_timed_out(frag.backend);
            }
        }
        Ok(vec![Relation {
            accesses: vec![access],
            rows,
        }])
    }

    /// Counts and logs a cache that did not answer within `execution.cache_timeout_ms`.
    fn cache_timed_out(&self, backend: usize) {
        let name = self
            .router
            .backend_name(backend)
            .unwrap_or_default()
            .to_owned();
        self.router
            .metrics
            .backend_errors
            .with_label_values(&[name.as_str(), "cache_timeout"])
            .inc();
        tracing::warn!(backend = %name, "cache did not answer in time; skipped");
    }

    /// Writes rows read from the source of truth into the cache (`INSERT ... ON CONFLICT DO
    /// NOTHING`, so a concurrent fill or write wins). A failure is logged, not returned.
    async fn fill_cache(
        &self,
        backend: usize,
        access: AccessId,
        table: &switchyard_core::Table,
        rows: &[Row],
        tokens: Option<&HashMap<Vec<Key>, u64>>,
    ) {
        let offset = self.layout.offsets.get(access).copied().unwrap_or(0);
        let columns: Vec<usize> = (0..table.columns.len()).collect();
        if let (Some(tokens), Some(vc)) = (
            tokens,
            self.router
                .backend_by_id(backend)
                .ok()
                .and_then(|b| b.versioned_cache()),
        ) {
            // Only rows whose key has a token; each stored only if its version is unchanged.
            let mut entries = Vec::new();
            let mut versions = Vec::new();
            for r in rows {
                let entry: Vec<Value> = columns
                    .iter()
                    .map(|&c| r.get(offset + c).cloned().unwrap_or(Value::Null))
                    .collect();
                let key: Vec<Key> = table
                    .primary_key
                    .iter()
                    .map(|&c| ops::key_of(&entry[c]))
                    .collect();
                if let Some(&t) = tokens.get(&key) {
                    entries.push(entry);
                    versions.push(t);
                }
            }
            match vc.fill(table, &entries, &versions).await {
                Ok(stored) => {
                    tracing::debug!(table = %table.name, stored, offered = entries.len(), "versioned cache fill");
                }
                Err(err) => tracing::warn!(table = %table.name, error = %err, "cache fill failed"),
            }
            return;
        }
        let insert = Insert {
            table: table.name.clone(),
            columns: columns.clone(),
            rows: rows
                .iter()
                .map(|r| {
                    columns
                        .iter()
                        .map(|&c| Expr {
                            kind: ExprKind::Literal(
                                r.get(offset + c).cloned().unwrap_or(Value::Null),
                            ),
                            ty: table.columns[c].ty,
                        })
                        .collect()
                })
                .collect(),
            on_conflict: Some(OnConflict::DoNothing),
        };
        let q = BoundQuery {
            statement: Statement::Insert(insert),
            params: Vec::new(),
        };
        if let Err(err) = self
            .router
            .run_on(
                backend,
                Fragment {
                    query: &q,
                    catalog: &self.router.catalog,
                },
            )
            .await
        {
            tracing::warn!(table = %table.name, error = %err, "cache fill failed");
        }
    }
}
