//! Nexmark q0, q1 and q2 over the `nexmark` connector: the benchmark's own
//! table and views (nexmark-flink's `ddl_gen.sql` and `ddl_views.sql`), a
//! bounded run of 10,000 events, the rows checked against the generator's bids.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::local_config;
use strom_runtime::exec::{JobControl, RestoreFrom, run_job};
use strom_runtime::sql::nexmark::{NexmarkGenerator, NexmarkOptions, flink_ddl};

const EVENTS: u64 = 10_000;

/// nexmark-flink's table and views as they are, bounded to [`EVENTS`] events.
fn ddl() -> String {
    ddl_with(&[])
}

/// [`ddl`] with more options of the table.
fn ddl_with(more: &[(&str, String)]) -> String {
    let mut options = vec![
        ("first-event.rate", "10000".to_owned()),
        ("next-event.rate", "10000".to_owned()),
        ("events.num", EVENTS.to_string()),
        ("person.proportion", "1".to_owned()),
        ("auction.proportion", "3".to_owned()),
        ("bid.proportion", "46".to_owned()),
    ];
    options.extend(more.iter().cloned());
    flink_ddl(&options)
}

/// q0 (passthrough), q1 (dollars to euros) and q2 (a selection), each into a
/// print table of its own.
const QUERIES: &str = "
    CREATE TABLE nexmark_q0 (auction BIGINT, bidder BIGINT, price BIGINT,
        `dateTime` TIMESTAMP(3), extra VARCHAR)
    WITH ('connector' = 'print', 'print-identifier' = 'q0');
    CREATE TABLE nexmark_q1 (auction BIGINT, bidder BIGINT, price DECIMAL(23, 3),
        `dateTime` TIMESTAMP(3), extra VARCHAR)
    WITH ('connector' = 'print', 'print-identifier' = 'q1');
    CREATE TABLE nexmark_q2 (auction BIGINT, price BIGINT)
    WITH ('connector' = 'print', 'print-identifier' = 'q2');

    EXECUTE STATEMENT SET BEGIN
    INSERT INTO nexmark_q0
    SELECT auction, bidder, price, `dateTime`, extra FROM bid;
    INSERT INTO nexmark_q1
    SELECT auction, bidder, 0.908 * price AS price, `dateTime`, extra FROM bid;
    INSERT INTO nexmark_q2
    SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0;
    END;
";

/// Runs `script` at `parallelism`; its printed rows by print identifier.
fn run(script: &str, parallelism: u32) -> BTreeMap<String, Vec<String>> {
    let job = strom_runtime::sql::compile(script).unwrap_or_else(|error| panic!("{error}"));
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = Arc::clone(&lines);
    let pipeline = job.pipeline(Arc::new(move |line| sink.lock().unwrap().push(line)));
    let state = tempfile::tempdir().unwrap();
    let config = local_config(
        state.path(),
        "nexmark",
        parallelism,
        Duration::from_millis(200),
        2,
        RestoreFrom::Nothing,
    );
    let report = run_job(config, pipeline, Arc::new(JobControl::default())).unwrap();
    assert!(
        report.snapshots.failure.is_none(),
        "{:?}",
        report.snapshots.failure
    );
    let mut by_query: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in lines.lock().unwrap().iter() {
        let (query, row) = line.split_once("> ").expect("rows carry their identifier");
        by_query
            .entry(query.to_owned())
            .or_default()
            .push(row.to_owned());
    }
    for rows in by_query.values_mut() {
        rows.sort();
    }
    by_query
}

#[test]
fn nexmark_q0_q1_q2_give_the_generators_bids() {
    let generator = NexmarkGenerator::new(NexmarkOptions::default());
    let bids: Vec<_> = (0..EVENTS)
        .filter_map(|n| generator.event(n).bid().cloned())
        .collect();
    assert_eq!(
        bids.len() as u64,
        generator.count(strom_runtime::sql::nexmark::EventType::Bid, EVENTS)
    );
    assert_eq!(bids.len(), 9_200);

    let rows = run(&format!("{}{QUERIES}", ddl()), 2);
    let q0 = &rows["q0"];
    let q1 = &rows["q1"];
    let q2 = &rows["q2"];
    assert_eq!(q0.len(), bids.len());
    assert_eq!(q1.len(), bids.len());

    // q0: every bid, its values but the time (which is the run's) as generated.
    let strip_time = |row: &str| {
        let fields: Vec<&str> = row.trim_start_matches("+I[").splitn(5, ", ").collect();
        format!("{}, {}, {}, {}", fields[0], fields[1], fields[2], fields[4])
    };
    let mut expected: Vec<String> = bids
        .iter()
        .map(|bid| {
            format!(
                "{}, {}, {}, {}]",
                bid.auction, bid.bidder, bid.price, bid.extra
            )
        })
        .collect();
    expected.sort();
    let mut actual: Vec<String> = q0.iter().map(|row| strip_time(row)).collect();
    actual.sort();
    assert_eq!(actual, expected);

    // q1: prices in euros, to the thousandth.
    let mut expected: Vec<String> = bids
        .iter()
        .map(|bid| {
            let thousandths = bid.price * 908;
            format!(
                "{}, {}, {}.{:03}",
                bid.auction,
                bid.bidder,
                thousandths / 1000,
                thousandths % 1000
            )
        })
        .collect();
    expected.sort();
    let mut actual: Vec<String> = q1
        .iter()
        .map(|row| {
            let fields: Vec<&str> = row.trim_start_matches("+I[").splitn(4, ", ").collect();
            format!("{}, {}, {}", fields[0], fields[1], fields[2])
        })
        .collect();
    actual.sort();
    assert_eq!(actual, expected);

    // q2: the bids of auctions whose id is a multiple of 123.
    let mut expected: Vec<String> = bids
        .iter()
        .filter(|bid| bid.auction % 123 == 0)
        .map(|bid| format!("+I[{}, {}]", bid.auction, bid.price))
        .collect();
    expected.sort();
    assert!(!expected.is_empty());
    assert_eq!(q2, &expected);
}

/// A HOP(2 s, 10 s) count per auction over `bid` (the benchmark's query; its
/// source then makes only the fields the query reads): each bid is counted
/// once in each of the 5 windows that hold it, under its own auction. Also with
/// the table's watermark alignment set (`scan.watermark.alignment.*`, a 10 ms
/// drift): the aligned source ends and the counts are the same. (That the
/// setting reaches the source: `sql::job`'s tests; that aligned subtasks wait
/// for each other: tests/alignment.rs.)
#[test]
fn a_hop_count_per_auction_counts_each_bid_in_five_windows() {
    let generator = NexmarkGenerator::new(NexmarkOptions::default());
    let mut expected: BTreeMap<i64, u64> = BTreeMap::new();
    for n in 0..EVENTS {
        if let Some(bid) = generator.event(n).bid() {
            *expected.entry(bid.auction).or_default() += 5;
        }
    }
    let query = "
        CREATE TABLE hop (auction BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), bids BIGINT)
        WITH ('connector' = 'print', 'print-identifier' = 'hop');
        INSERT INTO hop
        SELECT auction, window_start, window_end, COUNT(*)
        FROM TABLE(HOP(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
        GROUP BY auction, window_start, window_end;";
    let aligned = ddl_with(&[
        ("scan.watermark.alignment.group", "bids".to_owned()),
        ("scan.watermark.alignment.max-drift", "10 ms".to_owned()),
    ]);
    for (parallelism, ddl, what) in [
        (1, ddl(), "unaligned"),
        (2, ddl(), "unaligned"),
        (2, aligned, "aligned"),
    ] {
        let rows = run(&format!("{ddl}\n{query}"), parallelism);
        let mut counted: BTreeMap<i64, u64> = BTreeMap::new();
        for row in &rows["hop"] {
            let fields: Vec<&str> = row
                .trim_start_matches("+I[")
                .trim_end_matches(']')
                .split(", ")
                .collect();
            let auction: i64 = fields[0].parse().unwrap_or_else(|_| panic!("{row}"));
            let bids: u64 = fields[3].parse().unwrap_or_else(|_| panic!("{row}"));
            *counted.entry(auction).or_default() += bids;
        }
        assert_eq!(counted, expected, "parallelism {parallelism}, {what}");
    }
}
