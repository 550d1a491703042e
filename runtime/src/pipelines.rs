//! DataStream pipelines, chosen by a StreamJob's `spec.pipeline.name` and configured
//! by its `args`: those compiled into the runtime ([`Pipelines::builtin`]), and those a
//! user's crate registers in its own build of the `strom` command line
//! ([`Pipelines::register`], [`crate::cli::main`]; see `examples/custom-pipeline`).

use std::collections::BTreeMap;
use std::sync::Arc;

use strom_crds::KafkaCluster;

use crate::api::Pipeline;
use crate::connectors::kafka::{
    ClusterConnection, Delivery, KafkaOutput, KafkaSinkConfig, KafkaSource, KafkaSourceConfig,
    SecretMounts, StartFrom,
};
use crate::exec::{Generator, PipelineFn};

/// Why a pipeline name or its arguments were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PipelineError {
    /// No pipeline has this name.
    #[error("unknown pipeline {name:?}; this runtime has: {}", known.join(", "))]
    Unknown {
        /// The name asked for.
        name: String,
        /// The pipelines it has.
        known: Vec<String>,
    },
    /// An argument is not a number where one is needed.
    #[error("pipeline argument {name}={value:?} is not a whole number")]
    NotANumber {
        /// The argument.
        name: String,
        /// Its value.
        value: String,
    },
    /// A required argument is missing.
    #[error("pipeline {pipeline} needs the argument {name:?}: {what}")]
    Missing {
        /// The pipeline.
        pipeline: String,
        /// The argument.
        name: String,
        /// What it gives.
        what: &'static str,
    },
    /// An argument has a value the pipeline cannot use.
    #[error("pipeline argument {name}={value:?}: expected {expected}")]
    Invalid {
        /// The argument.
        name: String,
        /// Its value.
        value: String,
        /// What would do.
        expected: &'static str,
    },
    /// A Kafka cluster the pipeline names cannot be connected to.
    #[error("{0}")]
    Kafka(String),
    /// An argument the pipeline does not take.
    #[error("pipeline {pipeline} takes no argument {name:?} (it takes: {})", known.join(", "))]
    UnknownArgument {
        /// The pipeline.
        pipeline: String,
        /// The argument.
        name: String,
        /// The arguments it takes.
        known: Vec<&'static str>,
    },
}

/// The names of the built-in pipelines.
pub const NAMES: &[&str] = &["clicks-per-user", "word-count", "kafka-copy", "keyed-state"];

/// What pipelines may use besides their arguments.
#[derive(Debug, Clone, Copy)]
pub struct Environment<'a> {
    /// The job's `spec.kafkaClusters`.
    pub kafka_clusters: &'a [KafkaCluster],
    /// Where the job's Secrets are mounted.
    pub secrets: &'a SecretMounts,
}

/// Where a pipeline's output goes.
pub type OutputFn = Arc<dyn Fn(String) + Send + Sync>;

/// Numeric arguments with defaults, refusing names the pipeline does not take.
struct Args<'a> {
    pipeline: &'a str,
    given: &'a BTreeMap<String, String>,
}

impl Args<'_> {
    fn check_known(&self, known: &[&'static str]) -> Result<(), PipelineError> {
        match self
            .given
            .keys()
            .find(|name| !known.contains(&name.as_str()))
        {
            Some(name) => Err(PipelineError::UnknownArgument {
                pipeline: self.pipeline.to_owned(),
                name: name.clone(),
                known: known.to_vec(),
            }),
            None => Ok(()),
        }
    }

    fn number(&self, name: &str, default: u64) -> Result<u64, PipelineError> {
        match self.given.get(name) {
            None => Ok(default),
            Some(value) => value.parse().map_err(|_| PipelineError::NotANumber {
                name: name.to_owned(),
                value: value.clone(),
            }),
        }
    }
}

/// Builds a pipeline from the job's `spec.pipeline.args`, what the job offers
/// (its Kafka clusters and mounted Secrets), and where printed output goes.
pub type PipelineFactory = Arc<
    dyn Fn(
            &BTreeMap<String, String>,
            Environment<'_>,
            OutputFn,
        ) -> Result<PipelineFn, PipelineError>
        + Send
        + Sync,
>;

/// The DataStream pipelines a `strom` binary runs, by name.
#[derive(Clone)]
pub struct Pipelines {
    by_name: BTreeMap<String, PipelineFactory>,
}

impl Pipelines {
    /// None at all.
    pub fn empty() -> Self {
        Self {
            by_name: BTreeMap::new(),
        }
    }

    /// The pipelines compiled into the runtime: `clicks-per-user`, `word-count`,
    /// `kafka-copy`, `keyed-state`.
    pub fn builtin() -> Self {
        NAMES.iter().fold(Self::empty(), |pipelines, name| {
            pipelines.register(name, move |args, environment, output| {
                lookup(name, args, environment, output)
            })
        })
    }

    /// Adds (or replaces) the pipeline `name`, built by `factory`.
    pub fn register(
        mut self,
        name: &str,
        factory: impl Fn(
            &BTreeMap<String, String>,
            Environment<'_>,
            OutputFn,
        ) -> Result<PipelineFn, PipelineError>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.by_name.insert(name.to_owned(), Arc::new(factory));
        self
    }

    /// The names of the pipelines, in order.
    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    /// The pipeline `name` with `args`, printing its results through `output`.
    pub fn build(
        &self,
        name: &str,
        args: &BTreeMap<String, String>,
        environment: Environment<'_>,
        output: OutputFn,
    ) -> Result<PipelineFn, PipelineError> {
        let factory = self
            .by_name
            .get(name)
            .ok_or_else(|| PipelineError::Unknown {
                name: name.to_owned(),
                known: self.names(),
            })?;
        factory(args, environment, output)
    }
}

impl std::fmt::Debug for Pipelines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

/// The built-in pipeline `name` with `args`, printing its results through `output`.
fn lookup(
    name: &str,
    args: &BTreeMap<String, String>,
    environment: Environment<'_>,
    output: OutputFn,
) -> Result<PipelineFn, PipelineError> {
    let args = Args {
        pipeline: name,
        given: args,
    };
    match name {
        "clicks-per-user" => {
            args.check_known(&[
                "clicksPerSecond",
                "users",
                "seed",
                "splits",
                "clicksPerSplit",
                "outputPath",
                "kafkaOutput",
            ])?;
            let kafka_output = match args.given.get("kafkaOutput") {
                Some(value) => {
                    let (cluster, topic) = cluster_and_topic("kafkaOutput", value)?;
                    let connection = ClusterConnection::find(
                        environment.kafka_clusters,
                        cluster,
                        environment.secrets,
                    )
                    .map_err(|error| PipelineError::Kafka(error.to_string()))?;
                    let mut sink = KafkaSinkConfig::new(connection, topic, "strom-clicks");
                    sink.delivery = Delivery::ExactlyOnce;
                    Some(sink)
                }
                None => None,
            };
            let settings = ClickSettings {
                rate: args.number("clicksPerSecond", 10_000)?,
                users: args.number("users", 1000)?.max(1),
                seed: args.number("seed", 42)?,
                splits: args.number("splits", 16)?.clamp(1, 1 << 16) as u32,
                per_split: args
                    .given
                    .get("clicksPerSplit")
                    .map(|_| args.number("clicksPerSplit", 0))
                    .transpose()?,
                output_path: args.given.get("outputPath").cloned(),
                kafka_output,
            };
            Ok(clicks_per_user(settings, output))
        }
        "word-count" => {
            args.check_known(&["sentencesPerSecond", "seed"])?;
            let rate = args.number("sentencesPerSecond", 1000)?;
            let seed = args.number("seed", 7)?;
            Ok(word_count(rate, seed, output))
        }
        "kafka-copy" => kafka_copy(&args, environment),
        "keyed-state" => {
            args.check_known(&["keys", "valueBytes", "keysPerSecond"])?;
            let keys = args.number("keys", 1_000_000)?;
            let value_bytes = usize::try_from(args.number("valueBytes", 100)?)
                .ok()
                .filter(|bytes| (1..=1 << 20).contains(bytes))
                .ok_or_else(|| {
                    invalid(
                        "valueBytes",
                        &args.given["valueBytes"],
                        "1 to 1048576 bytes",
                    )
                })?;
            let rate = match args.given.get("keysPerSecond") {
                Some(given) => Some(
                    Some(args.number("keysPerSecond", 0)?)
                        .filter(|&rate| rate > 0)
                        .ok_or_else(|| invalid("keysPerSecond", given, "a positive rate"))?,
                ),
                None => None,
            };
            Ok(keyed_state(keys, value_bytes, rate))
        }
        _ => Err(PipelineError::Unknown {
            name: name.to_owned(),
            known: NAMES.iter().map(|name| (*name).to_owned()).collect(),
        }),
    }
}

/// `kafka-copy`: copies the records (key, value, headers) of `from`
/// (`cluster/topic`, comma-separated) into `to` (`cluster/topic`), exactly once by
/// default (`delivery: at-least-once` otherwise), starting from the `startFrom`
/// offsets (`earliest` or `latest`); `bounded: "true"` stops at the offsets the
/// topics end at when the job starts.
fn kafka_copy(args: &Args<'_>, environment: Environment<'_>) -> Result<PipelineFn, PipelineError> {
    args.check_known(&["from", "to", "delivery", "startFrom", "bounded"])?;
    let required = |name: &str, what: &'static str| {
        args.given
            .get(name)
            .cloned()
            .ok_or_else(|| PipelineError::Missing {
                pipeline: args.pipeline.to_owned(),
                name: name.to_owned(),
                what,
            })
    };
    let from = required(
        "from",
        "the topics to read, as cluster/topic, comma-separated",
    )?;
    let to = required("to", "the topic to write, as cluster/topic")?;
    let delivery = match args.given.get("delivery").map(String::as_str) {
        None | Some("exactly-once") => Delivery::ExactlyOnce,
        Some("at-least-once") => Delivery::AtLeastOnce,
        Some(other) => return Err(invalid("delivery", other, "exactly-once or at-least-once")),
    };
    let start = match args.given.get("startFrom").map(String::as_str) {
        None | Some("earliest") => StartFrom::Earliest,
        Some("latest") => StartFrom::Latest,
        Some(other) => return Err(invalid("startFrom", other, "earliest or latest")),
    };
    let bounded = match args.given.get("bounded").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(invalid("bounded", other, "true or false")),
    };
    let connect = |cluster: &str| {
        ClusterConnection::find(environment.kafka_clusters, cluster, environment.secrets)
            .map_err(|error| PipelineError::Kafka(error.to_string()))
    };
    let mut sources = Vec::new();
    for topic in from
        .split(',')
        .map(str::trim)
        .filter(|topic| !topic.is_empty())
    {
        let (cluster, topic) = cluster_and_topic("from", topic)?;
        sources.push((connect(cluster)?, topic.to_owned()));
    }
    let (cluster, topic) = cluster_and_topic("to", &to)?;
    let mut sink = KafkaSinkConfig::new(connect(cluster)?, topic, "strom-kafka-copy");
    sink.delivery = delivery;
    Ok(Arc::new(move |pipeline: &mut Pipeline<'_>| {
        let job = pipeline.context().settings.name.clone();
        let mut copied = None;
        for (connection, topic) in &sources {
            let name = format!("from-{}-{topic}", connection.name);
            let mut config = KafkaSourceConfig::new(
                connection.clone(),
                &[topic],
                &format!("strom-{job}-{name}"),
            );
            config.start = start;
            config.bounded = bounded;
            let stream = pipeline.source(&name, KafkaSource::new(config))?;
            copied = Some(match copied {
                None => stream,
                Some(all) => stream.union(all),
            });
        }
        let copied = copied.expect("from names at least one topic");
        let mut sink = sink.clone();
        sink.client_id = format!("strom-{job}");
        copied.sink_kafka("to", sink, |record| KafkaOutput {
            key: record.key.clone(),
            value: record.value.clone(),
            headers: record.headers.clone(),
            partition: None,
        })
    }))
}

fn invalid(name: &str, value: &str, expected: &'static str) -> PipelineError {
    PipelineError::Invalid {
        name: name.to_owned(),
        value: value.to_owned(),
        expected,
    }
}

/// `cluster/topic` split in two.
fn cluster_and_topic<'a>(name: &str, value: &'a str) -> Result<(&'a str, &'a str), PipelineError> {
    value
        .split_once('/')
        .filter(|(cluster, topic)| !cluster.is_empty() && !topic.is_empty())
        .ok_or_else(|| invalid(name, value, "cluster/topic"))
}

/// A reproducible pseudo-random number from a seed and two indices (SplitMix64).
pub fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z =
        seed ^ a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Splits of the `keyed-state` pipeline's generator.
pub const KEYED_STATE_SPLITS: u32 = 16;

/// `keyed-state`: writes one value of `value_bytes` incompressible bytes for each
/// of `keys` keys (rounded up to a multiple of [`KEYED_STATE_SPLITS`]), so the job
/// holds about `keys * (value_bytes + 8)` bytes of keyed state, then runs on idle:
/// a job of a known state size to savepoint, rescale and restore (benchmarks, and
/// a first look at how long a job of a given state takes to rescale).
pub fn keyed_state(keys: u64, value_bytes: usize, rate: Option<u64>) -> PipelineFn {
    let per_split = keys.div_ceil(u64::from(KEYED_STATE_SPLITS));
    Arc::new(move |pipeline: &mut Pipeline<'_>| {
        let mut generator = Generator::new(KEYED_STATE_SPLITS, move |split, n| {
            u64::from(split) * per_split + n
        })
        .bounded(per_split)
        .keep_open();
        if let Some(rate) = rate {
            generator = generator.rate(rate);
        }
        pipeline
            .source("keys", generator)?
            .key_by(|key: &u64| *key)
            .process(
                "values",
                move |key: &u64, _: u64, value: &mut Option<Vec<u8>>, _: &mut Vec<u64>| {
                    *value = Some(incompressible_value(*key, value_bytes));
                },
            )?
            .sink(|_, _| {});
        Ok(())
    })
}

/// `bytes` pseudo-random bytes drawn from `key` (`mix(key, i, 3)` for the `i`th
/// 8 bytes, little-endian): compression leaves them as large.
pub fn incompressible_value(key: u64, bytes: usize) -> Vec<u8> {
    let mut value: Vec<u8> = (0..bytes.div_ceil(8))
        .flat_map(|i| mix(key, i as u64, 3).to_le_bytes())
        .collect();
    value.truncate(bytes);
    value
}

struct ClickSettings {
    rate: u64,
    users: u64,
    seed: u64,
    splits: u32,
    per_split: Option<u64>,
    /// A folder URL: results go there, exactly once, instead of to the output.
    output_path: Option<String>,
    /// A Kafka topic the results also go to, exactly once (`kafkaOutput`:
    /// `cluster/topic`), one record per result with the result line as value.
    kafka_output: Option<KafkaSinkConfig>,
}

fn clicks_per_user(settings: ClickSettings, output: OutputFn) -> PipelineFn {
    Arc::new(move |pipeline: &mut Pipeline<'_>| {
        let (users, seed) = (settings.users, settings.seed);
        let mut generator = Generator::new(settings.splits, move |split, n| {
            mix(seed, u64::from(split), n) % users
        })
        .rate(settings.rate);
        if let Some(count) = settings.per_split {
            generator = generator.bounded(count);
        }
        let counts = pipeline
            .source("clicks", generator)?
            .key_by(|user: &u64| *user)
            .count("clicks-per-user")?;
        if let Some(sink) = &settings.kafka_output {
            counts
                .clone()
                .sink_kafka("results-kafka", sink.clone(), |(user, clicks)| {
                    KafkaOutput {
                        key: Some(user.to_string().into_bytes()),
                        value: Some(format!("user {user}: {clicks} clicks").into_bytes()),
                        ..KafkaOutput::default()
                    }
                })?;
        }
        match &settings.output_path {
            Some(path) => counts.sink_files("results", path, |(user, clicks), line| {
                line.push_str(&format!("user {user}: {clicks} clicks"));
            })?,
            None => {
                let output = Arc::clone(&output);
                counts.sink(move |_epoch, counts| {
                    for (user, clicks) in counts {
                        output(format!("user {user}: {clicks} clicks"));
                    }
                });
            }
        }
        Ok(())
    })
}

const WORDS: &[&str] = &[
    "stream",
    "state",
    "kafka",
    "epoch",
    "savepoint",
    "rescale",
    "key",
    "group",
    "window",
    "watermark",
    "checkpoint",
    "operator",
    "timely",
    "rocksdb",
    "object",
    "storage",
    "pod",
    "job",
    "record",
    "batch",
];

fn word_count(rate: u64, seed: u64, output: OutputFn) -> PipelineFn {
    Arc::new(move |pipeline: &mut Pipeline<'_>| {
        let generator = Generator::new(8, move |split, n| {
            let random = mix(seed, u64::from(split), n);
            let words = 3 + random % 6;
            (0..words)
                .map(|i| WORDS[(mix(random, i, 0) % WORDS.len() as u64) as usize])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .rate(rate);
        let output = Arc::clone(&output);
        pipeline
            .source("sentences", generator)?
            .flat_map(|sentence: String| sentence.split(' ').map(str::to_owned).collect::<Vec<_>>())
            .key_by(|word: &String| word.clone())
            .count("word-count")?
            .sink(move |_epoch, counts| {
                for (word, count) in counts {
                    output(format!("{word}: {count}"));
                }
            });
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_output() -> OutputFn {
        Arc::new(|_| {})
    }

    fn no_environment() -> Environment<'static> {
        static SECRETS: std::sync::LazyLock<SecretMounts> =
            std::sync::LazyLock::new(|| SecretMounts::new("/nonexistent"));
        Environment {
            kafka_clusters: &[],
            secrets: &SECRETS,
        }
    }

    #[test]
    fn kafka_copy_names_what_is_missing_or_wrong() {
        let args: BTreeMap<String, String> = [("to".to_owned(), "c/out".to_owned())].into();
        let error = lookup("kafka-copy", &args, no_environment(), no_output())
            .err()
            .unwrap();
        assert!(
            error.to_string().contains("needs the argument \"from\""),
            "{error}"
        );
        let args: BTreeMap<String, String> = [
            ("from".to_owned(), "in".to_owned()),
            ("to".to_owned(), "c/out".to_owned()),
        ]
        .into();
        let error = lookup("kafka-copy", &args, no_environment(), no_output())
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            "pipeline argument from=\"in\": expected cluster/topic"
        );
        let args: BTreeMap<String, String> = [
            ("from".to_owned(), "a/in".to_owned()),
            ("to".to_owned(), "c/out".to_owned()),
        ]
        .into();
        let error = lookup("kafka-copy", &args, no_environment(), no_output())
            .err()
            .unwrap();
        assert!(
            error
                .to_string()
                .contains("Kafka cluster \"a\" is not in spec.kafkaClusters"),
            "{error}"
        );
    }

    /// Why `pipeline` refuses the single argument `name: value`.
    fn refusal(pipeline: &str, name: &str, value: &str) -> PipelineError {
        let args = BTreeMap::from([(name.to_owned(), value.to_owned())]);
        lookup(pipeline, &args, no_environment(), no_output())
            .err()
            .expect("the argument is refused")
    }

    #[test]
    fn unknown_pipelines_and_arguments_are_refused_with_the_choices() {
        let error = lookup("page-rank", &BTreeMap::new(), no_environment(), no_output())
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            "unknown pipeline \"page-rank\"; this runtime has: clicks-per-user, word-count, kafka-copy, keyed-state"
        );
        assert_eq!(
            refusal("keyed-state", "valueBytes", "0").to_string(),
            "pipeline argument valueBytes=\"0\": expected 1 to 1048576 bytes"
        );
        assert_eq!(
            refusal("keyed-state", "keysPerSecond", "0").to_string(),
            "pipeline argument keysPerSecond=\"0\": expected a positive rate"
        );
        let error = refusal("word-count", "sentencesPerSec", "5");
        assert!(
            error
                .to_string()
                .contains("takes no argument \"sentencesPerSec\""),
            "{error}"
        );
        assert_eq!(
            refusal("word-count", "seed", "seven"),
            PipelineError::NotANumber {
                name: "seed".into(),
                value: "seven".into()
            }
        );
    }

    #[test]
    fn incompressible_values_have_the_bytes_asked_for_and_are_pinned() {
        let value = incompressible_value(7, 100);
        assert_eq!(value.len(), 100);
        assert_eq!(value[..8], mix(7, 0, 3).to_le_bytes());
        assert_eq!(value[96..], mix(7, 12, 3).to_le_bytes()[..4]);
        // The value bench/flink's Rescale writes for key 7 (RescaleTest pins it too).
        assert_eq!(mix(7, 0, 3), 0x894f_020b_6aae_524e);
    }
}
