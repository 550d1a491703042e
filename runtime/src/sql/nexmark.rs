//! The `nexmark` connector: the events of the Nexmark benchmark (people
//! registering, auctions opening, bids placed), made as Flink's nexmark
//! benchmark (`nexmark-flink`, itself from Apache Beam's Nexmark suite) makes
//! them, as rows of one table.
//!
//! The table is declared as in the benchmark's `ddl_gen.sql`: one row per event,
//! `event_type` saying which of the three `ROW` columns holds it (the other two
//! are null), the event time a computed column, and views over it for the
//! queries:
//!
//! ```sql
//! CREATE TABLE datagen (
//!     event_type INT,
//!     person ROW<id BIGINT, name VARCHAR, emailAddress VARCHAR, creditCard VARCHAR,
//!                city VARCHAR, state VARCHAR, `dateTime` TIMESTAMP(3), extra VARCHAR>,
//!     auction ROW<id BIGINT, itemName VARCHAR, description VARCHAR, initialBid BIGINT,
//!                 reserve BIGINT, `dateTime` TIMESTAMP(3), expires TIMESTAMP(3),
//!                 seller BIGINT, category BIGINT, extra VARCHAR>,
//!     bid ROW<auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
//!             `dateTime` TIMESTAMP(3), extra VARCHAR>,
//!     `dateTime` AS CASE WHEN event_type = 0 THEN person.`dateTime`
//!                        WHEN event_type = 1 THEN auction.`dateTime`
//!                        ELSE bid.`dateTime` END,
//!     WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '4' SECOND
//! ) WITH ('connector' = 'nexmark', 'first-event.rate' = '10000', 'events.num' = '100000');
//! CREATE VIEW bid AS SELECT bid.auction, bid.bidder, bid.price, bid.channel, bid.url,
//!     `dateTime`, bid.extra FROM datagen WHERE event_type = 2;
//! ```
//!
//! The stored columns are found by name (any case), and so are the fields of
//! the `ROW`s: a table may declare fewer of them, in any order, with any type the
//! generated values cast to (`id STRING`). Other physical columns are refused.
//!
//! # Events
//!
//! Event `n` (from 0) is a person, an auction or a bid by `n` modulo the sum of
//! the proportions (1 + 3 + 46 = 50 by default: event 0 is a person, 1 to 3 are
//! auctions, 4 to 49 bids, then again). Its event time is the table's base time
//! (when the script was planned) plus `n` inter-event delays of
//! `1 / first-event.rate` seconds. Its values come from a pseudo-random stream
//! seeded by `n` alone, so event `n` is the same whatever the parallelism and
//! whichever split reads it: the table has [`SPLITS`] splits, event `n` in split
//! `n % SPLITS`, each read in order from a position kept in checkpoints (with the
//! base time, so a restored job goes on with the same events and times).
//!
//! # Options (nexmark-flink's names)
//!
//! - `first-event.rate` (10000): events per second of event time, and of wall
//!   time when paced;
//! - `max-emit-speed` (true): as in nexmark-flink, events are made as fast as the
//!   job takes them and the rate only spaces their event times; `false` makes
//!   each event once the wall clock reaches its event time, so they come at
//!   `first-event.rate` in wall time too and an event's lateness at a sink is the
//!   job's latency (nexmark-flink paces from when each reader starts instead; a
//!   job that starts late or is restored here first catches up, as a reader of
//!   a live stream would);
//! - `events.num` (0: unbounded) and `stop-at` (-1: none): the table ends after
//!   that many events (the fewer of the two);
//! - `keep-alive` (false): a bounded table's splits stay open (idle) instead of
//!   ending;
//! - `person.proportion` (1), `auction.proportion` (3), `bid.proportion` (46);
//! - `bid.hot-ratio.auctions` (2), `bid.hot-ratio.bidders` (4),
//!   `auction.hot-ratio.sellers` (4): one event in that many picks a random
//!   auction / bidder / seller, the others a "hot" one;
//! - `person.avg-size` (200b), `auction.avg-size` (500b), `bid.avg-size` (100b):
//!   the `extra` column pads events to about these sizes;
//! - `next-event.rate`, `rate.shape`, `rate.period`, `rate.limited`: taken and
//!   checked, without effect, as in nexmark-flink (whose generator uses the first
//!   rate only).
//!
//! # Differences from the reference generator
//!
//! - Values are drawn from our own seeded generator, not Java's
//!   `SplittableRandom`: the distributions are the reference's, the values are
//!   not (nexmark-flink's are not reproducible between runs at all).
//! - Events are numbered from 0 (Beam's numbering); nexmark-flink's first event
//!   is number 2 (its first event id and first event number are both 1).
//! - Splits interleave events on one timeline; nexmark-flink gives each subtask a
//!   contiguous range of ids on a timeline of its own (so its event times depend
//!   on the parallelism) — auction lengths follow our single timeline.
//! - A bid's bidder is a person id (offset by [`FIRST_PERSON_ID`] once, as Beam
//!   does); nexmark-flink adds the offset twice.
//! - Paced reading restarts its clock where a restored job resumes, instead of
//!   catching up with the time the job was down.
//! - The base time is taken where the script is planned, which is in each
//!   process of a job: splits first read by different processes start from
//!   base times apart by the processes' start skew (nexmark-flink plans once, in
//!   the job manager). Restored splits keep the base time they started with.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow::array::{
    ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, StructArray,
    TimestampMillisecondArray, new_null_array,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use super::batch::SqlBatch;
use super::error::{Position, SqlError, SqlResult};
use super::lower::Reads;
use super::sources::ReadProjection;
use crate::exec::{ReadStatus, SourceError, SplitId, SplitSource};
use crate::pipelines::mix;

/// How many splits a `nexmark` table has, whatever the parallelism (so its
/// events are the same at every parallelism).
pub const SPLITS: u32 = 16;

/// The id of the first person: ids start at 1000 so that the queries' filters
/// find matches even over few events (the reference's `FIRST_PERSON_ID`).
pub const FIRST_PERSON_ID: i64 = 1000;
/// The id of the first auction (the reference's `FIRST_AUCTION_ID`).
pub const FIRST_AUCTION_ID: i64 = 1000;
/// The first category of auctions (the reference's `FIRST_CATEGORY_ID`).
pub const FIRST_CATEGORY_ID: i64 = 10;

/// How many categories auctions are in, few so that queries by category find
/// results (`NUM_CATEGORIES`).
const NUM_CATEGORIES: u64 = 5;
/// Person ids not yet created that a bid or an auction may name, so that new
/// people seem to act before they registered (`PERSON_ID_LEAD`).
const PERSON_ID_LEAD: u64 = 10;
/// Auction ids not yet created that a bid may name (`AUCTION_ID_LEAD`).
const AUCTION_ID_LEAD: u64 = 10;
/// The hot seller is the first of each batch of this many people
/// (`HOT_SELLER_RATIO`).
const HOT_SELLER_BATCH: i64 = 100;
/// The hot auction is the first of each batch of this many auctions
/// (`HOT_AUCTION_RATIO`).
const HOT_AUCTION_BATCH: i64 = 100;
/// The hot bidder is the second of each batch of this many people, so that hot
/// bidders and hot sellers differ (`HOT_BIDDER_RATIO`).
const HOT_BIDDER_BATCH: i64 = 100;
/// One bid in this many goes through one of the [`HOT_CHANNELS`]
/// (`HOT_CHANNELS_RATIO`: half of them).
const HOT_CHANNELS_RATIO: u64 = 2;
/// The channels bids come through, besides the hot ones: `channel-0` to
/// `channel-9999` (`CHANNELS_NUMBER`).
const CHANNELS_NUMBER: u32 = 10_000;
/// The channels half of the bids come through.
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
/// People that bids and auctions pick from: the latest this many
/// (`numActivePeople`), so that the activity per person stays the same however
/// long the stream runs.
const NUM_ACTIVE_PEOPLE: i64 = 1000;
/// Auctions that bids pick from: the latest this many (`numInFlightAuctions`);
/// it also sets the auctions' average length.
const NUM_IN_FLIGHT_AUCTIONS: i64 = 100;
/// The shortest random string (`MIN_STRING_LENGTH`).
const MIN_STRING_LENGTH: u64 = 3;
/// The `extra` padding is a slice of one random text of this many letters, made
/// once (`REUSABLE_EXTRA_STRING`, 1 MiB).
const EXTRA_POOL_LENGTH: usize = 1 << 20;
/// A few states and cities, so that queries by place find results (`US_STATES`).
const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
/// `US_CITIES`.
const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
/// `FIRST_NAMES`.
const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
/// `LAST_NAMES`.
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
/// Seeds the per-event random streams (any constant: it only has to stay).
const EVENT_SEED: u64 = 0x6e65_786d_6172_6b00;
/// Seeds the channels' URLs and the `extra` text, made once.
const TABLES_SEED: u64 = 0x6e65_786d_6172_6b01;

/// The `nexmark` connector's settings (see the module's documentation for each).
#[derive(Debug, Clone, PartialEq)]
pub struct NexmarkOptions {
    /// `first-event.rate`: events per second, above 0.
    pub first_event_rate: u64,
    /// `next-event.rate`: taken, without effect (as in nexmark-flink).
    pub next_event_rate: u64,
    /// The number of events, when bounded (`events.num`, `stop-at`).
    pub events: Option<u64>,
    /// `keep-alive`: a bounded table stays open once its events are read.
    pub keep_alive: bool,
    /// `max-emit-speed`: as fast as it goes (true) or paced at the rate.
    pub max_emit_speed: bool,
    /// `person.proportion`, at least 1.
    pub person_proportion: u64,
    /// `auction.proportion`, at least 1.
    pub auction_proportion: u64,
    /// `bid.proportion`.
    pub bid_proportion: u64,
    /// `bid.hot-ratio.auctions`: one bid in this many is for a random auction.
    pub hot_auction_ratio: u64,
    /// `bid.hot-ratio.bidders`: one bid in this many is by a random person.
    pub hot_bidder_ratio: u64,
    /// `auction.hot-ratio.sellers`: one auction in this many is by a random
    /// person.
    pub hot_seller_ratio: u64,
    /// `person.avg-size`, in bytes.
    pub avg_person_size: u64,
    /// `auction.avg-size`, in bytes.
    pub avg_auction_size: u64,
    /// `bid.avg-size`, in bytes.
    pub avg_bid_size: u64,
    /// The event time of event 0, in milliseconds since the epoch: when the
    /// script was planned (as nexmark-flink takes it when the table is made).
    pub base_time: i64,
}

impl Default for NexmarkOptions {
    /// nexmark-flink's defaults, at base time 0.
    fn default() -> Self {
        Self {
            first_event_rate: 10_000,
            next_event_rate: 10_000,
            events: None,
            keep_alive: false,
            max_emit_speed: true,
            person_proportion: 1,
            auction_proportion: 3,
            bid_proportion: 46,
            hot_auction_ratio: 2,
            hot_bidder_ratio: 4,
            hot_seller_ratio: 4,
            avg_person_size: 200,
            avg_auction_size: 500,
            avg_bid_size: 100,
            base_time: 0,
        }
    }
}

impl NexmarkOptions {
    /// The settings of table `table` (declared at `at`) whose stored columns are
    /// `stored`, reading each option with `option` (which records it as known).
    pub fn from_options(
        table: &str,
        at: Option<Position>,
        stored: &Schema,
        option: impl FnMut(&str) -> Option<String>,
    ) -> SqlResult<Self> {
        let mut reader = OptionReader { table, at, option };
        let defaults = Self::default();
        let first_event_rate =
            reader.whole("first-event.rate", defaults.first_event_rate, 1, "events")?;
        let next_event_rate =
            reader.whole("next-event.rate", defaults.next_event_rate, 1, "events")?;
        let events = Some(reader.whole("events.num", 0, 0, "events")?).filter(|n| *n > 0);
        let stop_at = match reader.get("stop-at") {
            None => None,
            Some(text) => {
                let value: i64 = text
                    .trim()
                    .parse()
                    .map_err(|_| reader.invalid("stop-at", &text, "a whole number"))?;
                u64::try_from(value).ok()
            }
        };
        let events = match (events, stop_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let keep_alive = reader.flag("keep-alive", false)?;
        let max_emit_speed = reader.flag("max-emit-speed", true)?;
        reader.flag("rate.limited", false)?;
        if let Some(shape) = reader.get("rate.shape")
            && !["square", "sine"].contains(&shape.trim().to_ascii_lowercase().as_str())
        {
            return Err(reader.invalid("rate.shape", &shape, "SQUARE or SINE"));
        }
        if let Some(period) = reader.get("rate.period")
            && duration_millis(&period).is_none()
        {
            return Err(reader.invalid("rate.period", &period, "a duration such as '600 s'"));
        }
        let options = Self {
            first_event_rate,
            next_event_rate,
            events,
            keep_alive,
            max_emit_speed,
            person_proportion: reader.whole("person.proportion", 1, 1, "events")?,
            auction_proportion: reader.whole("auction.proportion", 3, 1, "events")?,
            bid_proportion: reader.whole("bid.proportion", 46, 0, "events")?,
            hot_auction_ratio: reader.whole("bid.hot-ratio.auctions", 2, 1, "events")?,
            hot_bidder_ratio: reader.whole("bid.hot-ratio.bidders", 4, 1, "events")?,
            hot_seller_ratio: reader.whole("auction.hot-ratio.sellers", 4, 1, "events")?,
            avg_person_size: reader.size("person.avg-size", 200)?,
            avg_auction_size: reader.size("auction.avg-size", 500)?,
            avg_bid_size: reader.size("bid.avg-size", 100)?,
            base_time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as i64),
        };
        plan_columns(stored)
            .map_err(|error| SqlError::new(format!("table {table}: {error}"), at))?;
        Ok(options)
    }

    fn total_proportion(&self) -> u64 {
        self.person_proportion + self.auction_proportion + self.bid_proportion
    }
}

/// Reads a table's options, with the errors `connectors` gives.
struct OptionReader<'a, F> {
    table: &'a str,
    at: Option<Position>,
    option: F,
}

impl<F: FnMut(&str) -> Option<String>> OptionReader<'_, F> {
    fn get(&mut self, key: &str) -> Option<String> {
        (self.option)(key)
    }

    fn invalid(&self, key: &str, value: &str, expected: &str) -> SqlError {
        SqlError::new(
            format!(
                "table {}: option '{key}' = '{value}': expected {expected}",
                self.table
            ),
            self.at,
        )
    }

    /// A whole number of at least `least` (`default` when not given).
    fn whole(&mut self, key: &str, default: u64, least: u64, what: &str) -> SqlResult<u64> {
        match self.get(key) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|value| *value >= least)
                .ok_or_else(|| {
                    self.invalid(
                        key,
                        &text,
                        &format!("a whole number of {what}, {least} or more"),
                    )
                }),
        }
    }

    fn flag(&mut self, key: &str, default: bool) -> SqlResult<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(text) => match text.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(self.invalid(key, &text, "true or false")),
            },
        }
    }

    /// A memory size such as `200b` or `1 kb`, in bytes.
    fn size(&mut self, key: &str, default: u64) -> SqlResult<u64> {
        match self.get(key) {
            None => Ok(default),
            Some(text) => memory_bytes(&text)
                .ok_or_else(|| self.invalid(key, &text, "a size such as '200b' or '1 kb'")),
        }
    }
}

/// A memory size as Flink writes one: a number and an optional unit (bytes,
/// kibibytes, ...), in bytes.
fn memory_bytes(text: &str) -> Option<u64> {
    let (number, unit) = number_and_unit(text)?;
    let scale: u64 = match unit.as_str() {
        "" | "b" | "bytes" => 1,
        "k" | "kb" | "kibibytes" => 1 << 10,
        "m" | "mb" | "mebibytes" => 1 << 20,
        "g" | "gb" | "gibibytes" => 1 << 30,
        "t" | "tb" | "tebibytes" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(scale)
}

/// A duration as Flink writes one (`600 s`, `10 min`; milliseconds without a
/// unit), in milliseconds.
fn duration_millis(text: &str) -> Option<u64> {
    let (number, unit) = number_and_unit(text)?;
    let scale: u64 = match unit.as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000,
        "m" | "min" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        _ => return None,
    };
    number.checked_mul(scale)
}

fn number_and_unit(text: &str) -> Option<(u64, String)> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let number = text[..digits].parse().ok()?;
    Some((number, text[digits..].trim().to_ascii_lowercase()))
}

/// The kinds of events, by the codes of the `event_type` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A person registers (`event_type` 0).
    Person,
    /// An auction opens (1).
    Auction,
    /// A bid is placed (2).
    Bid,
}

impl EventType {
    /// The `event_type` code.
    pub fn code(self) -> i32 {
        match self {
            Self::Person => 0,
            Self::Auction => 1,
            Self::Bid => 2,
        }
    }
}

/// A person registering.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    /// From [`FIRST_PERSON_ID`], one more per person.
    pub id: i64,
    /// A first and a last name.
    pub name: String,
    /// `abcdefg@hijkl.com`, random letters.
    pub email_address: String,
    /// Four groups of four digits.
    pub credit_card: String,
    /// One of a few cities.
    pub city: &'static str,
    /// One of a few states.
    pub state: &'static str,
    /// The event time, in milliseconds since the epoch.
    pub date_time: i64,
    /// Padding to the average person size.
    pub extra: Cow<'static, str>,
}

/// An auction opening.
#[derive(Debug, Clone, PartialEq)]
pub struct Auction {
    /// From [`FIRST_AUCTION_ID`], one more per auction.
    pub id: i64,
    /// Random words, up to 20 characters.
    pub item_name: String,
    /// Random words, up to 100 characters.
    pub description: String,
    /// The first price, in cents.
    pub initial_bid: i64,
    /// The least price it sells at (above the initial bid).
    pub reserve: i64,
    /// The event time, in milliseconds since the epoch.
    pub date_time: i64,
    /// When it closes, after `date_time`.
    pub expires: i64,
    /// The selling person's id.
    pub seller: i64,
    /// From [`FIRST_CATEGORY_ID`].
    pub category: i64,
    /// Padding to the average auction size.
    pub extra: Cow<'static, str>,
}

/// A bid placed.
#[derive(Debug, Clone, PartialEq)]
pub struct Bid {
    /// The auction's id.
    pub auction: i64,
    /// The bidding person's id.
    pub bidder: i64,
    /// In cents, from 1 dollar to a million, log-uniformly.
    pub price: i64,
    /// Where the bid came from.
    pub channel: &'static str,
    /// The page it came from.
    pub url: &'static str,
    /// The event time, in milliseconds since the epoch.
    pub date_time: i64,
    /// Padding to the average bid size.
    pub extra: Cow<'static, str>,
}

/// A Nexmark event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A person registering.
    Person(Person),
    /// An auction opening.
    Auction(Auction),
    /// A bid placed.
    Bid(Bid),
}

impl Event {
    /// Which kind of event it is.
    pub fn event_type(&self) -> EventType {
        match self {
            Self::Person(_) => EventType::Person,
            Self::Auction(_) => EventType::Auction,
            Self::Bid(_) => EventType::Bid,
        }
    }

    /// The person, when it is one.
    pub fn person(&self) -> Option<&Person> {
        match self {
            Self::Person(person) => Some(person),
            _ => None,
        }
    }

    /// The auction, when it is one.
    pub fn auction(&self) -> Option<&Auction> {
        match self {
            Self::Auction(auction) => Some(auction),
            _ => None,
        }
    }

    /// The bid, when it is one.
    pub fn bid(&self) -> Option<&Bid> {
        match self {
            Self::Bid(bid) => Some(bid),
            _ => None,
        }
    }
}

/// The random draws of one event: SplitMix64 from a seed made of the event's
/// number.
struct Draws(u64);

impl Draws {
    fn new(seed: u64, number: u64) -> Self {
        Self(mix(seed, number, 0))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` above 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<T: Copy>(&mut self, values: &[T]) -> T {
        values[self.below(values.len() as u64) as usize]
    }

    /// A price in cents: 10^(0..6) dollars, log-uniformly (`PriceGenerator`).
    fn price(&mut self) -> i64 {
        (10f64.powf(self.unit() * 6.0) * 100.0).round() as i64
    }

    /// Letters, one in 13 of them `special`, 3 to `max_length - 1` of them,
    /// with the spaces at the ends trimmed (`nextString`).
    fn string(&mut self, max_length: u64, special: char) -> String {
        let length = MIN_STRING_LENGTH + self.below(max_length - MIN_STRING_LENGTH);
        let text: String = (0..length)
            .map(|_| {
                // One draw of 13 * 26: a 26th of them special, the rest letters.
                let draw = self.below(13 * 26);
                if draw < 26 {
                    special
                } else {
                    char::from(b'a' + (draw % 26) as u8)
                }
            })
            .collect();
        match text.trim() {
            trimmed if trimmed.len() == text.len() => text,
            trimmed => trimmed.to_owned(),
        }
    }

    /// `length` random letters (`nextExactString`): a slice of the shared text
    /// when it is short enough.
    fn exact_string(&mut self, length: usize) -> Cow<'static, str> {
        let pool = extra_pool();
        if length < pool.len() / 2 {
            let start = self.below((pool.len() - length) as u64) as usize;
            Cow::Borrowed(&pool[start..start + length])
        } else {
            Cow::Owned(
                (0..length)
                    .map(|_| char::from(b'a' + self.below(26) as u8))
                    .collect(),
            )
        }
    }

    /// Padding that brings an event of `current` bytes to `average` bytes on
    /// average: within 20% of the difference (`nextExtra`).
    fn extra(&mut self, current: u64, average: u64) -> Cow<'static, str> {
        if current > average {
            return Cow::Borrowed("");
        }
        let wanted = average - current;
        let delta = (wanted as f64 * 0.2).round() as u64;
        let length = wanted - delta + if delta == 0 { 0 } else { self.below(2 * delta) };
        self.exact_string(length as usize)
    }
}

/// The random text `extra` columns are slices of.
fn extra_pool() -> &'static str {
    static POOL: OnceLock<String> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut draws = Draws::new(TABLES_SEED, 0);
        (0..EXTRA_POOL_LENGTH)
            .map(|_| char::from(b'a' + draws.below(26) as u8))
            .collect()
    })
}

/// The channels bids come through and their URLs: the hot ones', then
/// `channel-<i>`'s (`CHANNEL_URL_CACHE`).
struct Channels {
    hot_urls: Vec<String>,
    others: Vec<(String, String)>,
}

fn channels() -> &'static Channels {
    static CHANNELS: OnceLock<Channels> = OnceLock::new();
    CHANNELS.get_or_init(|| {
        let mut draws = Draws::new(TABLES_SEED, 1);
        let url = |draws: &mut Draws| {
            format!(
                "https://www.nexmark.com/{}/{}/{}/item.htm?query=1",
                draws.string(5, '_'),
                draws.string(5, '_'),
                draws.string(5, '_')
            )
        };
        let hot_urls = HOT_CHANNELS.iter().map(|_| url(&mut draws)).collect();
        let others = (0..CHANNELS_NUMBER)
            .map(|i| {
                let mut address = url(&mut draws);
                // Nine in ten URLs name their channel, by its index's bits
                // reversed (as Java's `Math.abs(Integer.reverse(i))`, overflow
                // included).
                if draws.below(10) > 0 {
                    address.push_str(&format!(
                        "&channel_id={}",
                        (i as i32).reverse_bits().wrapping_abs()
                    ));
                }
                (format!("channel-{i}"), address)
            })
            .collect();
        Channels { hot_urls, others }
    })
}

/// Nexmark events by their number (see the module's documentation).
#[derive(Debug, Clone)]
pub struct NexmarkGenerator {
    options: NexmarkOptions,
}

impl NexmarkGenerator {
    /// A generator of the events `options` describe.
    pub fn new(options: NexmarkOptions) -> Self {
        Self { options }
    }

    /// The same events with event 0 at `base_time`.
    fn at_base_time(&self, base_time: i64) -> Self {
        Self {
            options: NexmarkOptions {
                base_time,
                ..self.options.clone()
            },
        }
    }

    /// The kind of event `n`.
    pub fn event_type(&self, n: u64) -> EventType {
        let options = &self.options;
        let offset = n % options.total_proportion();
        if offset < options.person_proportion {
            EventType::Person
        } else if offset < options.person_proportion + options.auction_proportion {
            EventType::Auction
        } else {
            EventType::Bid
        }
    }

    /// How many of events `0..events` are of kind `event_type`.
    pub fn count(&self, event_type: EventType, events: u64) -> u64 {
        let options = &self.options;
        let (first, proportion) = match event_type {
            EventType::Person => (0, options.person_proportion),
            EventType::Auction => (options.person_proportion, options.auction_proportion),
            EventType::Bid => (
                options.person_proportion + options.auction_proportion,
                options.bid_proportion,
            ),
        };
        let total = options.total_proportion();
        let rest = events % total;
        events / total * proportion + rest.saturating_sub(first).min(proportion)
    }

    /// The event time of event `n`: `n` inter-event delays after the base time,
    /// in milliseconds.
    pub fn timestamp(&self, n: u64) -> i64 {
        let offset = u128::from(n) * 1000 / u128::from(self.options.first_event_rate);
        self.options.base_time + offset as i64
    }

    /// Event `n`.
    pub fn event(&self, n: u64) -> Event {
        let mut draws = Draws::new(EVENT_SEED, n);
        let time = self.timestamp(n);
        match self.event_type(n) {
            EventType::Person => Event::Person(self.person(n, time, &mut draws)),
            EventType::Auction => Event::Auction(self.auction(n, time, &mut draws)),
            EventType::Bid => Event::Bid(self.bid(n, time, &mut draws)),
        }
    }

    /// The latest person id (from 0) at event `n`: its own when it is a person.
    fn last_person(&self, n: u64) -> i64 {
        let options = &self.options;
        let total = options.total_proportion();
        let offset = (n % total).min(options.person_proportion - 1);
        (n / total * options.person_proportion + offset) as i64
    }

    /// The latest auction id (from 0) at event `n`: its own when it is an
    /// auction, -1 before the first.
    fn last_auction(&self, n: u64) -> i64 {
        let options = &self.options;
        let total = options.total_proportion();
        let epoch = (n / total) as i64;
        let offset = n % total;
        let auctions = options.auction_proportion as i64;
        if offset < options.person_proportion {
            // A person: the last auction of the previous round.
            epoch * auctions - 1
        } else if offset < options.person_proportion + options.auction_proportion {
            epoch * auctions + (offset - options.person_proportion) as i64
        } else {
            // A bid: the last auction of this round.
            epoch * auctions + auctions - 1
        }
    }

    /// A random active person (from 0), or one of the next few to register.
    fn random_person(&self, n: u64, draws: &mut Draws) -> i64 {
        let people = self.last_person(n) + 1;
        let active = people.min(NUM_ACTIVE_PEOPLE);
        people - active + draws.below(active as u64 + PERSON_ID_LEAD) as i64
    }

    /// A random auction still likely open (from 0), or one of the next few.
    fn random_auction(&self, n: u64, draws: &mut Draws) -> i64 {
        let last = self.last_auction(n).max(0);
        let first = (last - NUM_IN_FLIGHT_AUCTIONS).max(0);
        first + draws.below((last - first) as u64 + 1 + AUCTION_ID_LEAD) as i64
    }

    fn person(&self, n: u64, time: i64, draws: &mut Draws) -> Person {
        let name = format!("{} {}", draws.pick(&FIRST_NAMES), draws.pick(&LAST_NAMES));
        let email_address = format!("{}@{}.com", draws.string(7, ' '), draws.string(5, ' '));
        let credit_card = (0..4)
            .map(|_| format!("{:04}", draws.below(10_000)))
            .collect::<Vec<_>>()
            .join(" ");
        let city = draws.pick(&US_CITIES);
        let state = draws.pick(&US_STATES);
        let size =
            8 + name.len() + email_address.len() + credit_card.len() + city.len() + state.len();
        let extra = draws.extra(size as u64, self.options.avg_person_size);
        Person {
            id: self.last_person(n) + FIRST_PERSON_ID,
            name,
            email_address,
            credit_card,
            city,
            state,
            date_time: time,
            extra,
        }
    }

    fn auction(&self, n: u64, time: i64, draws: &mut Draws) -> Auction {
        let options = &self.options;
        let seller = if draws.below(options.hot_seller_ratio) > 0 {
            self.last_person(n) / HOT_SELLER_BATCH * HOT_SELLER_BATCH
        } else {
            self.random_person(n, draws)
        };
        let category = FIRST_CATEGORY_ID + draws.below(NUM_CATEGORIES) as i64;
        let initial_bid = draws.price();
        // Auctions last twice, on average, the time until NUM_IN_FLIGHT_AUCTIONS
        // more auctions have opened.
        let events_for_auctions =
            NUM_IN_FLIGHT_AUCTIONS as u64 * options.total_proportion() / options.auction_proportion;
        let horizon = self.timestamp(n + events_for_auctions) - time;
        let expires = time + 1 + draws.below((horizon * 2).max(1) as u64) as i64;
        let item_name = draws.string(20, ' ');
        let description = draws.string(100, ' ');
        let reserve = initial_bid + draws.price();
        let size = 8 + item_name.len() + description.len() + 5 * 8;
        let extra = draws.extra(size as u64, options.avg_auction_size);
        Auction {
            id: self.last_auction(n) + FIRST_AUCTION_ID,
            item_name,
            description,
            initial_bid,
            reserve,
            date_time: time,
            expires,
            seller: seller + FIRST_PERSON_ID,
            category,
            extra,
        }
    }

    fn bid(&self, n: u64, time: i64, draws: &mut Draws) -> Bid {
        let options = &self.options;
        let auction = if draws.below(options.hot_auction_ratio) > 0 {
            self.last_auction(n) / HOT_AUCTION_BATCH * HOT_AUCTION_BATCH
        } else {
            self.random_auction(n, draws)
        };
        let bidder = if draws.below(options.hot_bidder_ratio) > 0 {
            self.last_person(n) / HOT_BIDDER_BATCH * HOT_BIDDER_BATCH + 1
        } else {
            self.random_person(n, draws)
        };
        let price = draws.price();
        let channels = channels();
        let (channel, url) = if draws.below(HOT_CHANNELS_RATIO) > 0 {
            let hot = draws.below(HOT_CHANNELS.len() as u64) as usize;
            (HOT_CHANNELS[hot], channels.hot_urls[hot].as_str())
        } else {
            let (channel, url) = &channels.others[draws.below(u64::from(CHANNELS_NUMBER)) as usize];
            (channel.as_str(), url.as_str())
        };
        let extra = draws.extra(4 * 8, options.avg_bid_size);
        Bid {
            auction: auction + FIRST_AUCTION_ID,
            bidder: bidder + FIRST_PERSON_ID,
            price,
            channel,
            url,
            date_time: time,
            extra,
        }
    }
}

/// How a value of an event's field is read, by the Arrow type it is made as.
#[derive(Clone, Copy)]
enum Getter {
    /// A BIGINT.
    Long(fn(&Event) -> Option<i64>),
    /// A VARCHAR.
    Text(fn(&Event) -> Option<&str>),
    /// A TIMESTAMP(3).
    Time(fn(&Event) -> Option<i64>),
}

impl Getter {
    fn data_type(self) -> DataType {
        match self {
            Self::Long(_) => DataType::Int64,
            Self::Text(_) => DataType::Utf8,
            Self::Time(_) => DataType::Timestamp(TimeUnit::Millisecond, None),
        }
    }

    fn array(self, events: &[Event]) -> ArrayRef {
        match self {
            Self::Long(get) => Arc::new(Int64Array::from_iter(events.iter().map(get))),
            Self::Text(get) => Arc::new(StringArray::from_iter(events.iter().map(get))),
            Self::Time(get) => {
                Arc::new(TimestampMillisecondArray::from_iter(events.iter().map(get)))
            }
        }
    }
}

/// The fields of `person`, as nexmark-flink names them.
const PERSON_FIELDS: [(&str, Getter); 8] = [
    ("id", Getter::Long(|e| e.person().map(|p| p.id))),
    (
        "name",
        Getter::Text(|e| e.person().map(|p| p.name.as_str())),
    ),
    (
        "emailAddress",
        Getter::Text(|e| e.person().map(|p| p.email_address.as_str())),
    ),
    (
        "creditCard",
        Getter::Text(|e| e.person().map(|p| p.credit_card.as_str())),
    ),
    ("city", Getter::Text(|e| e.person().map(|p| p.city))),
    ("state", Getter::Text(|e| e.person().map(|p| p.state))),
    (
        "dateTime",
        Getter::Time(|e| e.person().map(|p| p.date_time)),
    ),
    (
        "extra",
        Getter::Text(|e| e.person().map(|p| p.extra.as_ref())),
    ),
];

/// The fields of `auction`.
const AUCTION_FIELDS: [(&str, Getter); 10] = [
    ("id", Getter::Long(|e| e.auction().map(|a| a.id))),
    (
        "itemName",
        Getter::Text(|e| e.auction().map(|a| a.item_name.as_str())),
    ),
    (
        "description",
        Getter::Text(|e| e.auction().map(|a| a.description.as_str())),
    ),
    (
        "initialBid",
        Getter::Long(|e| e.auction().map(|a| a.initial_bid)),
    ),
    ("reserve", Getter::Long(|e| e.auction().map(|a| a.reserve))),
    (
        "dateTime",
        Getter::Time(|e| e.auction().map(|a| a.date_time)),
    ),
    ("expires", Getter::Time(|e| e.auction().map(|a| a.expires))),
    ("seller", Getter::Long(|e| e.auction().map(|a| a.seller))),
    (
        "category",
        Getter::Long(|e| e.auction().map(|a| a.category)),
    ),
    (
        "extra",
        Getter::Text(|e| e.auction().map(|a| a.extra.as_ref())),
    ),
];

/// The fields of `bid`.
const BID_FIELDS: [(&str, Getter); 7] = [
    ("auction", Getter::Long(|e| e.bid().map(|b| b.auction))),
    ("bidder", Getter::Long(|e| e.bid().map(|b| b.bidder))),
    ("price", Getter::Long(|e| e.bid().map(|b| b.price))),
    ("channel", Getter::Text(|e| e.bid().map(|b| b.channel))),
    ("url", Getter::Text(|e| e.bid().map(|b| b.url))),
    ("dateTime", Getter::Time(|e| e.bid().map(|b| b.date_time))),
    ("extra", Getter::Text(|e| e.bid().map(|b| b.extra.as_ref()))),
];

/// How a stored column is made from events.
#[derive(Clone)]
enum ColumnPlan {
    /// `event_type`, cast to its declared type.
    EventType(DataType),
    /// A `ROW` of the events of one kind (null for the others).
    Struct {
        event_type: EventType,
        fields: Fields,
        getters: Vec<Getter>,
    },
}

/// How each of the stored columns `stored` is made, or why one cannot be.
fn plan_columns(stored: &Schema) -> Result<Vec<ColumnPlan>, String> {
    stored
        .fields()
        .iter()
        .map(|column| {
            let name = column.name();
            let (event_type, known) = match name.to_ascii_lowercase().as_str() {
                "event_type" => {
                    return if arrow::compute::can_cast_types(&DataType::Int32, column.data_type())
                    {
                        Ok(ColumnPlan::EventType(column.data_type().clone()))
                    } else {
                        Err(format!(
                            "column {name} is {}, but event types are INT codes",
                            column.data_type()
                        ))
                    };
                }
                "person" => (EventType::Person, &PERSON_FIELDS[..]),
                "auction" => (EventType::Auction, &AUCTION_FIELDS[..]),
                "bid" => (EventType::Bid, &BID_FIELDS[..]),
                _ => {
                    return Err(format!(
                        "the nexmark connector makes the columns event_type, person, auction and bid; {name} is none of them (declare others as computed columns)"
                    ));
                }
            };
            let known_names = || {
                known
                    .iter()
                    .map(|(field, _)| *field)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let DataType::Struct(fields) = column.data_type() else {
                return Err(format!(
                    "column {name} is {}, but it holds events as a ROW<{}>",
                    column.data_type(),
                    known_names()
                ));
            };
            if !column.is_nullable() {
                return Err(format!(
                    "column {name} is NOT NULL, but it is null in rows of other events"
                ));
            }
            let getters = fields
                .iter()
                .map(|field| {
                    let (_, getter) = known
                        .iter()
                        .find(|(known, _)| known.eq_ignore_ascii_case(field.name()))
                        .ok_or_else(|| {
                            format!(
                                "column {name}: field {} is none of {}",
                                field.name(),
                                known_names()
                            )
                        })?;
                    if arrow::compute::can_cast_types(&getter.data_type(), field.data_type()) {
                        Ok(*getter)
                    } else {
                        Err(format!(
                            "column {name}: field {} is {}, but its values are {}",
                            field.name(),
                            field.data_type(),
                            getter.data_type()
                        ))
                    }
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok(ColumnPlan::Struct {
                event_type,
                fields: fields.clone(),
                getters,
            })
        })
        .collect()
}

/// The stored columns of `events`, by `plans`; of the `ROW` columns only the
/// fields in `reads` (all without), the others null.
fn columns(
    events: &[Event],
    plans: &[ColumnPlan],
    reads: Option<&Reads>,
) -> Result<Vec<ArrayRef>, SourceError> {
    let cast = |array: ArrayRef, data_type: &DataType| -> Result<ArrayRef, SourceError> {
        if array.data_type() == data_type {
            Ok(array)
        } else {
            arrow::compute::cast(&array, data_type).map_err(|error| SourceError(error.to_string()))
        }
    };
    plans
        .iter()
        .enumerate()
        .map(|(index, plan)| match plan {
            ColumnPlan::EventType(data_type) => {
                let codes = Int32Array::from_iter_values(
                    events.iter().map(|event| event.event_type().code()),
                );
                cast(Arc::new(codes), data_type)
            }
            ColumnPlan::Struct {
                event_type,
                fields,
                getters,
            } => {
                let read = |field: &Field| {
                    !field.is_nullable()
                        || reads.is_none_or(|reads| reads.reads_field(index, field.name()))
                };
                let children = getters
                    .iter()
                    .zip(fields.iter())
                    .map(|(getter, field)| {
                        if read(field) {
                            cast(getter.array(events), field.data_type())
                        } else {
                            Ok(new_null_array(field.data_type(), events.len()))
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let present = NullBuffer::from(
                    events
                        .iter()
                        .map(|event| event.event_type() == *event_type)
                        .collect::<Vec<_>>(),
                );
                let array = StructArray::try_new(fields.clone(), children, Some(present))
                    .map_err(|error| SourceError(error.to_string()))?;
                Ok(Arc::new(array) as ArrayRef)
            }
        })
        .collect()
}

/// Where a split of a `nexmark` table is read from next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NexmarkPosition {
    /// How many of the split's events were read.
    pub read: u64,
    /// The event time of event 0 of the table, kept so that a restored job goes
    /// on with the same times.
    pub base_time: i64,
}

/// The events of a `nexmark` table: [`SPLITS`] sequences, event `n * splits + s`
/// of the table being the `n`th of split `s`.
pub struct NexmarkSource {
    generator: NexmarkGenerator,
    stored: SchemaRef,
    columns: Result<Vec<ColumnPlan>, String>,
    projection: Option<ReadProjection>,
    splits: u32,
    /// The stored columns and fields the plan reads (`None`: all): the others
    /// are made null, not built.
    reads: Option<Reads>,
}

impl NexmarkSource {
    /// A source of the stored columns `stored`, with `projection` adding the
    /// computed ones, in `splits` splits.
    pub fn new(
        options: NexmarkOptions,
        stored: SchemaRef,
        projection: Option<ReadProjection>,
        splits: u32,
    ) -> Self {
        Self {
            generator: NexmarkGenerator::new(options),
            columns: plan_columns(&stored),
            stored,
            projection,
            splits: splits.max(1),
            reads: None,
        }
    }

    /// Makes only the stored columns and `ROW` fields in `reads` (`None`: all);
    /// the others are null. The events are the same: only what is built of them
    /// changes.
    pub fn reading(mut self, reads: Option<Reads>) -> Self {
        self.reads = reads;
        self
    }

    fn options(&self) -> &NexmarkOptions {
        &self.generator.options
    }
}

impl SplitSource for NexmarkSource {
    type Record = SqlBatch;
    type Position = NexmarkPosition;

    fn discover(&mut self) -> Result<Vec<SplitId>, SourceError> {
        if let Err(error) = &self.columns {
            return Err(SourceError(error.clone()));
        }
        Ok((0..self.splits)
            .map(|split| SplitId::new("", split))
            .collect())
    }

    fn start(
        &mut self,
        _split: &SplitId,
        _discovered_later: bool,
    ) -> Result<NexmarkPosition, SourceError> {
        Ok(NexmarkPosition {
            read: 0,
            base_time: self.options().base_time,
        })
    }

    fn read(
        &mut self,
        split: &SplitId,
        position: &mut NexmarkPosition,
        max: usize,
        out: &mut Vec<SqlBatch>,
    ) -> Result<ReadStatus, SourceError> {
        let splits = u64::from(self.splits);
        let index = u64::from(split.index);
        let of_split = self
            .options()
            .events
            .map(|total| total / splits + u64::from(index < total % splits));
        let mut end = position.read + max as u64;
        let mut paced = false;
        let now = Instant::now();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as i64);
        if !self.options().max_emit_speed {
            let due = due_events(
                now_ms - position.base_time,
                self.options().first_event_rate,
                splits,
                index,
            );
            if due < end {
                end = due.max(position.read);
                paced = true;
            }
        }
        if let Some(count) = of_split {
            end = end.min(count);
        }
        if end > position.read {
            let plans = self
                .columns
                .as_ref()
                .map_err(|error| SourceError(error.clone()))?;
            let generator = self.generator.at_base_time(position.base_time);
            let events: Vec<Event> = (position.read..end)
                .map(|n| generator.event(n * splits + index))
                .collect();
            let columns = columns(&events, plans, self.reads.as_ref())?;
            let batch = RecordBatch::try_new(Arc::clone(&self.stored), columns)
                .map_err(|error| SourceError(error.to_string()))?;
            let batch = match &self.projection {
                Some(projection) => projection.apply(batch)?,
                None => batch,
            };
            out.push(SqlBatch(batch));
            position.read = end;
        }
        Ok(match of_split {
            Some(count) if position.read >= count && !self.options().keep_alive => {
                ReadStatus::Ended
            }
            Some(count) if position.read >= count => ReadStatus::Idle,
            _ if paced => {
                let event = position.read * splits + index;
                let due_ms = self
                    .generator
                    .at_base_time(position.base_time)
                    .timestamp(event);
                // At most a day ahead: an Instant far out would overflow.
                let wait_ms = u64::try_from(due_ms - now_ms).unwrap_or(0).min(86_400_000);
                ReadStatus::IdleUntil(now + Duration::from_millis(wait_ms))
            }
            _ => ReadStatus::More,
        })
    }

    fn count(record: &SqlBatch) -> u64 {
        record.num_rows() as u64
    }
}

/// How many events of split `index` of `splits` have come by `elapsed_ms` after
/// the base time, at `rate` events per second of event time: event `g` of the
/// table has event time `g * 1000 / rate` ms (rounded down), split `index` holds
/// events `index`, `index + splits`, ….
fn due_events(elapsed_ms: i64, rate: u64, splits: u64, index: u64) -> u64 {
    let Ok(elapsed_ms) = u128::try_from(elapsed_ms) else {
        return 0;
    };
    // Events g with g * 1000 / rate <= elapsed, that is g < (elapsed + 1) * rate / 1000.
    let of_table = ((elapsed_ms + 1) * u128::from(rate)).div_ceil(1000);
    let of_split = of_table
        .saturating_sub(u128::from(index))
        .div_ceil(u128::from(splits));
    u64::try_from(of_split).unwrap_or(u64::MAX)
}

/// nexmark-flink's table and views as they are (its `ddl_gen.sql` and
/// `ddl_views.sql`: the table `datagen`, the views `person`, `auction` and `bid`),
/// with `options` (`'events.num' = '1000'`, say) added to the table's `WITH`.
pub fn flink_ddl(options: &[(&str, String)]) -> String {
    let options: String = options
        .iter()
        .map(|(key, value)| format!(",\n            '{key}' = '{value}'"))
        .collect();
    format!(
        "CREATE TABLE datagen (
            event_type INT,
            person ROW<
                id BIGINT,
                name VARCHAR,
                emailAddress VARCHAR,
                creditCard VARCHAR,
                city VARCHAR,
                state VARCHAR,
                `dateTime` TIMESTAMP(3),
                extra VARCHAR>,
            auction ROW<
                id BIGINT,
                itemName VARCHAR,
                description VARCHAR,
                initialBid BIGINT,
                reserve BIGINT,
                `dateTime` TIMESTAMP(3),
                expires TIMESTAMP(3),
                seller BIGINT,
                category BIGINT,
                extra VARCHAR>,
            bid ROW<
                auction BIGINT,
                bidder BIGINT,
                price BIGINT,
                channel VARCHAR,
                url VARCHAR,
                `dateTime` TIMESTAMP(3),
                extra VARCHAR>,
            `dateTime` AS
                CASE
                    WHEN event_type = 0 THEN person.`dateTime`
                    WHEN event_type = 1 THEN auction.`dateTime`
                    ELSE bid.`dateTime`
                END,
            WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '4' SECOND
        ) WITH (
            'connector' = 'nexmark'{options}
        );

        CREATE VIEW person AS
        SELECT person.id, person.name, person.emailAddress,
               person.creditCard, person.city, person.state,
               `dateTime`, person.extra
        FROM datagen WHERE event_type = 0;

        CREATE VIEW auction AS
        SELECT auction.id, auction.itemName,
               auction.description, auction.initialBid,
               auction.reserve, `dateTime`, auction.expires,
               auction.seller, auction.category, auction.extra
        FROM datagen WHERE event_type = 1;

        CREATE VIEW bid AS
        SELECT bid.auction, bid.bidder, bid.price,
               bid.channel, bid.url, `dateTime`, bid.extra
        FROM datagen WHERE event_type = 2;
        "
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Field;

    use super::*;

    /// 2023-11-14T22:13:20Z.
    const BASE: i64 = 1_700_000_000_000;

    fn generator() -> NexmarkGenerator {
        NexmarkGenerator::new(NexmarkOptions {
            base_time: BASE,
            ..NexmarkOptions::default()
        })
    }

    /// nexmark-flink's table, all of it.
    fn flink_schema() -> SchemaRef {
        let time = DataType::Timestamp(TimeUnit::Millisecond, None);
        let row = |fields: &[(&str, &DataType)]| {
            DataType::Struct(Fields::from(
                fields
                    .iter()
                    .map(|(name, data_type)| Field::new(*name, (*data_type).clone(), true))
                    .collect::<Vec<_>>(),
            ))
        };
        let (long, text) = (&DataType::Int64, &DataType::Utf8);
        Arc::new(Schema::new(vec![
            Field::new("event_type", DataType::Int32, true),
            Field::new(
                "person",
                row(&[
                    ("id", long),
                    ("name", text),
                    ("emailAddress", text),
                    ("creditCard", text),
                    ("city", text),
                    ("state", text),
                    ("dateTime", &time),
                    ("extra", text),
                ]),
                true,
            ),
            Field::new(
                "auction",
                row(&[
                    ("id", long),
                    ("itemName", text),
                    ("description", text),
                    ("initialBid", long),
                    ("reserve", long),
                    ("dateTime", &time),
                    ("expires", &time),
                    ("seller", long),
                    ("category", long),
                    ("extra", text),
                ]),
                true,
            ),
            Field::new(
                "bid",
                row(&[
                    ("auction", long),
                    ("bidder", long),
                    ("price", long),
                    ("channel", text),
                    ("url", text),
                    ("dateTime", &time),
                    ("extra", text),
                ]),
                true,
            ),
        ]))
    }

    #[test]
    fn the_event_mix_is_the_proportions_exactly() {
        let generator = generator();
        let mut counts = BTreeMap::new();
        for n in 0..1000 {
            *counts
                .entry(generator.event(n).event_type().code())
                .or_insert(0u64) += 1;
        }
        assert_eq!(counts, BTreeMap::from([(0, 20), (1, 60), (2, 920)]));
        for (event_type, expected) in [
            (EventType::Person, 20),
            (EventType::Auction, 60),
            (EventType::Bid, 920),
        ] {
            assert_eq!(generator.count(event_type, 1000), expected);
        }
        // Part of a round: events 0..53 are 2 people, 3 + 2 auctions, 46 bids.
        assert_eq!(generator.count(EventType::Person, 53), 2);
        assert_eq!(generator.count(EventType::Auction, 53), 5);
        assert_eq!(generator.count(EventType::Bid, 53), 46);
        let other = NexmarkGenerator::new(NexmarkOptions {
            person_proportion: 2,
            auction_proportion: 3,
            bid_proportion: 5,
            ..NexmarkOptions::default()
        });
        let bids = (0..1000)
            .filter(|n| other.event_type(*n) == EventType::Bid)
            .count();
        assert_eq!(bids, 500);
        assert_eq!(other.count(EventType::Bid, 1000), 500);
    }

    #[test]
    fn ids_and_times_of_given_events_are_pinned() {
        let generator = generator();
        let person = |n| generator.event(n).person().cloned().unwrap();
        let auction = |n| generator.event(n).auction().cloned().unwrap();
        let bid = |n| generator.event(n).bid().cloned().unwrap();
        // Round 0: person 1000, auctions 1000..=1002, then bids.
        assert_eq!(person(0).id, FIRST_PERSON_ID);
        assert_eq!(
            [auction(1).id, auction(2).id, auction(3).id],
            [1000, 1001, 1002]
        );
        // Round 1 (events 50..100): person 1001, auctions 1003..=1005.
        assert_eq!(person(50).id, 1001);
        assert_eq!(auction(51).id, 1003);
        assert_eq!(auction(53).id, 1005);
        // Round 1000: person 2000.
        assert_eq!(person(50_000).id, 2000);
        // At 10,000 events a second, an event every 0.1 ms.
        assert_eq!(person(0).date_time, BASE);
        assert_eq!(bid(9).date_time, BASE);
        assert_eq!(bid(10).date_time, BASE + 1);
        assert_eq!(person(50_000).date_time, BASE + 5_000);
        let slow = NexmarkGenerator::new(NexmarkOptions {
            first_event_rate: 3,
            base_time: BASE,
            ..NexmarkOptions::default()
        });
        assert_eq!(slow.timestamp(1), BASE + 333);
        assert_eq!(slow.timestamp(3), BASE + 1000);
        // Bids name auctions and people that exist (or are about to).
        for n in (4..50).chain(10_004..10_050) {
            let bid = bid(n);
            let last_auction = generator.last_auction(n) + FIRST_AUCTION_ID;
            let last_person = generator.last_person(n) + FIRST_PERSON_ID;
            assert!(
                (FIRST_AUCTION_ID..=last_auction + AUCTION_ID_LEAD as i64).contains(&bid.auction),
                "{bid:?}"
            );
            assert!(
                (FIRST_PERSON_ID..=last_person + PERSON_ID_LEAD as i64).contains(&bid.bidder),
                "{bid:?}"
            );
            assert!((100..=100_000_000).contains(&bid.price), "{bid:?}");
            assert_eq!(bid.date_time, generator.timestamp(n));
        }
        let auction = auction(10_001);
        assert!(auction.expires > auction.date_time, "{auction:?}");
        assert!(auction.reserve > auction.initial_bid, "{auction:?}");
        assert!((10..15).contains(&auction.category), "{auction:?}");
        // The same event every time.
        assert_eq!(generator.event(12_345), generator.event(12_345));
    }

    #[test]
    fn fields_follow_the_reference_distributions() {
        let generator = generator();
        let events: Vec<Event> = (0..50_000).map(|n| generator.event(n)).collect();
        let bids: Vec<&Bid> = events.iter().filter_map(Event::bid).collect();
        let people: Vec<&Person> = events.iter().filter_map(Event::person).collect();
        let auctions: Vec<&Auction> = events.iter().filter_map(Event::auction).collect();
        let share = |count: usize, of: usize| count as f64 / of as f64;
        // Half of the bids are for the hot auction of their batch of 100.
        let hot = bids
            .iter()
            .filter(|bid| (bid.auction - FIRST_AUCTION_ID) % HOT_AUCTION_BATCH == 0)
            .count();
        assert!((0.48..0.54).contains(&share(hot, bids.len())), "{hot}");
        // Three in four bids by the hot bidder, three in four auctions by the hot
        // seller.
        let hot = bids
            .iter()
            .filter(|bid| (bid.bidder - FIRST_PERSON_ID) % HOT_BIDDER_BATCH == 1)
            .count();
        assert!((0.73..0.78).contains(&share(hot, bids.len())), "{hot}");
        let hot = auctions
            .iter()
            .filter(|auction| (auction.seller - FIRST_PERSON_ID) % HOT_SELLER_BATCH == 0)
            .count();
        assert!((0.71..0.80).contains(&share(hot, auctions.len())), "{hot}");
        // Half of the bids through the hot channels.
        let hot = bids
            .iter()
            .filter(|bid| HOT_CHANNELS.contains(&bid.channel))
            .count();
        assert!((0.48..0.52).contains(&share(hot, bids.len())), "{hot}");
        assert!(
            bids.iter()
                .all(|bid| bid.url.starts_with("https://www.nexmark.com/"))
        );
        // Prices log-uniform from $1 to $1M: a sixth of them per decade.
        let cheap = bids.iter().filter(|bid| bid.price < 1_000).count();
        assert!((0.15..0.18).contains(&share(cheap, bids.len())), "{cheap}");
        // Sizes about the averages.
        let average = |sizes: Vec<usize>| sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
        let bid_size = average(bids.iter().map(|bid| 32 + bid.extra.len()).collect());
        assert!((95.0..105.0).contains(&bid_size), "{bid_size}");
        let person_size = average(
            people
                .iter()
                .map(|p| {
                    8 + p.name.len()
                        + p.email_address.len()
                        + p.credit_card.len()
                        + p.city.len()
                        + p.state.len()
                        + p.extra.len()
                })
                .collect(),
        );
        assert!((190.0..210.0).contains(&person_size), "{person_size}");
        let person = people[0];
        assert!(US_STATES.contains(&person.state) && US_CITIES.contains(&person.city));
        assert_eq!(person.credit_card.len(), 19, "{person:?}");
        assert!(person.email_address.ends_with(".com"), "{person:?}");
    }

    /// Every row `source` gives, read to its end, as text sorted by event time
    /// and then by text.
    fn read_all(mut source: NexmarkSource) -> Vec<String> {
        let mut rows = Vec::new();
        for split in source.discover().unwrap() {
            let mut position = source.start(&split, false).unwrap();
            loop {
                let mut out = Vec::new();
                let status = source.read(&split, &mut position, 7, &mut out).unwrap();
                for SqlBatch(batch) in out {
                    rows.extend(crate::sql::job::format_rows(&batch, "+I"));
                }
                if status == ReadStatus::Ended {
                    break;
                }
            }
        }
        rows.sort();
        rows
    }

    #[test]
    fn the_events_are_the_same_at_one_and_three_splits() {
        let options = NexmarkOptions {
            events: Some(500),
            base_time: BASE,
            ..NexmarkOptions::default()
        };
        let source = |splits| NexmarkSource::new(options.clone(), flink_schema(), None, splits);
        let one = read_all(source(1));
        let three = read_all(source(3));
        assert_eq!(one.len(), 500);
        assert_eq!(one, three);
        let persons = one.iter().filter(|row| row.starts_with("+I[0,")).count();
        assert_eq!(persons, 10);
    }

    #[test]
    fn rows_hold_one_event_each_with_the_declared_fields_and_types() {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "BID",
                DataType::Struct(Fields::from(vec![
                    Field::new("price", DataType::Utf8, true),
                    Field::new("Auction", DataType::Int64, true),
                ])),
                true,
            ),
            Field::new("event_type", DataType::Int64, true),
        ]));
        let options = NexmarkOptions {
            events: Some(6),
            base_time: BASE,
            ..NexmarkOptions::default()
        };
        let mut source = NexmarkSource::new(options.clone(), schema, None, 1);
        let split = SplitId::new("", 0);
        let mut position = source.start(&split, false).unwrap();
        let mut out = Vec::new();
        let status = source.read(&split, &mut position, 100, &mut out).unwrap();
        assert_eq!(status, ReadStatus::Ended);
        let batch = &out[0].0;
        let types = batch
            .column(1)
            .as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(types.values().to_vec(), [0, 1, 1, 1, 2, 2]);
        let bids = batch.column(0).as_struct();
        assert_eq!(bids.null_count(), 4);
        assert!(bids.is_valid(4) && bids.is_null(0));
        let generator = NexmarkGenerator::new(options);
        let first = generator.event(4).bid().cloned().unwrap();
        assert_eq!(
            bids.column(0).as_string::<i32>().value(4),
            first.price.to_string()
        );
        assert!(bids.column(1).is_null(0));
    }

    #[test]
    fn paced_reading_makes_the_events_whose_time_has_come() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let read = |base_time: i64, splits: u32, index: u32| {
            let options = NexmarkOptions {
                first_event_rate: 1,
                max_emit_speed: false,
                base_time,
                ..NexmarkOptions::default()
            };
            let mut source = NexmarkSource::new(options, flink_schema(), None, splits);
            let split = SplitId::new("", index);
            let mut position = source.start(&split, false).unwrap();
            let mut out = Vec::new();
            let status = source.read(&split, &mut position, 100, &mut out).unwrap();
            // When the split's next event is due, in whole seconds from now.
            let ReadStatus::IdleUntil(due) = status else {
                panic!("a paced split with events to come is idle until the next: {status:?}");
            };
            let due_in = due.saturating_duration_since(Instant::now()).as_millis();
            (due_in.div_ceil(1000), position.read)
        };
        // One event a second: none has come before the base time (the first is
        // due an hour from now); events 0..=10 have 10.5 s after it (the test
        // has half a second to read them), and event 11 is due in 0.5 s.
        assert_eq!(read(now_ms + 3_600_000, 1, 0), (3600, 0));
        assert_eq!(read(now_ms - 10_500, 1, 0), (1, 11));
        // Of two splits, the first holds events 0, 2, …, 10 (12 due in 1.5 s);
        // the second 1, …, 9 (11 due in 0.5 s).
        assert_eq!(read(now_ms - 10_500, 2, 0), (2, 6));
        assert_eq!(read(now_ms - 10_500, 2, 1), (1, 5));
    }

    #[test]
    fn due_events_count_the_events_at_or_before_now() {
        // 1000 events a second: event g at g ms.
        assert_eq!(due_events(-1, 1000, 1, 0), 0);
        assert_eq!(due_events(0, 1000, 1, 0), 1);
        assert_eq!(due_events(9, 1000, 1, 0), 10);
        // 3 events a second: at 0, 333, 666, 1000 ms.
        assert_eq!(due_events(332, 3, 1, 0), 1);
        assert_eq!(due_events(333, 3, 1, 0), 2);
        assert_eq!(due_events(1000, 3, 1, 0), 4);
        // 10 events due, in 4 splits: 3, 3, 2, 2.
        let split = |index| due_events(9, 1000, 4, index);
        assert_eq!([split(0), split(1), split(2), split(3)], [3, 3, 2, 2]);
    }

    #[test]
    fn options_are_read_with_flinks_names_and_checked() {
        let read = |pairs: &[(&str, &str)]| {
            let given: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            NexmarkOptions::from_options("datagen", None, &flink_schema(), |key| {
                given.get(key).cloned()
            })
        };
        let options = read(&[
            ("first-event.rate", "1000"),
            ("events.num", "5000"),
            ("stop-at", "4000"),
            ("bid.proportion", "20"),
            ("bid.avg-size", "1 kb"),
            ("max-emit-speed", "false"),
            ("rate.shape", "SINE"),
            ("rate.period", "10 min"),
        ])
        .unwrap();
        assert_eq!(options.first_event_rate, 1000);
        assert_eq!(options.events, Some(4000));
        assert_eq!(options.bid_proportion, 20);
        assert_eq!(options.avg_bid_size, 1024);
        assert!(!options.max_emit_speed);
        assert_eq!(read(&[]).unwrap().events, None);
        assert_eq!(read(&[("events.num", "0")]).unwrap().events, None);
        for (key, value, expected) in [
            (
                "first-event.rate",
                "0",
                "expected a whole number of events, 1 or more",
            ),
            ("person.proportion", "-1", "1 or more"),
            ("bid.avg-size", "lots", "a size such as"),
            ("rate.shape", "triangle", "SQUARE or SINE"),
            ("keep-alive", "yes", "true or false"),
        ] {
            let error = read(&[(key, value)]).unwrap_err();
            assert!(
                error
                    .message
                    .contains(&format!("option '{key}' = '{value}'"))
                    && error.message.contains(expected),
                "{error}"
            );
        }
        let schema = Schema::new(vec![Field::new("price", DataType::Int64, true)]);
        let error = NexmarkOptions::from_options("t", None, &schema, |_| None).unwrap_err();
        assert!(error.message.contains("price is none of them"), "{error}");
        let schema = Schema::new(vec![Field::new(
            "bid",
            DataType::Struct(Fields::from(vec![Field::new(
                "amount",
                DataType::Int64,
                true,
            )])),
            true,
        )]);
        let error = NexmarkOptions::from_options("t", None, &schema, |_| None).unwrap_err();
        assert!(
            error
                .message
                .contains("column bid: field amount is none of auction, bidder"),
            "{error}"
        );
    }

    #[test]
    fn the_connector_refuses_unknown_options_naming_the_known_ones() {
        use crate::sql::connectors::{TableConnector, TableOptions};
        use crate::sql::script::{Statement, parse_script};
        let table = |options: &str| {
            let sql = format!(
                "CREATE TABLE datagen (event_type INT, bid ROW<auction BIGINT, price BIGINT>) \
                 WITH ('connector' = 'nexmark'{options})"
            );
            match parse_script(&sql).unwrap().remove(0) {
                Statement::CreateTable(table) => *table,
                other => panic!("{other:?}"),
            }
        };
        let schema = flink_schema();
        let schema = Arc::new(Schema::new(vec![
            schema.field(0).clone(),
            schema.field(3).clone(),
        ]));
        let connector = TableOptions::from_definition(&table(", 'events.num' = '10'"), &schema)
            .unwrap()
            .connector;
        assert!(connector.is_source() && !connector.is_sink());
        assert!(matches!(
            connector,
            TableConnector::Nexmark(NexmarkOptions {
                events: Some(10),
                ..
            })
        ));
        let error =
            TableOptions::from_definition(&table(", 'max.events' = '10'"), &schema).unwrap_err();
        assert!(
            error
                .message
                .contains("unsupported options for connector 'nexmark': 'max.events'")
                && error.message.contains("'events.num'")
                && error.message.contains("'first-event.rate'"),
            "{error}"
        );
    }
}
