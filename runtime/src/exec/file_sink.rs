//! The exactly-once file sink: each subtask stages an epoch's output as one object
//! and reports it with the epoch's snapshot; the coordinator moves it into place
//! once the checkpoint that covers the epoch has completed. Output of epochs whose
//! checkpoint never completed is removed on restart and produced again.
//!
//! Layout under the sink's folder: `part-<epoch>-<subtask>.txt` (visible output)
//! and `_staging/<epoch>-<subtask>.part` (written, not yet committed).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Pipeline as Local;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

use super::context::TaskContext;
use super::item::Item;
use crate::checkpoint::{PendingCommit, SnapshotAck, StorageError, SubtaskSnapshot, open_store};

/// The folder of staged output under a sink's folder.
const STAGING_DIR: &str = "_staging";

fn staged_name(epoch: u64, subtask: u32) -> String {
    format!("{epoch:020}-{subtask}.part")
}

/// The epoch of a staged object's name.
fn staged_epoch(name: &str) -> Option<u64> {
    name.split('-').next()?.parse().ok()
}

/// Removes staged output of epochs from `first_epoch` on: a previous run staged it
/// for checkpoints that never completed, and this run produces it again.
async fn abort_staged(
    store: &dyn ObjectStore,
    dir: &Path,
    first_epoch: u64,
) -> Result<usize, StorageError> {
    let staging = dir.clone().join(STAGING_DIR);
    let staged: Vec<_> = store
        .list(Some(&staging))
        .try_collect()
        .await
        .map_err(|source| StorageError::ObjectStore {
            operation: "list staged output",
            path: staging.to_string(),
            source,
        })?;
    let mut removed = 0;
    for object in staged {
        let epoch = object.location.filename().and_then(staged_epoch);
        if epoch.is_some_and(|epoch| epoch >= first_epoch) {
            match store.delete(&object.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => removed += 1,
                Err(source) => {
                    return Err(StorageError::ObjectStore {
                        operation: "remove staged output",
                        path: object.location.to_string(),
                        source,
                    });
                }
            }
        }
    }
    Ok(removed)
}

/// Builds the exactly-once file sink `operator` writing `format(record)` lines
/// into the folder at `url` (`file://` or `s3://`). Returns its snapshot
/// acknowledgements for the checkpoint coordinator.
pub fn exactly_once_file_sink<'scope, T: 'static>(
    stream: Stream<'scope, u64, Vec<Item<T>>>,
    ctx: &TaskContext,
    operator: &str,
    url: &str,
    mut format: impl FnMut(&T, &mut String) + 'static,
) -> Result<Stream<'scope, u64, Vec<SnapshotAck>>, StorageError> {
    let url = url.trim_end_matches('/').to_owned();
    let (store, dir) = open_store(&url, &ctx.settings.storage_options)?;
    if ctx.subtask == 0 {
        let removed = ctx
            .io
            .block_on(abort_staged(store.as_ref(), &dir, ctx.start_epoch))?;
        if removed > 0 {
            tracing::info!(
                removed,
                sink = operator,
                "removed output of unfinished checkpoints"
            );
        }
    }

    let mut builder = OperatorBuilder::new(format!("File sink {operator}"), stream.scope());
    let mut input = builder.new_input(stream, Local);
    let (mut ack_output, acks) = builder.new_output::<Vec<SnapshotAck>>();
    let ctx = ctx.clone();
    let operator = operator.to_owned();

    builder.build(move |capabilities| {
        let mut ack_cap = capabilities.into_iter().next().map(|mut cap| {
            cap.downgrade(&ctx.start_epoch);
            cap
        });
        let mut next_epoch = ctx.start_epoch;
        let mut buffers: BTreeMap<u64, String> = BTreeMap::new();
        // Output of passed epochs since the last checkpoint epoch.
        let mut unstaged = String::new();
        // Stages `text` as the output of the checkpoint of `epoch`.
        let stage = {
            let (ctx, operator, store, dir, url) = (
                ctx.clone(),
                operator.clone(),
                Arc::clone(&store),
                dir.clone(),
                url.clone(),
            );
            move |epoch: u64, text: String| -> PendingCommit {
                let name = staged_name(epoch, ctx.subtask);
                let staged = dir.clone().join(STAGING_DIR).join(name.as_str());
                let put = ctx
                    .io
                    .block_on(store.put(&staged, PutPayload::from(text.into_bytes())));
                if let Err(error) = put {
                    let message = format!("sink {operator}: staging {staged}: {error}");
                    ctx.control.record_failure(message.clone());
                    panic!("{message}");
                }
                PendingCommit {
                    staged: format!("{url}/{STAGING_DIR}/{name}"),
                    target: format!("{url}/part-{epoch:020}-{}.txt", ctx.subtask),
                }
            }
        };

        move |frontiers| {
            input.for_each_stamp(|stamp, batches| {
                let epoch = *stamp.least().expect("epochs are totally ordered");
                let buffer = buffers.entry(epoch).or_default();
                for batch in batches {
                    let mut written = 0;
                    for item in batch.drain(..) {
                        if let Item::Record(record) = item {
                            format(&record, buffer);
                            buffer.push('\n');
                            written += 1;
                        }
                    }
                    ctx.control.add_records_out(&operator, written);
                }
            });
            let Some(cap) = ack_cap.as_mut() else { return };
            let Some(frontier) = frontiers[0].frontier().first().copied() else {
                // The input has ended: the job is shutting down.
                ack_cap = None;
                return;
            };
            while next_epoch < frontier {
                let epoch = next_epoch;
                if let Some(text) = buffers.remove(&epoch) {
                    unstaged.push_str(&text);
                }
                if ctx.settings.is_checkpoint_epoch(epoch) {
                    let mut pending_commits = Vec::new();
                    if !unstaged.is_empty() {
                        let text = std::mem::take(&mut unstaged);
                        pending_commits.push(stage(epoch, text));
                    }
                    let ack = SnapshotAck {
                        operator: operator.clone(),
                        epoch,
                        snapshot: SubtaskSnapshot {
                            subtask: ctx.subtask,
                            pending_commits,
                            ..SubtaskSnapshot::default()
                        },
                        drained: None,
                    };
                    ack_output
                        .activate()
                        .give(&cap.delayed(&epoch), &mut vec![ack]);
                }
                // Skip the epochs with nothing buffered and no checkpoint.
                let next_buffered = buffers.keys().next().copied().unwrap_or(u64::MAX);
                let next_checkpoint = ctx.settings.next_checkpoint_epoch(epoch + 1);
                next_epoch = next_buffered
                    .min(next_checkpoint)
                    .min(frontier)
                    .max(epoch + 1);
            }
            if frontier > *cap.time() {
                cap.downgrade(&frontier);
            }
        }
    });
    Ok(acks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_names_carry_their_epoch() {
        assert_eq!(staged_epoch(&staged_name(42, 3)), Some(42));
        assert_eq!(staged_epoch("notes.txt"), None);
    }
}
