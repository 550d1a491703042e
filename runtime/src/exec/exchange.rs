//! Sending each record to the subtask that owns its key group, and each watermark
//! to every subtask.

use timely::dataflow::channels::pact::Exchange;

use super::item::Item;
use crate::state::Partitioning;

/// A timely exchange that sends each record to the worker of the subtask owning the
/// key group of `key(record)` (the key's stable encoding), and each watermark copy
/// to the worker it is addressed to (see `item::fan_out_watermarks`).
///
/// The dataflow must run on exactly `partitioning.parallelism()` workers: timely
/// sends an item to worker `route % workers`, and the route is the subtask index,
/// which is below the parallelism.
pub fn by_key_group<D, K>(
    partitioning: Partitioning,
    key: impl Fn(&D) -> K + 'static,
) -> Exchange<Item<D>, impl FnMut(&Item<D>) -> u64 + 'static>
where
    D: 'static,
    K: AsRef<[u8]>,
{
    Exchange::new(move |item: &Item<D>| match item {
        Item::Record(record) => u64::from(partitioning.subtask_of_key(key(record).as_ref())),
        Item::Watermark(watermark) => u64::from(watermark.to.unwrap_or(watermark.from)),
    })
}

/// A timely exchange that sends each record to the worker of subtask
/// `subtask_of(record)`, and each watermark copy to the worker it is addressed to;
/// for records whose owner is known already (a batch of rows split by key
/// group, say).
pub fn by_subtask<D: 'static>(
    subtask_of: impl Fn(&D) -> u32 + 'static,
) -> Exchange<Item<D>, impl FnMut(&Item<D>) -> u64 + 'static> {
    Exchange::new(move |item: &Item<D>| match item {
        Item::Record(record) => u64::from(subtask_of(record)),
        Item::Watermark(watermark) => u64::from(watermark.to.unwrap_or(watermark.from)),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use timely::Config;
    use timely::container::CapacityContainerBuilder;
    use timely::dataflow::InputHandle;
    use timely::dataflow::operators::{Input, Operator};

    use super::*;
    use crate::state::KeyGroup;

    const MAX_PARALLELISM: u32 = 128;

    /// What one worker saw: (worker, key) for every record it received.
    type Received = Arc<Mutex<Vec<(usize, String)>>>;

    /// Sends 3000 keyed records from worker 0 through `by_key_group` on `workers`
    /// threads, and returns where each record arrived.
    fn route(workers: usize) -> Vec<(usize, String)> {
        let received: Received = Arc::default();
        let sink = Arc::clone(&received);
        timely::execute(Config::process(workers), move |worker| {
            let partitioning = Partitioning::new(worker.peers() as u32, MAX_PARALLELISM).unwrap();
            let index = worker.index();
            let sink = Arc::clone(&sink);
            let mut input = InputHandle::new();
            worker.dataflow::<u64, _, _>(|scope| {
                scope
                    .input_from(&mut input)
                    .unary::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
                        by_key_group(partitioning, |key: &String| key.clone()),
                        "Record",
                        |_, _| {
                            move |input, _output| {
                                input.for_each_stamp(|_, batches| {
                                    let mut sink = sink.lock().unwrap();
                                    for batch in batches {
                                        sink.extend(batch.drain(..).map(|item| match item {
                                            Item::Record(key) => (index, key),
                                            Item::Watermark(_) => {
                                                unreachable!("no watermarks sent")
                                            }
                                        }));
                                    }
                                });
                            }
                        },
                    );
            });
            if index == 0 {
                for i in 0..3000 {
                    input.send(Item::Record(format!("user-{}", i % 500)));
                }
            }
        })
        .unwrap();
        Arc::try_unwrap(received).unwrap().into_inner().unwrap()
    }

    #[test]
    fn every_record_reaches_the_subtask_owning_its_key_group() {
        for workers in [1, 2, 3, 4] {
            let partitioning = Partitioning::new(workers as u32, MAX_PARALLELISM).unwrap();
            let received = route(workers);
            assert_eq!(
                received.len(),
                3000,
                "records lost or doubled at {workers} workers"
            );
            for (worker, key) in &received {
                let group = KeyGroup::of_key(key.as_bytes(), MAX_PARALLELISM);
                assert!(
                    partitioning.key_groups_of(*worker as u32).contains(group),
                    "{key} (key group {group:?}) reached worker {worker} of {workers}"
                );
            }
        }
    }

    #[test]
    fn per_key_counts_are_the_same_at_every_parallelism() {
        let counts = |workers| {
            let mut counts = BTreeMap::<String, u32>::new();
            for (_, key) in route(workers) {
                *counts.entry(key).or_default() += 1;
            }
            counts
        };
        let single = counts(1);
        assert_eq!(single.len(), 500);
        for workers in [2, 3, 4] {
            assert_eq!(
                counts(workers),
                single,
                "counts differ at {workers} workers"
            );
        }
    }
}
