//! The changelog normalize after an `upsert-kafka` source, as Flink's
//! `ChangelogNormalize`: the topic holds upserts (a value is the key's row now)
//! and tombstones (the key's row is gone), and downstream operators and sinks
//! need a changelog, so the operator keeps each key's last row and turns
//!
//! - an upsert of a key it has no row for into `+I` of the row,
//! - an upsert of a key with a row into `-U` of the row it had and `+U` of the
//!   new one, or into nothing when the new row equals the old one (Flink's
//!   `DeduplicateFunctionHelper.processLastRowOnChangelog` emits nothing for an
//!   identical row unless state TTL is on; with a TTL it emits `-U`/`+U`),
//! - a tombstone of a key with a row into `-D` of that row (the tombstone holds
//!   only the key), and a tombstone of an unknown key into nothing.
//!
//! The rows are exchanged by the table's PRIMARY KEY, so each key's records
//! reach one subtask in the order of their partition. Each key's last row
//! lives in memory in `arrow-row` form; at checkpoints the rows of the keys
//! changed since the last one are written to the keyed state (a deleted key's
//! entry is deleted), so they are restored and redistributed by key group like
//! every keyed state; a restore reads them all back into memory.
//!
//! With `table.exec.state.ttl`, a key not upserted or deleted for the TTL (in
//! processing time, as Flink's idle state retention) is forgotten: nothing is
//! emitted then, its next upsert is a `+I` again, and its entry leaves the keyed
//! state at the next checkpoint. Access times are kept in memory only: after a
//! restore a key's idle time counts from the restore.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Int8Array, RecordBatch};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::row::{RowConverter, SortField};

use super::batch::{RowKind, SqlBatch, row_kinds, with_op_column};
use super::lower::{Computed, NodeId};
use super::state_shape::StateShape;
use super::window_aggregate::{KeyEncoder, Routed};
use crate::exec::EventTime;
use crate::exec::keyed::{KeyedLogic, KeyedState};
use crate::state::{StateError, TableId};

/// The table holding each key's last row at checkpoints.
const ROWS: TableId = TableId(1);

/// The first byte of every entry key (the key's bytes follow).
const ENTRY_PREFIX: u8 = 1;

/// A key in its byte form (see [`KeyEncoder`]).
pub type KeyBytes = Box<[u8]>;

/// A whole row in `arrow-row` form.
pub type RowBytes = Box<[u8]>;

/// The changelog normalize of an upsert source's rows, keyed by `keys`.
#[derive(Debug, Clone)]
pub struct ChangelogNormalize {
    /// The input: the upsert source.
    pub input: NodeId,
    /// The table read.
    pub table: String,
    /// The PRIMARY KEY columns, over the input.
    pub keys: Vec<Computed>,
    /// The rows' schema (the table's columns, without the op column).
    pub schema: SchemaRef,
    /// The operator's name: its state is kept under it.
    pub name: String,
}

/// Whether rows of `schema` can be kept in `arrow-row` form (every type but a
/// few, such as maps in some positions, can).
pub fn can_keep_rows(schema: &Schema) -> bool {
    let fields: Vec<SortField> = schema
        .fields()
        .iter()
        .map(|field| SortField::new(field.data_type().clone()))
        .collect();
    RowConverter::supports_fields(&fields)
}

/// The normalize itself, without state backend (see the module docs): each
/// key's last row, and the keys changed since the last checkpoint.
pub struct Normalizer {
    keys: KeyEncoder,
    rows: RowConverter,
    /// The number of columns of a row (the op column follows them).
    width: usize,
    last: HashMap<KeyBytes, RowBytes>,
    changed: HashSet<KeyBytes>,
    output: SchemaRef,
    /// `table.exec.state.ttl` in milliseconds, and each key's last access.
    ttl: Option<u64>,
    accessed: HashMap<KeyBytes, u64>,
}

impl Normalizer {
    /// The normalize of rows of `schema` keyed by `keys` (over `schema`).
    pub fn new(keys: &[Computed], schema: &Schema) -> Self {
        let fields = schema
            .fields()
            .iter()
            .map(|field| SortField::new(field.data_type().clone()))
            .collect();
        Self {
            keys: KeyEncoder::of_keys(keys, schema),
            rows: RowConverter::new(fields).expect("row types were checked when planning"),
            width: schema.fields().len(),
            last: HashMap::new(),
            changed: HashSet::new(),
            output: with_op_column(schema),
            ttl: None,
            accessed: HashMap::new(),
        }
    }

    /// Forgets keys idle for `ttl` milliseconds (none keeps them for ever).
    pub fn with_ttl(mut self, ttl: Option<u64>) -> Self {
        self.ttl = ttl;
        self
    }

    /// Forgets every key idle for the TTL at `now` (milliseconds); their entries
    /// are deleted at the next [`take_changed`](Self::take_changed).
    pub fn expire(&mut self, now: u64) {
        let Some(ttl) = self.ttl else {
            return;
        };
        let expired: Vec<KeyBytes> = self
            .accessed
            .iter()
            .filter(|(_, accessed)| accessed.saturating_add(ttl) <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in expired {
            self.accessed.remove(&key);
            if self.last.remove(&key).is_some() {
                self.changed.insert(key);
            }
        }
    }

    /// The changelog of `batch`: upserts (`+I`/`+U`) and deletes (`-U`/`-D`,
    /// whose rows may hold only their key), the op column last.
    /// `now` is the processing time in milliseconds (for the TTL).
    pub fn apply(&mut self, batch: &RecordBatch, now: u64) -> Option<RecordBatch> {
        if batch.num_rows() == 0 {
            return None;
        }
        self.expire(now);
        let kinds = row_kinds(batch);
        let keys = self.keys.encode(batch);
        let rows = self
            .rows
            .convert_columns(&batch.columns()[..self.width])
            .expect("rows of the converter's types convert");
        let mut out: Vec<(Box<[u8]>, RowKind)> = Vec::new();
        for (index, (key, kind)) in keys.into_iter().zip(kinds).enumerate() {
            if self.ttl.is_some() {
                self.accessed.insert(key.clone(), now);
            }
            match kind {
                RowKind::Insert | RowKind::UpdateAfter => {
                    let row: Box<[u8]> = rows.row(index).as_ref().into();
                    match self.last.get_mut(&key) {
                        None => {
                            out.push((row.clone(), RowKind::Insert));
                            self.last.insert(key.clone(), row);
                        }
                        Some(previous) if *previous == row && self.ttl.is_none() => continue,
                        Some(previous) => {
                            let before = std::mem::replace(previous, row.clone());
                            out.push((before, RowKind::UpdateBefore));
                            out.push((row, RowKind::UpdateAfter));
                        }
                    }
                    self.changed.insert(key);
                }
                RowKind::UpdateBefore | RowKind::Delete => {
                    self.accessed.remove(&key);
                    if let Some(previous) = self.last.remove(&key) {
                        out.push((previous, RowKind::Delete));
                        self.changed.insert(key);
                    }
                }
            }
        }
        if out.is_empty() {
            return None;
        }
        let parser = self.rows.parser();
        let mut columns = self
            .rows
            .convert_rows(out.iter().map(|(row, _)| parser.parse(row)))
            .expect("rows this converter encoded decode");
        columns.push(Arc::new(Int8Array::from_iter_values(
            out.iter().map(|(_, kind)| *kind as i8),
        )));
        Some(
            RecordBatch::try_new(Arc::clone(&self.output), columns)
                .expect("the output columns match its schema"),
        )
    }

    /// The keys changed since the last call, each with its row (none: deleted).
    pub fn take_changed(&mut self) -> Vec<(KeyBytes, Option<&[u8]>)> {
        let changed: Vec<Box<[u8]>> = self.changed.drain().collect();
        changed
            .into_iter()
            .map(|key| {
                let row = self.last.get(&key).map(|row| &row[..]);
                (key, row)
            })
            .collect()
    }

    /// Takes up `row` as the last row of `key` (from restored state), accessed
    /// at `now`.
    pub fn restore(&mut self, key: Box<[u8]>, row: Box<[u8]>, now: u64) {
        if self.ttl.is_some() {
            self.accessed.insert(key.clone(), now);
        }
        self.last.insert(key, row);
    }
}

/// The changelog normalize's logic (see the module docs).
pub struct ChangelogNormalizeLogic {
    normalizer: Normalizer,
    shape: StateShape,
    /// The processing time in milliseconds (replaced in tests).
    clock: fn() -> u64,
}

impl ChangelogNormalizeLogic {
    /// The logic of `node`.
    pub fn new(node: &ChangelogNormalize) -> Self {
        let types = |fields: Vec<String>| fields.join(", ");
        let keys = node
            .keys
            .iter()
            .map(|key| {
                key.expr
                    .data_type(&node.schema)
                    .map_or_else(|_| "?".to_owned(), |data_type| data_type.to_string())
            })
            .collect();
        let rows = node
            .schema
            .fields()
            .iter()
            .map(|field| field.data_type().to_string())
            .collect();
        let shape = StateShape::new(
            &node.name,
            format!(
                "ChangelogNormalize keyed by [{}] of rows [{}]",
                types(keys),
                types(rows)
            ),
        );
        Self {
            normalizer: Normalizer::new(&node.keys, &node.schema),
            shape,
            clock: super::settings::processing_time_ms,
        }
    }

    /// Forgets keys idle for `ttl` (`table.exec.state.ttl`; none keeps them).
    pub fn with_state_ttl(mut self, ttl: Option<std::time::Duration>) -> Self {
        self.normalizer = self.normalizer.with_ttl(super::settings::ttl_millis(ttl));
        self
    }
}

impl KeyedLogic<Routed, SqlBatch> for ChangelogNormalizeLogic {
    fn on_record(
        &mut self,
        record: Routed,
        _state: &mut KeyedState,
        out: &mut Vec<SqlBatch>,
    ) -> Result<(), StateError> {
        let now = (self.clock)();
        out.extend(self.normalizer.apply(&record.batch.0, now).map(SqlBatch));
        Ok(())
    }

    fn on_watermark(
        &mut self,
        _watermark: EventTime,
        _state: &mut KeyedState,
        _out: &mut Vec<SqlBatch>,
    ) -> Result<(), StateError> {
        Ok(())
    }

    fn restore(&mut self, state: &mut KeyedState) -> Result<(), StateError> {
        self.shape.check(state)?;
        let now = (self.clock)();
        for (_, entry, row) in state.scan_between(ROWS, &[ENTRY_PREFIX], &[ENTRY_PREFIX + 1])? {
            self.normalizer.restore(entry[1..].into(), row.into(), now);
        }
        Ok(())
    }

    fn before_snapshot(&mut self, state: &mut KeyedState) -> Result<(), StateError> {
        self.shape.write(state);
        self.normalizer.expire((self.clock)());
        for (key, row) in self.normalizer.take_changed() {
            let mut entry = vec![ENTRY_PREFIX];
            entry.extend_from_slice(&key);
            let group = state.key_group(&key);
            match row {
                Some(row) => state.put(ROWS, group, &entry, row.to_vec()),
                None => state.delete(ROWS, group, &entry),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field};
    use datafusion::physical_expr::expressions::Column;

    use super::*;
    use crate::sql::job::format_changelog;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ]))
    }

    fn normalizer() -> Normalizer {
        let schema = schema();
        let key = Computed::new(Arc::new(Column::new("id", 0)), "id", &schema);
        Normalizer::new(&[key], &schema)
    }

    /// An upsert source's batch: `(kind, key, value)`, a tombstone's value null.
    fn upserts(rows: &[(RowKind, &str, Option<i64>)]) -> RecordBatch {
        RecordBatch::try_new(
            with_op_column(&schema()),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.2))),
                Arc::new(Int8Array::from_iter_values(rows.iter().map(|r| r.0 as i8))),
            ],
        )
        .unwrap()
    }

    fn printed(batch: Option<RecordBatch>) -> Vec<String> {
        batch.map_or_else(Vec::new, |batch| format_changelog(&batch, true))
    }

    const U: RowKind = RowKind::UpdateAfter;
    const D: RowKind = RowKind::Delete;

    #[test]
    fn upserts_and_tombstones_become_an_exact_changelog() {
        let mut normalizer = normalizer();
        let first = normalizer.apply(
            &upserts(&[
                (U, "a", Some(1)),
                (U, "b", Some(10)),
                (U, "a", Some(2)),
                // A tombstone of a key never seen: nothing.
                (D, "z", None),
                // The same row again: nothing, as Flink without state TTL.
                (U, "a", Some(2)),
                (D, "b", None),
                // A key deleted, then inserted again.
                (U, "b", Some(11)),
                (U, "c", None),
                (U, "c", Some(30)),
            ]),
            0,
        );
        assert_eq!(
            printed(first),
            [
                "+I[a, 1]",
                "+I[b, 10]",
                "-U[a, 1]",
                "+U[a, 2]",
                "-D[b, 10]",
                "+I[b, 11]",
                "+I[c, NULL]",
                "-U[c, NULL]",
                "+U[c, 30]",
            ]
        );
        // Later batches go on from the rows kept; a second tombstone deletes
        // nothing more.
        let second = normalizer.apply(
            &upserts(&[
                (D, "a", None),
                (D, "a", None),
                (U, "b", Some(11)),
                (U, "b", Some(12)),
            ]),
            0,
        );
        assert_eq!(printed(second), ["-D[a, 2]", "-U[b, 11]", "+U[b, 12]"]);
        assert_eq!(normalizer.apply(&upserts(&[(D, "y", None)]), 0), None);
    }

    #[test]
    fn an_upsert_table_lowers_to_a_normalize_by_its_key_that_an_upsert_sink_of_that_key_takes() {
        let table = |name: &str, key: &str, watermark: &str| {
            format!(
                "CREATE TABLE {name} (id STRING, n BIGINT, ts TIMESTAMP(3), PRIMARY KEY ({key}) NOT ENFORCED{watermark})
                 WITH ('connector' = 'upsert-kafka', 'cluster' = 'c', 'topic' = '{name}', 'key.format' = 'json', 'value.format' = 'json');"
            )
        };
        let script = format!(
            "{}{}INSERT INTO b SELECT id, n * 2, ts FROM a WHERE n > 0; SELECT id, ts FROM a;",
            table("a", "id", ", WATERMARK FOR ts AS ts - INTERVAL '1' SECOND"),
            table("b", "id", "")
        );
        let job = crate::sql::compile(&script).unwrap_or_else(|error| panic!("{error}"));
        let explained = job.plan.to_string();
        let lines: Vec<&str> = explained.lines().collect();
        assert_eq!(
            lines[..2],
            [
                "#0 Source a [id, n, ts] reads upserts (+U) and tombstones (-D)",
                "#1 ChangelogNormalize changelog-normalize-a <- #0 exchange by key [id] emits updates (+I, -U, +U, -D) state: last row per key in memory, changed keys in RocksDB at checkpoints",
            ],
            "{explained}"
        );
        // The second query shares the source and its normalize.
        assert_eq!(
            explained.matches("ChangelogNormalize").count(),
            1,
            "{explained}"
        );
        assert!(explained.contains("Sink sink-b into b"), "{explained}");
        assert!(explained.contains("Sink print-"), "{explained}");
        // Another key, or the key not written, is refused.
        for (sink, query) in [
            (
                table("b", "n", ""),
                "INSERT INTO b SELECT id, n, ts FROM a;",
            ),
            (
                table("b", "id", ""),
                "INSERT INTO b SELECT CONCAT(id, 'x'), n, ts FROM a;",
            ),
        ] {
            let script = format!("{}{sink}{query}", table("a", "id", ""));
            let error = crate::sql::compile(&script).err().unwrap().to_string();
            assert!(
                error.contains("is not the key of the updates of the upsert-kafka table a"),
                "{query}: {error}"
            );
        }
    }

    #[test]
    fn with_a_ttl_idle_keys_are_forgotten_and_inserted_again() {
        let mut normalizer = normalizer().with_ttl(Some(100));
        let first = normalizer.apply(&upserts(&[(U, "a", Some(1)), (U, "b", Some(2))]), 0);
        assert_eq!(printed(first), ["+I[a, 1]", "+I[b, 2]"]);
        normalizer.take_changed();
        // `b` is touched within the TTL (an identical row is an update with a TTL,
        // as in Flink); `a` is not.
        let touched = normalizer.apply(&upserts(&[(U, "b", Some(2))]), 60);
        assert_eq!(printed(touched), ["-U[b, 2]", "+U[b, 2]"]);
        let later = normalizer.apply(&upserts(&[(U, "a", Some(3)), (U, "b", Some(4))]), 120);
        assert_eq!(printed(later), ["+I[a, 3]", "-U[b, 2]", "+U[b, 4]"]);
        // Idle past the TTL: forgotten, and its entry deleted at the checkpoint.
        normalizer.take_changed();
        normalizer.expire(300);
        let mut changed = normalizer.take_changed();
        changed.sort();
        assert_eq!(changed.len(), 2);
        assert!(changed.iter().all(|(_, row)| row.is_none()));
        assert_eq!(normalizer.apply(&upserts(&[(D, "a", None)]), 301), None);
    }

    #[test]
    fn changed_keys_carry_their_rows_and_restored_rows_are_updated_from() {
        let mut normalizer = normalizer();
        normalizer.apply(
            &upserts(&[(U, "a", Some(1)), (U, "b", Some(2)), (D, "b", None)]),
            0,
        );
        let mut changed: Vec<(KeyBytes, Option<RowBytes>)> = normalizer
            .take_changed()
            .into_iter()
            .map(|(key, row)| (key, row.map(RowBytes::from)))
            .collect();
        changed.sort();
        assert_eq!(changed.len(), 2);
        assert!(normalizer.take_changed().is_empty());
        // The rows written at a checkpoint, restored into a new normalize (as
        // another subtask would after a rescale).
        let mut restored = self::normalizer();
        let mut deleted = 0;
        for (key, row) in changed {
            match row {
                Some(row) => restored.restore(key, row, 0),
                None => deleted += 1,
            }
        }
        assert_eq!(deleted, 1);
        let after = restored.apply(
            &upserts(&[(U, "a", Some(5)), (D, "b", None), (U, "b", Some(3))]),
            0,
        );
        assert_eq!(printed(after), ["-U[a, 1]", "+U[a, 5]", "+I[b, 3]"]);
    }
}
