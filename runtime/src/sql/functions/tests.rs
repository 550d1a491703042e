//! Flink's built-ins in SQL, planned and computed as Strom computes them:
//! DataFusion's SQL planner and analyzer, no optimizer, then physical
//! expressions over a batch. Each query also runs through DataFusion's own
//! path (optimizer and constant folding included), which must agree.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Int32Array, Int64Array, RecordBatch, RecordBatchOptions, StringArray,
};
use arrow::compute::{cast, concat};
use arrow::datatypes::{DataType, Schema, TimeUnit};
use datafusion::common::Result;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::analyzer::Analyzer;
use datafusion::prelude::{SessionConfig, SessionContext};

/// A session with Flink's built-ins and, maybe, a table `t`.
struct Session {
    context: SessionContext,
    /// The rows of `t`, or one row of no columns.
    batch: RecordBatch,
    runtime: tokio::runtime::Runtime,
}

impl Session {
    /// No table: queries compute one row.
    fn new() -> Self {
        let batch = RecordBatch::try_new_with_options(
            Arc::new(Schema::empty()),
            vec![],
            &RecordBatchOptions::new().with_row_count(Some(1)),
        )
        .unwrap();
        Self::of(batch, false)
    }

    /// A table `t` of these columns.
    fn with_table(columns: Vec<(&str, ArrayRef)>) -> Self {
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        Self::of(batch, true)
    }

    fn of(batch: RecordBatch, register: bool) -> Self {
        let config = SessionConfig::new()
            .set_bool("datafusion.sql_parser.map_string_types_to_utf8view", false);
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .build();
        super::register(&mut state);
        let context = SessionContext::new_with_state(state);
        if register {
            context.register_batch("t", batch.clone()).unwrap();
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        Self {
            context,
            batch,
            runtime,
        }
    }

    /// The query's one column as Strom computes it: planned and analyzed, its
    /// projection made physical and evaluated over the batch.
    fn strom(&self, sql: &str) -> Result<ArrayRef> {
        let state = self.context.state();
        let plan = self.runtime.block_on(state.create_logical_plan(sql))?;
        let plan = Analyzer::new().execute_and_check(plan, state.config_options(), |_, _| {})?;
        let LogicalPlan::Projection(projection) = &plan else {
            panic!("{sql} is not a projection: {plan}");
        };
        let expr = crate::sql::physical::physical_expr(
            &projection.expr[0],
            projection.input.schema(),
            &ExecutionProps::new(),
        )?;
        expr.evaluate(&self.batch)?
            .into_array(self.batch.num_rows())
    }

    /// The query's one column as DataFusion computes it.
    fn datafusion(&self, sql: &str) -> Result<ArrayRef> {
        let batches = self
            .runtime
            .block_on(async { self.context.sql(sql).await?.collect().await })?;
        let columns: Vec<&dyn Array> = batches
            .iter()
            .map(|batch| batch.column(0).as_ref())
            .collect();
        Ok(concat(&columns)?)
    }

    /// The query's one column, both ways, which must agree.
    fn column(&self, sql: &str) -> ArrayRef {
        let strom = self
            .strom(sql)
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
        let datafusion = self
            .datafusion(sql)
            .unwrap_or_else(|error| panic!("{sql} in DataFusion: {error}"));
        assert_eq!(&strom, &datafusion, "{sql}");
        strom
    }

    /// The query's values as text (null as `None`).
    fn texts(&self, sql: &str) -> Vec<Option<String>> {
        texts(&self.column(sql))
    }

    /// Why the query fails as Strom plans or computes it.
    fn error(&self, sql: &str) -> String {
        match self.strom(sql) {
            Ok(values) => panic!("{sql} gave {values:?}"),
            Err(error) => error.strip_backtrace(),
        }
    }
}

fn texts(values: &ArrayRef) -> Vec<Option<String>> {
    let strings = cast(values, &DataType::Utf8).unwrap();
    let strings = strings.as_any().downcast_ref::<StringArray>().unwrap();
    strings
        .iter()
        .map(|value| value.map(str::to_owned))
        .collect()
}

/// The value of a query of one row.
fn one(sql: &str) -> Option<String> {
    let mut values = Session::new().texts(sql);
    assert_eq!(values.len(), 1, "{sql}");
    values.remove(0)
}

fn some(text: &str) -> Option<String> {
    Some(text.to_owned())
}

#[test]
fn split_index_picks_a_part_or_null() {
    assert_eq!(one("SELECT SPLIT_INDEX('a,b,c', ',', 1)"), some("b"));
    assert_eq!(one("SELECT SPLIT_INDEX('a,b,c', ',', 0)"), some("a"));
    assert_eq!(one("SELECT SPLIT_INDEX('a,b,c', ',', 3)"), None);
    assert_eq!(one("SELECT SPLIT_INDEX('a,b,c', ',', -1)"), None);
    assert_eq!(one("SELECT SPLIT_INDEX('a,,c', ',', 1)"), some(""));
    assert_eq!(one("SELECT SPLIT_INDEX('', ',', 0)"), None);
    assert_eq!(one("SELECT SPLIT_INDEX('a::b', '::', 1)"), some("b"));
    // The delimiter as a character code (124 is '|'), null out of 1 to 255.
    assert_eq!(one("SELECT SPLIT_INDEX('a|b', 124, 1)"), some("b"));
    assert_eq!(one("SELECT SPLIT_INDEX('a|b', 0, 0)"), None);
    assert_eq!(one("SELECT SPLIT_INDEX('a|b', 256, 0)"), None);
    assert_eq!(one("SELECT SPLIT_INDEX(NULL, ',', 0)"), None);
    assert_eq!(one("SELECT SPLIT_INDEX('a,b', NULL, 0)"), None);
    assert_eq!(one("SELECT SPLIT_INDEX('a,b', ',', NULL)"), None);

    let session = Session::with_table(vec![
        (
            "s",
            Arc::new(StringArray::from(vec![
                Some("a,b,c"),
                None,
                Some(""),
                Some("x,y"),
            ])) as _,
        ),
        (
            "i",
            Arc::new(Int32Array::from(vec![Some(2), Some(0), Some(0), None])) as _,
        ),
    ]);
    assert_eq!(
        session.texts("SELECT SPLIT_INDEX(s, ',', 1) FROM t"),
        vec![some("b"), None, None, some("y")]
    );
    assert_eq!(
        session.texts("SELECT SPLIT_INDEX(s, ',', i) FROM t"),
        vec![some("c"), None, None, None]
    );
    assert_eq!(
        session.texts("SELECT SPLIT_INDEX('p-q-r', '-', i) FROM t"),
        vec![some("r"), some("p"), some("p"), None]
    );
}

#[test]
fn arguments_of_the_wrong_types_are_refused_in_flinks_words() {
    let session = Session::new();
    assert_eq!(
        session.error("SELECT SPLIT_INDEX(1, 2, 3)"),
        "Error during planning: SPLIT_INDEX takes (STRING, STRING, INT) or (STRING, INT, INT), got (BIGINT, BIGINT, BIGINT)"
    );
    assert_eq!(
        session.error("SELECT SPLIT_INDEX('a')"),
        "Error during planning: SPLIT_INDEX takes (STRING, STRING, INT) or (STRING, INT, INT), got (STRING)"
    );
    assert_eq!(
        session.error("SELECT MOD(1.5, 2)"),
        "Error during planning: MOD takes (INT, INT), got (DOUBLE, BIGINT)"
    );
    assert_eq!(
        session.error("SELECT HOUR(DATE '2024-01-01')"),
        "Error during planning: HOUR takes (TIMESTAMP) or (TIME), got (DATE)"
    );
}

/// A column of strings cast to `data_type` (timestamps, dates).
fn parsed(data_type: DataType, values: &[Option<&str>]) -> ArrayRef {
    let strings: ArrayRef = Arc::new(StringArray::from(values.to_vec()));
    cast(&strings, &data_type).unwrap()
}

const TIMESTAMP_3: DataType = DataType::Timestamp(TimeUnit::Millisecond, None);

fn timestamp_ltz_3() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// Moments as TIMESTAMP(3) `ts`, TIMESTAMP_LTZ(3) `ltz` and DATE `d`: a
/// Tuesday, null, the last millisecond before the epoch.
fn moments() -> Session {
    let moments = [
        Some("2024-03-05 14:07:09.012"),
        None,
        Some("1969-12-31 23:59:59.999"),
    ];
    Session::with_table(vec![
        ("ts", parsed(TIMESTAMP_3, &moments)),
        ("ltz", parsed(timestamp_ltz_3(), &moments)),
        (
            "d",
            parsed(
                DataType::Date32,
                &[Some("2024-03-05"), None, Some("1969-12-31")],
            ),
        ),
        (
            "s",
            Arc::new(StringArray::from(vec![
                Some("2024-03-05 14:07:09"),
                Some("2024-03-05"),
                None,
            ])) as _,
        ),
    ])
}

#[test]
fn regexp_extract_gives_a_group_of_the_first_match_or_null() {
    let extract = |args: &str| one(&format!("SELECT REGEXP_EXTRACT({args})"));
    assert_eq!(extract("'foothebar', 'foo(.*?)(bar)', 2"), some("bar"));
    assert_eq!(extract("'foothebar', 'foo(.*?)(bar)', 1"), some("the"));
    // Group 0, the whole match, by default.
    assert_eq!(extract("'xfoothebar', 'foo(.*?)(bar)'"), some("foothebar"));
    assert_eq!(extract("'a1b22', '[0-9]+'"), some("1"));
    assert_eq!(extract("'abc', 'x'"), None);
    // No such group; a group that took no part.
    assert_eq!(extract("'foothebar', 'foo(.*?)(bar)', 3"), None);
    assert_eq!(extract("'foothebar', 'foo(.*?)(bar)', -1"), None);
    assert_eq!(extract("'ac', 'a(b)?c', 1"), None);
    assert_eq!(extract("NULL, 'a'"), None);
    assert_eq!(extract("'a', NULL"), None);
    assert_eq!(extract("'a', 'a', NULL"), None);

    // Regular expressions read from a column: one that does not compile gives
    // null, as in Flink.
    let session = Session::with_table(vec![
        (
            "s",
            Arc::new(StringArray::from(vec![
                Some("k=v"),
                Some("k=v"),
                None,
                Some("k=v"),
            ])) as _,
        ),
        (
            "r",
            Arc::new(StringArray::from(vec![
                Some("k=(\\w)"),
                Some("(unclosed"),
                Some("k"),
                None,
            ])) as _,
        ),
    ]);
    assert_eq!(
        session.texts("SELECT REGEXP_EXTRACT(s, r, 1) FROM t"),
        vec![some("v"), None, None, None]
    );
    // A literal one is refused when planned, naming the function.
    assert_eq!(
        session.error("SELECT REGEXP_EXTRACT(s, 'a(b', 1) FROM t"),
        "Error during planning: REGEXP_EXTRACT: the regular expression 'a(b' does not compile (Rust's syntax, without look-around or back-references): unclosed group"
    );
    assert!(
        session
            .error("SELECT REGEXP_EXTRACT(s, '(?<=k)=') FROM t")
            .contains("look-around"),
    );
}

#[test]
fn regexp_replace_replaces_every_match_literally() {
    let replace = |args: &str| one(&format!("SELECT REGEXP_REPLACE({args})"));
    assert_eq!(replace("'a1b22c333', '[0-9]+', '#'"), some("a#b#c#"));
    // The replacement is text, not a template.
    assert_eq!(replace("'abc', '(b)', '$1$1'"), some("a$1$1c"));
    assert_eq!(replace("'abc', 'x', '#'"), some("abc"));
    assert_eq!(replace("NULL, 'x', '#'"), None);
    assert_eq!(replace("'abc', 'b', NULL"), None);
    assert!(
        Session::new()
            .error("SELECT REGEXP_REPLACE('a', '[', '')")
            .starts_with("Error during planning: REGEXP_REPLACE: the regular expression '['"),
    );
}

#[test]
fn date_format_writes_timestamps_and_strings_with_java_patterns() {
    let session = moments();
    assert_eq!(
        session.texts("SELECT DATE_FORMAT(ts, 'yyyy-MM-dd HH:mm:ss.SSS') FROM t"),
        vec![
            some("2024-03-05 14:07:09.012"),
            None,
            some("1969-12-31 23:59:59.999")
        ]
    );
    // TIMESTAMP_LTZ in the session time zone, UTC. (SQL's '' is a quote: the
    // pattern is yyyy/MM/dd HH'h'.)
    assert_eq!(
        session.texts("SELECT DATE_FORMAT(ltz, 'yyyy/MM/dd HH''h''') FROM t"),
        vec![some("2024/03/05 14h"), None, some("1969/12/31 23h")]
    );
    assert_eq!(
        session.texts("SELECT DATE_FORMAT(d, 'EEE dd.MM.yyyy') FROM t"),
        vec![some("Tue 05.03.2024"), None, some("Wed 31.12.1969")]
    );
    // A string is read as yyyy-MM-dd HH:mm:ss; null when it is not that.
    assert_eq!(
        session.texts("SELECT DATE_FORMAT(s, 'yyyyMMdd''T''HHmm') FROM t"),
        vec![some("20240305T1407"), None, None]
    );
    assert_eq!(
        one("SELECT DATE_FORMAT(TIMESTAMP '2024-01-02 03:04:05.678', 'EEEE, MMMM d, yyyy h:mm a')"),
        some("Tuesday, January 2, 2024 3:04 AM")
    );
    assert_eq!(one("SELECT DATE_FORMAT(NULL, 'yyyy')"), None);
    assert_eq!(
        one("SELECT DATE_FORMAT(TIMESTAMP '2024-01-02 03:04:05', NULL)"),
        None
    );
    // A literal pattern that does not translate is refused when planned; one
    // read from a column fails when computed.
    assert_eq!(
        session.error("SELECT DATE_FORMAT(ts, 'yyyy-MM-dd T HH') FROM t"),
        "Error during planning: DATE_FORMAT: date pattern 'yyyy-MM-dd T HH': 'T' is not supported (the supported letters are y, yy, yyyy, M, MM, MMM, MMMM, d, dd, D, DDD, H, HH, h, hh, m, mm, s, ss, SSS, SSSSSS, SSSSSSSSS, a, E, EEEE, Z, xx, xxx; quote literal text: 'T')"
    );
    let patterns = Session::with_table(vec![(
        "p",
        Arc::new(StringArray::from(vec!["yyyy", "kk"])) as _,
    )]);
    assert!(
        patterns
            .error("SELECT DATE_FORMAT(TIMESTAMP '2024-01-02 03:04:05', p) FROM t")
            .starts_with("Execution error: DATE_FORMAT: date pattern 'kk': 'kk' is not supported"),
    );
}

#[test]
fn to_timestamp_reads_flinks_default_format_or_a_pattern() {
    let session = Session::new();
    assert_eq!(
        session
            .column("SELECT TO_TIMESTAMP('2024-03-05 14:07:09')")
            .data_type(),
        &TIMESTAMP_3
    );
    let to_timestamp = |args: &str| one(&format!("SELECT TO_TIMESTAMP({args})"));
    assert_eq!(
        to_timestamp("'2024-03-05 14:07:09'"),
        some("2024-03-05T14:07:09")
    );
    assert_eq!(
        to_timestamp("'2024-3-5 4:7:9'"),
        some("2024-03-05T04:07:09")
    );
    assert_eq!(to_timestamp("'2024-03-05'"), some("2024-03-05T00:00:00"));
    // TIMESTAMP(3): milliseconds kept, the rest cut.
    assert_eq!(
        to_timestamp("'2024-03-05 14:07:09.123456'"),
        some("2024-03-05T14:07:09.123")
    );
    assert_eq!(
        to_timestamp("'05/03/2024 14:07', 'dd/MM/yyyy HH:mm'"),
        some("2024-03-05T14:07:00")
    );
    assert_eq!(
        to_timestamp("'2024-03', 'yyyy-MM'"),
        some("2024-03-01T00:00:00")
    );
    // When the pattern does not fit, the default format is tried.
    assert_eq!(
        to_timestamp("' 2024-03-05 14:07:09 ', 'dd/MM/yyyy'"),
        some("2024-03-05T14:07:09")
    );
    assert_eq!(to_timestamp("'2024-03-05T14:07:09'"), None);
    // A day past the end of its month is the month's last (java.time's SMART
    // resolver); a day that no month has is no date.
    assert_eq!(to_timestamp("'2024-02-30'"), some("2024-02-29T00:00:00"));
    assert_eq!(
        to_timestamp("'2023-02-31 10:00:00'"),
        some("2023-02-28T10:00:00")
    );
    assert_eq!(to_timestamp("'2024-02-32'"), None);
    assert_eq!(to_timestamp("'2024-13-01'"), None);
    assert_eq!(to_timestamp("'tomorrow'"), None);
    assert_eq!(to_timestamp("NULL"), None);
    assert_eq!(to_timestamp("'2024-03-05', NULL"), None);
}

#[test]
fn to_date_reads_dates() {
    assert_eq!(
        Session::new()
            .column("SELECT TO_DATE('2024-03-05')")
            .data_type(),
        &DataType::Date32
    );
    let to_date = |args: &str| one(&format!("SELECT TO_DATE({args})"));
    assert_eq!(to_date("'2024-03-05'"), some("2024-03-05"));
    assert_eq!(to_date("'2024-3-5 10:11:12'"), some("2024-03-05"));
    assert_eq!(to_date("'05.03.2024', 'dd.MM.yyyy'"), some("2024-03-05"));
    assert_eq!(to_date("'2024-13-05'"), None);
    assert_eq!(to_date("'05.03.2024', 'yyyy-MM-dd'"), None);
    assert_eq!(to_date("NULL"), None);
}

#[test]
fn unix_seconds_are_formatted_and_parsed_in_utc() {
    let from_unixtime = |args: &str| one(&format!("SELECT FROM_UNIXTIME({args})"));
    assert_eq!(from_unixtime("0"), some("1970-01-01 00:00:00"));
    assert_eq!(from_unixtime("1709647629"), some("2024-03-05 14:07:09"));
    assert_eq!(
        from_unixtime("1709647629, 'dd.MM.yy HH:mm'"),
        some("05.03.24 14:07")
    );
    assert_eq!(from_unixtime("-1"), some("1969-12-31 23:59:59"));
    assert_eq!(from_unixtime("NULL"), None);
    assert_eq!(from_unixtime("0, NULL"), None);

    let unix_timestamp = |args: &str| one(&format!("SELECT UNIX_TIMESTAMP({args})"));
    assert_eq!(unix_timestamp("'2024-03-05 14:07:09'"), some("1709647629"));
    // The start of the string that fits the pattern is read.
    assert_eq!(
        unix_timestamp("'2024-03-05 14:07:09.999'"),
        some("1709647629")
    );
    assert_eq!(
        unix_timestamp("'05.03.2024', 'dd.MM.yyyy'"),
        some("1709596800")
    );
    // An offset in the string is applied.
    assert_eq!(
        unix_timestamp("'2024-03-05 16:07:09 +0200', 'yyyy-MM-dd HH:mm:ss Z'"),
        some("1709647629")
    );
    assert_eq!(unix_timestamp("'1969-12-31 23:59:59'"), some("-1"));
    // Flink's documented result for what does not parse: Long.MIN_VALUE.
    assert_eq!(unix_timestamp("'tomorrow'"), some("-9223372036854775808"));
    assert_eq!(unix_timestamp("NULL"), None);
    assert_eq!(
        one("SELECT FROM_UNIXTIME(UNIX_TIMESTAMP('2024-03-05 14:07:09'))"),
        some("2024-03-05 14:07:09")
    );

    // Now, in seconds (computed at each call, so only Strom's way is asked).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let values = Session::new().strom("SELECT UNIX_TIMESTAMP()").unwrap();
    let values = values.as_any().downcast_ref::<Int64Array>().unwrap();
    assert!((values.value(0) - now).abs() <= 5, "{values:?} vs {now}");
}

#[test]
fn mod_has_the_dividends_sign_and_the_divisors_type() {
    let modulo = |args: &str| one(&format!("SELECT MOD({args})"));
    assert_eq!(modulo("7, 3"), some("1"));
    assert_eq!(modulo("-7, 3"), some("-1"));
    assert_eq!(modulo("7, -3"), some("1"));
    assert_eq!(modulo("-7, -3"), some("-1"));
    assert_eq!(modulo("NULL, 3"), None);
    assert_eq!(modulo("7, NULL"), None);

    let session = Session::with_table(vec![
        (
            "a",
            Arc::new(Int64Array::from(vec![Some(10_000_000_007), None, Some(-9)])) as _,
        ),
        (
            "b",
            Arc::new(Int32Array::from(vec![Some(10), Some(3), Some(4)])) as _,
        ),
    ]);
    let remainders = session.column("SELECT MOD(a, b) FROM t");
    assert_eq!(remainders.data_type(), &DataType::Int32);
    assert_eq!(texts(&remainders), vec![some("7"), None, some("-1")]);
    assert!(
        session
            .error("SELECT MOD(a, 0) FROM t")
            .contains("MOD: division by zero (MOD(10000000007, 0))")
    );
}

#[test]
fn if_and_ifnull_choose_per_row() {
    assert_eq!(one("SELECT IF(TRUE, 'a', 'b')"), some("a"));
    assert_eq!(one("SELECT IF(FALSE, 'a', 'b')"), some("b"));
    // A null condition is not true.
    assert_eq!(one("SELECT IF(NULL, 'a', 'b')"), some("b"));
    assert_eq!(one("SELECT IF(1 > 0, 1, NULL)"), some("1"));
    assert_eq!(one("SELECT IFNULL(NULL, 'x')"), some("x"));
    assert_eq!(one("SELECT IFNULL('a', 'x')"), some("a"));

    let session = Session::with_table(vec![(
        "n",
        Arc::new(Int32Array::from(vec![Some(1), None, Some(5)])) as _,
    )]);
    assert_eq!(
        session.texts("SELECT IF(n > 2, n, -n) FROM t"),
        vec![some("-1"), None, some("5")]
    );
    let branches = session.column("SELECT IF(n > 2, n, 0.5) FROM t");
    assert_eq!(branches.data_type(), &DataType::Float64);
    assert_eq!(
        texts(&branches),
        vec![some("0.5"), some("0.5"), some("5.0")]
    );
    assert_eq!(
        session.texts("SELECT IFNULL(n, 0) FROM t"),
        vec![some("1"), some("0"), some("5")]
    );
}

#[test]
fn functions_datafusion_computes_by_rewriting_them_work() {
    // Strom makes expressions physical without DataFusion's optimizer; the
    // rewrites of immutable functions (COALESCE, NVL, NVL2) are applied first.
    let session = Session::new();
    assert_eq!(session.texts("SELECT NVL(NULL, 'x')"), vec![some("x")]);
    assert_eq!(
        session.texts("SELECT COALESCE(NULL, NULL, 3)"),
        vec![some("3")]
    );
    assert_eq!(session.texts("SELECT NVL2(NULL, 1, 2)"), vec![some("2")]);
}

#[test]
fn casts_to_string_write_booleans_and_timestamps_as_flink_does() {
    // Strom's own path only: DataFusion's writes Arrow's forms.
    let strings = |session: &Session, sql: &str| {
        texts(
            &session
                .strom(sql)
                .unwrap_or_else(|error| panic!("{sql}: {error}")),
        )
    };
    let session = moments();
    for sql in [
        "SELECT CAST(ts AS STRING) FROM t",
        "SELECT TRY_CAST(ts AS STRING) FROM t",
        "SELECT CAST(ltz AS STRING) FROM t",
    ] {
        assert_eq!(
            strings(&session, sql),
            vec![
                some("2024-03-05 14:07:09.012"),
                None,
                some("1969-12-31 23:59:59.999")
            ],
            "{sql}"
        );
    }
    // The fraction has the digits of the type's precision, zeros included.
    let session = Session::new();
    for (sql, expected) in [
        (
            "SELECT CAST(CAST(TIMESTAMP '2024-01-01 00:00:04' AS TIMESTAMP(0)) AS STRING)",
            "2024-01-01 00:00:04",
        ),
        (
            "SELECT CAST(CAST(TIMESTAMP '2024-01-01 00:00:04' AS TIMESTAMP(3)) AS STRING)",
            "2024-01-01 00:00:04.000",
        ),
        (
            "SELECT CAST(CAST(TIMESTAMP '2024-01-01 00:00:04.25' AS TIMESTAMP(6)) AS STRING)",
            "2024-01-01 00:00:04.250000",
        ),
        (
            "SELECT CAST(TO_TIMESTAMP('2024-01-01 00:00:16.5') AS STRING)",
            "2024-01-01 00:00:16.500",
        ),
        ("SELECT CAST(1 < 2 AS STRING)", "TRUE"),
        ("SELECT CAST(FALSE AS STRING)", "FALSE"),
        ("SELECT CAST(TRUE AS STRING) || '!'", "TRUE!"),
        // What Arrow's cast writes as Flink does is left to it.
        ("SELECT CAST(DATE '2024-01-01' AS STRING)", "2024-01-01"),
        ("SELECT CAST(12 AS STRING)", "12"),
    ] {
        assert_eq!(strings(&session, sql), vec![some(expected)], "{sql}");
    }
    assert_eq!(
        strings(&session, "SELECT CAST(CAST(NULL AS BOOLEAN) AS STRING)"),
        vec![None]
    );
}

#[test]
fn locate_finds_from_a_position() {
    let locate = |args: &str| one(&format!("SELECT LOCATE({args})"));
    assert_eq!(locate("'b', 'abcb'"), some("2"));
    assert_eq!(locate("'b', 'abcb', 3"), some("4"));
    assert_eq!(locate("'b', 'abcb', 5"), some("0"));
    assert_eq!(locate("'x', 'abc'"), some("0"));
    assert_eq!(locate("'', 'abc'"), some("1"));
    assert_eq!(locate("'ü', 'äöü'"), some("3"));
    assert_eq!(locate("NULL, 'abc'"), None);
    assert_eq!(locate("'a', 'abc', NULL"), None);
    assert_eq!(
        Session::new().column("SELECT LOCATE('a', 'a')").data_type(),
        &DataType::Int32
    );
}

#[test]
fn fields_of_dates_and_times() {
    let session = moments();
    let cases = [
        ("YEAR(ts)", [some("2024"), None, some("1969")]),
        ("QUARTER(d)", [some("1"), None, some("4")]),
        ("MONTH(ltz)", [some("3"), None, some("12")]),
        ("WEEK(d)", [some("10"), None, some("1")]),
        ("DAYOFYEAR(ts)", [some("65"), None, some("365")]),
        ("DAYOFMONTH(d)", [some("5"), None, some("31")]),
        // Sunday is 1: a Tuesday, a Wednesday.
        ("DAYOFWEEK(ts)", [some("3"), None, some("4")]),
        ("DAYOFWEEK(d)", [some("3"), None, some("4")]),
        ("HOUR(ts)", [some("14"), None, some("23")]),
        ("MINUTE(ltz)", [some("7"), None, some("59")]),
        ("SECOND(ts)", [some("9"), None, some("59")]),
    ];
    for (call, expected) in cases {
        let values = session.column(&format!("SELECT {call} FROM t"));
        assert_eq!(values.data_type(), &DataType::Int64, "{call}");
        assert_eq!(texts(&values), expected, "{call}");
    }
    assert_eq!(one("SELECT HOUR(TIME '10:11:12')"), some("10"));
}

#[test]
fn datafusions_own_functions_already_mean_what_flinks_do() {
    assert_eq!(one("SELECT CHAR_LENGTH('äbc')"), some("3"));
    assert_eq!(one("SELECT CHAR_LENGTH(NULL)"), None);
    // CONCAT_WS skips null arguments, not empty ones, and is null for a null
    // separator.
    assert_eq!(
        one("SELECT CONCAT_WS('-', 'a', NULL, '', 'b')"),
        some("a--b")
    );
    assert_eq!(one("SELECT CONCAT_WS(NULL, 'a', 'b')"), None);
    assert_eq!(one("SELECT INSTR('abcb', 'b')"), some("2"));
    assert_eq!(one("SELECT INSTR('abc', 'x')"), some("0"));
    assert_eq!(one("SELECT INSTR('äöü', 'ü')"), some("3"));
    assert_eq!(one("SELECT POSITION('c' IN 'abc')"), some("3"));
    assert_eq!(one("SELECT POSITION('' IN 'abc')"), some("1"));
}

#[test]
fn a_flink_script_resolves_the_builtins_and_refuses_misuse_when_compiled() {
    let tables = "CREATE TABLE src (s STRING, ts TIMESTAMP(3))
        WITH ('connector' = 'datagen', 'number-of-rows' = '10');
        CREATE TABLE out (a STRING, b STRING, c BIGINT) WITH ('connector' = 'blackhole');
        CREATE TABLE other (a STRING, b BIGINT, c BIGINT, d TIMESTAMP(3), e INT)
        WITH ('connector' = 'blackhole');\n";
    let job = crate::sql::compile(&format!(
        "{tables}INSERT INTO out SELECT SPLIT_INDEX(s, ',', 0), DATE_FORMAT(ts, 'yyyy-MM-dd HH:mm'), MOD(HOUR(ts), 7) FROM src;
        INSERT INTO other SELECT IF(s IS NULL, 'none', s), IFNULL(SECOND(ts), MINUTE(ts)), UNIX_TIMESTAMP(),
            TO_TIMESTAMP(DATE_FORMAT(ts, 'yyyy-MM-dd')), LOCATE('a', s) FROM src;"
    ))
    .unwrap();
    let plan = job.plan.to_string();
    for call in [
        "split_index(",
        "date_format(",
        "mod(hour(",
        "if(",
        "ifnull(second(",
        "unix_timestamp()",
        "to_timestamp(date_format(",
        "locate(",
    ] {
        assert!(plan.contains(call), "{call} in {plan}");
    }

    let cases = [
        (
            "INSERT INTO out SELECT SPLIT_INDEX(ts, ',', 0), s, 1 FROM src;",
            "line 6, column 1: SPLIT_INDEX takes (STRING, STRING, INT) or (STRING, INT, INT), got (TIMESTAMP(3), STRING, BIGINT)",
        ),
        (
            "INSERT INTO out SELECT s, DATE_FORMAT(ts, 'yyyy-MM-dd T'), 1 FROM src;",
            "DATE_FORMAT: date pattern 'yyyy-MM-dd T': 'T' is not supported",
        ),
        (
            "INSERT INTO out SELECT REGEXP_EXTRACT(s, '(a'), s, 1 FROM src;",
            "REGEXP_EXTRACT: the regular expression '(a' does not compile",
        ),
    ];
    for (insert, expected) in cases {
        let error = crate::sql::compile(&format!("{tables}{insert}"))
            .err()
            .unwrap_or_else(|| panic!("{insert} compiled"));
        assert!(error.to_string().contains(expected), "{insert}: {error}");
    }
}

#[test]
fn to_timestamp_ltz_reads_epochs_by_precision_and_type() {
    let session = Session::new();
    assert_eq!(
        session
            .column("SELECT TO_TIMESTAMP_LTZ(1709647629012, 3)")
            .data_type(),
        &timestamp_ltz_3()
    );
    let ltz = |args: &str| one(&format!("SELECT TO_TIMESTAMP_LTZ({args})"));
    assert_eq!(ltz("1709647629012, 3"), some("2024-03-05T14:07:09.012Z"));
    assert_eq!(ltz("1709647629012"), some("2024-03-05T14:07:09.012Z"));
    assert_eq!(ltz("1709647629, 0"), some("2024-03-05T14:07:09Z"));
    assert_eq!(ltz("-1, 3"), some("1969-12-31T23:59:59.999Z"));
    assert_eq!(ltz("CAST(7 AS INT), 0"), some("1970-01-01T00:00:07Z"));
    // A DOUBLE of seconds keeps its milliseconds; a DECIMAL is cut to whole
    // seconds (or milliseconds), toward zero.
    assert_eq!(
        ltz("CAST(1.5 AS DOUBLE), 0"),
        some("1970-01-01T00:00:01.500Z")
    );
    assert_eq!(
        ltz("CAST(-1.5 AS DOUBLE), 3"),
        some("1969-12-31T23:59:59.999Z")
    );
    assert_eq!(
        ltz("CAST(1.5 AS DECIMAL(5, 1)), 0"),
        some("1970-01-01T00:00:01Z")
    );
    assert_eq!(
        ltz("CAST(-1.9 AS DECIMAL(5, 1)), 0"),
        some("1969-12-31T23:59:59Z")
    );
    assert_eq!(
        ltz("CAST(1500.7 AS DECIMAL(6, 1)), 3"),
        some("1970-01-01T00:00:01.500Z")
    );
    // Outside years 0 to 9999: null.
    assert_eq!(ltz("253402300799, 0"), some("9999-12-31T23:59:59Z"));
    assert_eq!(ltz("253402300800, 0"), None);
    assert_eq!(ltz("253402300800000, 3"), None);
    assert_eq!(ltz("NULL, 3"), None);
    assert_eq!(ltz("1, NULL"), None);
    // Strings, read as TO_TIMESTAMP reads them, in UTC.
    assert_eq!(
        ltz("'2024-03-05 14:07:09.012'"),
        some("2024-03-05T14:07:09.012Z")
    );
    assert_eq!(
        ltz("'05/03/2024 14:07', 'dd/MM/yyyy HH:mm'"),
        some("2024-03-05T14:07:00Z")
    );
    assert_eq!(ltz("'tomorrow'"), None);
    assert_eq!(
        session.error("SELECT TO_TIMESTAMP_LTZ(1, 6)"),
        "Error during planning: TO_TIMESTAMP_LTZ: the precision is 6; it takes 0 (epoch seconds) or 3 (epoch milliseconds)"
    );
    let epochs = Session::with_table(vec![
        (
            "e",
            Arc::new(Int64Array::from(vec![Some(1_000), None, Some(2_500)])) as _,
        ),
        (
            "p",
            Arc::new(Int32Array::from(vec![Some(0), Some(3), Some(3)])) as _,
        ),
    ]);
    assert_eq!(
        epochs.texts("SELECT TO_TIMESTAMP_LTZ(e, p) FROM t"),
        vec![
            some("1970-01-01T00:16:40Z"),
            None,
            some("1970-01-01T00:00:02.500Z")
        ]
    );
    assert!(
        epochs
            .error("SELECT TO_TIMESTAMP_LTZ(e, p + 1) FROM t")
            .contains("TO_TIMESTAMP_LTZ: the precision is 1")
    );
}

#[test]
fn localtimestamp_is_now_in_utc() {
    let before = chrono::Utc::now().timestamp_millis();
    let values = Session::new().strom("SELECT LOCALTIMESTAMP").unwrap();
    let after = chrono::Utc::now().timestamp_millis();
    assert_eq!(values.data_type(), &TIMESTAMP_3);
    let values = cast(&values, &DataType::Int64).unwrap();
    let now = values
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    assert!((before..=after).contains(&now), "{before} {now} {after}");
}

/// The value of a query of one row, its Flink syntax rewritten as the catalog
/// rewrites it.
fn one_flink(sql: &str) -> Option<String> {
    let session = Session::new();
    let mut statements =
        sqlparser::parser::Parser::parse_sql(&crate::sql::dialect::FlinkDialect, sql).unwrap();
    let _ = sqlparser::ast::VisitMut::visit(
        &mut statements,
        &mut crate::sql::flink_syntax::FlinkSyntax,
    );
    let mut values = session.texts(&statements[0].to_string());
    assert_eq!(values.len(), 1, "{sql}");
    values.remove(0)
}

#[test]
fn floor_and_ceil_to_a_unit_keep_the_type() {
    let at = "TIMESTAMP '2024-05-14 13:47:21.250'";
    let cases = [
        ("FLOOR", "SECOND", "2024-05-14T13:47:21"),
        ("FLOOR", "MINUTE", "2024-05-14T13:47:00"),
        ("FLOOR", "HOUR", "2024-05-14T13:00:00"),
        ("FLOOR", "DAY", "2024-05-14T00:00:00"),
        ("FLOOR", "WEEK", "2024-05-12T00:00:00"),
        ("FLOOR", "MONTH", "2024-05-01T00:00:00"),
        ("FLOOR", "QUARTER", "2024-04-01T00:00:00"),
        ("FLOOR", "YEAR", "2024-01-01T00:00:00"),
        ("CEIL", "SECOND", "2024-05-14T13:47:22"),
        ("CEIL", "MINUTE", "2024-05-14T13:48:00"),
        ("CEIL", "HOUR", "2024-05-14T14:00:00"),
        ("CEIL", "DAY", "2024-05-15T00:00:00"),
        ("CEIL", "WEEK", "2024-05-19T00:00:00"),
        ("CEIL", "MONTH", "2024-06-01T00:00:00"),
        ("CEIL", "QUARTER", "2024-07-01T00:00:00"),
        ("CEIL", "YEAR", "2025-01-01T00:00:00"),
    ];
    for (function, unit, expected) in cases {
        let sql = format!("SELECT {function}({at} TO {unit})");
        assert_eq!(one_flink(&sql), some(expected), "{sql}");
    }
    assert_eq!(
        one_flink("SELECT FLOOR(CAST(NULL AS TIMESTAMP) TO DAY)"),
        None
    );
    let session = moments();
    let values = session.column("SELECT floor_to(ltz, 'HOUR') FROM t");
    assert_eq!(values.data_type(), &timestamp_ltz_3());
    assert_eq!(
        texts(&values),
        vec![
            some("2024-03-05T14:00:00Z"),
            None,
            some("1969-12-31T23:00:00Z")
        ]
    );
    assert_eq!(
        session.error("SELECT floor_to(ts, 'MILLENNIUM') FROM t"),
        "Error during planning: FLOOR takes the units SECOND, MINUTE, HOUR, DAY, WEEK, MONTH, QUARTER, YEAR, not MILLENNIUM"
    );
    assert_eq!(
        session.error("SELECT ceil_to(d, 'DAY') FROM t"),
        "Error during planning: CEIL takes (TIMESTAMP, STRING), got (DATE, STRING)"
    );
}

#[test]
fn timestampadd_and_timestampdiff_count_in_units() {
    let cases = [
        (
            "TIMESTAMPADD(MONTH, 1, TIMESTAMP '2024-01-31 10:00:00')",
            some("2024-02-29T10:00:00"),
        ),
        (
            "TIMESTAMPADD(HOUR, -3, TIMESTAMP '2024-01-01 01:00:00')",
            some("2023-12-31T22:00:00"),
        ),
        (
            "TIMESTAMPADD(WEEK, 1, DATE '2003-01-02')",
            some("2003-01-09"),
        ),
        (
            "TIMESTAMPADD(YEAR, 1, DATE '2024-02-29')",
            some("2025-02-28"),
        ),
        (
            "TIMESTAMPADD(DAY, CAST(NULL AS INT), TIMESTAMP '2024-01-01 00:00:00')",
            None,
        ),
        (
            "TIMESTAMPDIFF(DAY, TIMESTAMP '2003-01-02 10:00:00', TIMESTAMP '2003-01-03 10:00:00')",
            some("1"),
        ),
        (
            "TIMESTAMPDIFF(HOUR, TIMESTAMP '2003-01-02 10:00:00', TIMESTAMP '2003-01-02 07:30:00')",
            some("-2"),
        ),
        (
            "TIMESTAMPDIFF(MONTH, TIMESTAMP '2024-01-31 00:00:00', TIMESTAMP '2024-02-29 00:00:00')",
            some("1"),
        ),
        (
            "TIMESTAMPDIFF(QUARTER, DATE '2024-01-15', DATE '2024-10-14')",
            some("2"),
        ),
        (
            "TIMESTAMPDIFF(YEAR, DATE '2020-02-29', TIMESTAMP '2024-02-29 00:00:00')",
            some("4"),
        ),
        (
            "TIMESTAMPDIFF(SECOND, TIMESTAMP '2024-01-01 00:00:00', CAST(NULL AS TIMESTAMP))",
            None,
        ),
    ];
    for (call, expected) in cases {
        assert_eq!(one_flink(&format!("SELECT {call}")), expected, "{call}");
    }
    let session = Session::new();
    assert_eq!(
        session
            .column("SELECT TIMESTAMPDIFF('DAY', DATE '2024-01-01', DATE '2024-01-02')")
            .data_type(),
        &DataType::Int32
    );
    assert_eq!(
        session.error("SELECT TIMESTAMPDIFF('FORTNIGHT', DATE '2024-01-01', DATE '2024-01-02')"),
        "Error during planning: TIMESTAMPDIFF takes the units SECOND, MINUTE, HOUR, DAY, WEEK, MONTH, QUARTER, YEAR, not FORTNIGHT"
    );
    // A DATE plus hours is a TIMESTAMP, as in Flink.
    let hours = session.column("SELECT TIMESTAMPADD('HOUR', 1, DATE '2024-01-01')");
    assert_eq!(
        hours.data_type(),
        &DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None)
    );
    assert_eq!(
        one_flink("SELECT TIMESTAMPADD(MINUTE, 90, DATE '2024-01-01')"),
        some("2024-01-01T01:30:00")
    );
    assert_eq!(
        session
            .column("SELECT TIMESTAMPADD('DAY', 1, DATE '2024-01-01')")
            .data_type(),
        &DataType::Date32
    );
}
