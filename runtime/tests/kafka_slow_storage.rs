//! Issue 14, point 5: the exactly-once Kafka sink when checkpoints complete slowly
//! (slow object storage, a full upload after a restore, short intervals). Its
//! transaction slots fill up with prepared transactions waiting for their
//! checkpoints; it used to wait for one on the worker thread, which also runs the
//! keyed operator whose acknowledgement that checkpoint needs: the job hung.
//!
//! A test binary of its own: the failpoint that slows uploads is process-wide.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use strom_runtime::api::Pipeline;
use strom_runtime::connectors::kafka::{
    Delivery, KafkaOutput, KafkaSinkConfig, KafkaSource, KafkaSourceConfig,
};
use strom_runtime::exec::{PipelineFn, RestoreFrom};

mod common;

use common::kafka::{clusters, connection, consume_all, create_topic, produce, unique, values};
use common::{local_config, start};

#[test]
fn slow_checkpoints_hold_the_exactly_once_sink_back_without_hanging_the_job() {
    let Some(clusters) = clusters() else { return };
    let a = connection(&clusters, "a");
    let (from, to) = (unique("slow-in"), unique("slow-out"));
    create_topic(&a, &from, 2);
    create_topic(&a, &to, 2);
    let users = 50;
    let input: Vec<String> = values("click", 4000)
        .into_iter()
        .enumerate()
        .map(|(n, _)| format!("user-{}", n % users))
        .collect();
    // Slowly: one batch every 50 ms, so that every checkpoint holds records.
    let producing = {
        let (a, from, input) = (a.clone(), from.clone(), input.clone());
        thread::spawn(move || {
            for batch in input.chunks(100) {
                produce(&a, &from, batch, None);
                thread::sleep(Duration::from_millis(50));
            }
        })
    };

    // Every snapshot upload takes 300 ms; checkpoints come every 40 ms.
    fail::cfg("snapshot-upload", "delay(300)").unwrap();
    let pipeline: PipelineFn = {
        let (a, from, to) = (a.clone(), from.clone(), to.clone());
        Arc::new(move |pipeline: &mut Pipeline<'_>| {
            let mut source = KafkaSourceConfig::new(a.clone(), &[from.as_str()], &unique("g"));
            source.discovery_interval = None;
            let mut sink = KafkaSinkConfig::new(a.clone(), &to, "slow");
            sink.delivery = Delivery::ExactlyOnce;
            pipeline
                .source("clicks", KafkaSource::new(source))?
                .map(|record| String::from_utf8(record.value.unwrap_or_default()).unwrap())
                .key_by(|user: &String| user.clone())
                .count("per-user")?
                .sink_kafka("counts", sink, |(user, count): &(String, u64)| {
                    KafkaOutput {
                        key: Some(user.as_bytes().to_vec()),
                        value: Some(format!("{user}={count}").into_bytes()),
                        ..KafkaOutput::default()
                    }
                })
        })
    };
    let state = tempfile::tempdir().unwrap();
    let config = local_config(
        state.path(),
        "slow",
        1,
        Duration::from_millis(40),
        2,
        RestoreFrom::Nothing,
    );
    let (control, job) = start(config, pipeline);
    producing.join().unwrap();

    // Every count reaches the sink's topic (read_committed), then the job stops.
    let expected = input.len();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut written = Vec::new();
    while written.len() < expected {
        assert!(
            Instant::now() < deadline,
            "{} of {expected} counts committed in 90 s: the job hangs (last checkpoint: {:?})",
            written.len(),
            control.snapshots().last_checkpoint.map(|c| c.epoch)
        );
        assert!(
            !job.is_finished(),
            "the job ended: {:?}",
            control.snapshots().failure
        );
        written = consume_all(&a, &to, 2, expected);
    }
    fail::cfg("snapshot-upload", "off").unwrap();
    control.request_stop();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !job.is_finished() {
        assert!(Instant::now() < deadline, "the stop did not end the job");
        thread::sleep(Duration::from_millis(20));
    }
    job.join().unwrap().unwrap();
    let mut last: std::collections::BTreeMap<String, u64> = Default::default();
    for value in consume_all(&a, &to, 2, expected) {
        let (user, count) = value.split_once('=').unwrap();
        let count: u64 = count.parse().unwrap();
        let entry = last.entry(user.to_owned()).or_default();
        *entry = count.max(*entry);
    }
    assert_eq!(last.len(), users);
    assert!(
        last.values()
            .all(|&count| count == (input.len() / users) as u64)
    );
}
