//! DataStream pipelines compiled into the runtime, chosen by a StreamJob's
//! `spec.pipeline.name` and configured by its `args`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::api::Pipeline;
use crate::exec::{Generator, PipelineFn};

/// Why a pipeline name or its arguments were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PipelineError {
    /// No pipeline has this name.
    #[error("unknown pipeline {name:?}; this runtime has: {}", NAMES.join(", "))]
    Unknown {
        /// The name asked for.
        name: String,
    },
    /// An argument is not a number where one is needed.
    #[error("pipeline argument {name}={value:?} is not a whole number")]
    NotANumber {
        /// The argument.
        name: String,
        /// Its value.
        value: String,
    },
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
pub const NAMES: &[&str] = &["clicks-per-user", "word-count"];

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

/// The pipeline `name` with `args`, printing its results through `output`.
pub fn lookup(
    name: &str,
    args: &BTreeMap<String, String>,
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
            ])?;
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
            };
            Ok(clicks_per_user(settings, output))
        }
        "word-count" => {
            args.check_known(&["sentencesPerSecond", "seed"])?;
            let rate = args.number("sentencesPerSecond", 1000)?;
            let seed = args.number("seed", 7)?;
            Ok(word_count(rate, seed, output))
        }
        _ => Err(PipelineError::Unknown {
            name: name.to_owned(),
        }),
    }
}

/// A reproducible pseudo-random number from a seed and two indices (SplitMix64).
pub fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z =
        seed ^ a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct ClickSettings {
    rate: u64,
    users: u64,
    seed: u64,
    splits: u32,
    per_split: Option<u64>,
    /// A folder URL: results go there, exactly once, instead of to the output.
    output_path: Option<String>,
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

    #[test]
    fn unknown_pipelines_and_arguments_are_refused_with_the_choices() {
        let error = lookup("page-rank", &BTreeMap::new(), no_output())
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            "unknown pipeline \"page-rank\"; this runtime has: clicks-per-user, word-count"
        );
        let args = BTreeMap::from([("sentencesPerSec".to_owned(), "5".to_owned())]);
        let error = lookup("word-count", &args, no_output()).err().unwrap();
        assert!(
            error
                .to_string()
                .contains("takes no argument \"sentencesPerSec\""),
            "{error}"
        );
        let args = BTreeMap::from([("seed".to_owned(), "seven".to_owned())]);
        let error = lookup("word-count", &args, no_output()).err().unwrap();
        assert_eq!(
            error,
            PipelineError::NotANumber {
                name: "seed".into(),
                value: "seven".into()
            }
        );
    }
}
