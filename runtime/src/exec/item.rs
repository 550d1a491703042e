//! What flows in a stream: records, and the watermarks that travel in-band with
//! them.
//!
//! A watermark `w` from a worker says: no more records with event time below `w`
//! will come from that worker on this stream. Travelling in the same channels as
//! the records, it never overtakes a record sent before it, so lateness does not
//! depend on channel timing. Where a stream is exchanged between workers, every
//! watermark is copied to every worker, and an operator's watermark is the least of
//! its senders' latest ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use timely::ExchangeData;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Pipeline as Local;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

/// Event time, in milliseconds since the Unix epoch.
pub type EventTime = u64;

/// A watermark and the worker that sent it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watermark {
    /// The worker that sent it.
    pub from: u32,
    /// Where it goes when the stream is exchanged (one copy per worker).
    pub to: Option<u32>,
    /// No record below this event time follows.
    pub at: EventTime,
}

/// An element of a stream.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Item<T> {
    /// A record.
    Record(T),
    /// A watermark.
    Watermark(Watermark),
}

/// The latest watermark of each sender of an operator's input, and their least.
#[derive(Debug, Clone)]
pub struct WatermarkTracker {
    latest: BTreeMap<u32, EventTime>,
    current: EventTime,
}

impl WatermarkTracker {
    /// A tracker for an input fed by `senders` (each starts below every time).
    pub fn new(senders: impl IntoIterator<Item = u32>) -> Self {
        Self::starting_at(senders, 0)
    }

    /// A tracker whose senders all start at `at` (a restored operator's watermark).
    pub fn starting_at(senders: impl IntoIterator<Item = u32>, at: EventTime) -> Self {
        Self {
            latest: senders.into_iter().map(|sender| (sender, at)).collect(),
            current: at,
        }
    }

    /// Notes a watermark; returns the input's new watermark when it advanced.
    pub fn update(&mut self, watermark: Watermark) -> Option<EventTime> {
        let latest = self.latest.entry(watermark.from).or_insert(0);
        *latest = (*latest).max(watermark.at);
        let least = self.latest.values().copied().min().unwrap_or(0);
        (least > self.current).then(|| {
            self.current = least;
            least
        })
    }

    /// The input's watermark.
    pub fn current(&self) -> EventTime {
        self.current
    }
}

/// Turns each item into any number of items, on the worker that holds it.
fn per_item<'scope, T, U>(
    stream: Stream<'scope, u64, Vec<Item<T>>>,
    name: &str,
    mut logic: impl FnMut(Item<T>, &mut Vec<Item<U>>) + 'static,
) -> Stream<'scope, u64, Vec<Item<U>>>
where
    T: 'static,
    U: 'static,
{
    let mut builder = OperatorBuilder::new(name.to_owned(), stream.scope());
    let mut input = builder.new_input(stream, Local);
    builder.set_notify_for(0, timely::progress::operate::FrontierInterest::Never);
    let (mut output, result) = builder.new_output::<Vec<Item<U>>>();
    builder.build(move |_| {
        let mut buffer = Vec::new();
        move |_frontiers| {
            // In arrival order (not `for_each_stamp`, whose sort by stamp is not
            // stable): a watermark must not pass the records sent before it.
            input.for_each(|stamp, batch| {
                for item in batch.drain(..) {
                    logic(item, &mut buffer);
                }
                let cap = stamp.retain_least(0).expect("a stamp has a time");
                output.activate().give(&cap, &mut buffer);
                buffer.clear();
            });
        }
    });
    result
}

/// Applies `logic` to each record, passing watermarks through unchanged.
pub fn per_record<'scope, T, U>(
    stream: Stream<'scope, u64, Vec<Item<T>>>,
    name: &str,
    mut logic: impl FnMut(T, &mut Vec<Item<U>>) + 'static,
) -> Stream<'scope, u64, Vec<Item<U>>>
where
    T: 'static,
    U: 'static,
{
    per_item(stream, name, move |item, out| match item {
        Item::Record(record) => logic(record, out),
        Item::Watermark(watermark) => out.push(Item::Watermark(watermark)),
    })
}

/// Merges two streams of the same worker; the output's watermark is the least of
/// the two inputs'.
pub fn union<'scope, T: 'static>(
    left: Stream<'scope, u64, Vec<Item<T>>>,
    right: Stream<'scope, u64, Vec<Item<T>>>,
) -> Stream<'scope, u64, Vec<Item<T>>> {
    let worker = left.scope().index() as u32;
    let mut builder = OperatorBuilder::new("Union".to_owned(), left.scope());
    let mut inputs = [
        builder.new_input(left, Local),
        builder.new_input(right, Local),
    ];
    let (mut output, result) = builder.new_output::<Vec<Item<T>>>();
    builder.build(move |_| {
        // The senders are the two inputs (0 and 1), each the local worker.
        let mut tracker = WatermarkTracker::new([0, 1]);
        let mut buffer = Vec::new();
        move |_frontiers| {
            for (side, input) in inputs.iter_mut().enumerate() {
                // In arrival order: see `per_item`.
                input.for_each(|stamp, batch| {
                    for item in batch.drain(..) {
                        match item {
                            Item::Record(record) => buffer.push(Item::Record(record)),
                            Item::Watermark(watermark) => {
                                let from_side = Watermark {
                                    from: side as u32,
                                    ..watermark
                                };
                                if let Some(at) = tracker.update(from_side) {
                                    buffer.push(Item::Watermark(Watermark {
                                        from: worker,
                                        to: None,
                                        at,
                                    }));
                                }
                            }
                        }
                    }
                    let cap = stamp.retain_least(0).expect("a stamp has a time");
                    output.activate().give(&cap, &mut buffer);
                    buffer.clear();
                });
            }
        }
    });
    result
}

/// Copies every watermark once per worker (`to` set), so that an exchange that
/// routes records by key delivers each watermark to every worker.
pub fn fan_out_watermarks<'scope, T: ExchangeData>(
    stream: Stream<'scope, u64, Vec<Item<T>>>,
) -> Stream<'scope, u64, Vec<Item<T>>> {
    let peers = stream.scope().peers() as u32;
    per_item(stream, "Fan out watermarks", move |item, out| match item {
        Item::Record(record) => out.push(Item::Record(record)),
        Item::Watermark(watermark) => out.extend((0..peers).map(|to| {
            Item::Watermark(Watermark {
                to: Some(to),
                ..watermark
            })
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(from: u32, at: EventTime) -> Watermark {
        Watermark { from, to: None, at }
    }

    #[test]
    fn the_watermark_is_the_least_of_every_senders_latest() {
        let mut tracker = WatermarkTracker::new([0, 1, 2]);
        assert_eq!(tracker.update(mark(0, 10)), None);
        assert_eq!(tracker.update(mark(1, 20)), None);
        assert_eq!(tracker.update(mark(2, 5)), Some(5));
        assert_eq!(tracker.update(mark(2, 30)), Some(10));
        // A sender's watermark never goes back.
        assert_eq!(tracker.update(mark(0, 3)), None);
        assert_eq!(tracker.current(), 10);
    }
}
