//! A client of a Confluent Schema Registry (the REST API Confluent's registry,
//! Apicurio's `ccompat` API and Karapace serve): registering a schema under a
//! subject and fetching a schema by id, which is all the `avro-confluent` format
//! needs. [`RegistrySchemas`] keeps the schemas a job has read, so each schema
//! id is fetched once per process.
//!
//! Calls block the calling thread (they run on a thread of their own, so any
//! thread may call them, inside an async runtime or not) and have a deadline:
//! connection failures, timeouts and answers 5xx, 408 and 429 are retried with
//! backoff until [`DEADLINE`]; any other refusal is final and carries the
//! registry's message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apache_avro::Schema;
use reqwest::{Method, StatusCode};
use serde_json::json;
use url::Url;

/// How long a call may take, retries included.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How long one HTTP request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The content type of the registry's API.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Why a registry call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The URL is not one the client can call.
    #[error("{url} is not a schema registry URL: {reason}")]
    BadUrl {
        /// The URL's scheme, host and port (the rest may hold a key).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry answered with a refusal that retrying does not change.
    #[error("the schema registry at {url} refused {what}: HTTP {status}: {message}")]
    Refused {
        /// The registry's URL.
        url: String,
        /// What was asked.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The registry's message (its `message` field, or the body).
        message: String,
    },
    /// No answer (or only answers worth retrying) until the deadline.
    #[error(
        "the schema registry at {url} did not answer {what} within {seconds} s; the last attempt: {last}"
    )]
    Unreachable {
        /// The registry's URL.
        url: String,
        /// What was asked.
        what: String,
        /// The deadline, in seconds.
        seconds: u64,
        /// What the last attempt got.
        last: String,
    },
    /// An answer that is not what the API promises, or a schema the client
    /// cannot use.
    #[error("the schema registry at {url} answered {what} with {reason}")]
    BadAnswer {
        /// The registry's URL.
        url: String,
        /// What was asked.
        what: String,
        /// What is wrong with the answer.
        reason: String,
    },
}

/// A schema registry, by its base URL (e.g. `http://registry:8081`).
#[derive(Debug, Clone)]
pub struct SchemaRegistry {
    base: Url,
    deadline: Duration,
}

impl PartialEq for SchemaRegistry {
    fn eq(&self, other: &Self) -> bool {
        self.base == other.base
    }
}

impl SchemaRegistry {
    /// The registry at `url`: `http` or `https`, without credentials (they would
    /// be visible to anyone who can read the job's spec).
    pub fn new(url: &str) -> Result<Self, RegistryError> {
        // Only the scheme, host and port are shown: a query, a fragment or
        // credentials in the URL may hold a key.
        let shown = Url::parse(url).map_or_else(
            |_| "the URL".to_owned(),
            |parsed| match (parsed.host_str(), parsed.port()) {
                (Some(host), Some(port)) => format!("{}://{host}:{port}", parsed.scheme()),
                (Some(host), None) => format!("{}://{host}", parsed.scheme()),
                (None, _) => format!("{}:", parsed.scheme()),
            },
        );
        let bad = |reason: &str| RegistryError::BadUrl {
            url: shown.clone(),
            reason: reason.to_owned(),
        };
        let mut base = Url::parse(url).map_err(|error| bad(&error.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(bad("the scheme must be http or https"));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(bad(
                "credentials in the URL are not taken (anyone who can read the job could read them); use a registry that does not need them",
            ));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(bad("a base URL has no query or fragment"));
        }
        // Paths below the base are appended segment by segment.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Ok(Self {
            base,
            deadline: DEADLINE,
        })
    }

    /// The same registry with another deadline per call.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The registry's base URL.
    pub fn url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// Registers `schema` under `subject` (`POST /subjects/{subject}/versions`)
    /// and returns its id; a schema already registered there keeps its id. The
    /// registry refuses a schema its compatibility rules for the subject forbid.
    pub fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let what = format!("registering a schema under subject '{subject}'");
        let url = self.endpoint(&["subjects", subject, "versions"]);
        let answer = self.call(&what, Method::POST, url, Some(json!({ "schema": schema })))?;
        self.id_of(&what, &answer)
    }

    /// The id of the latest schema registered under `subject`
    /// (`GET /subjects/{subject}/versions/latest`).
    pub fn latest_id(&self, subject: &str) -> Result<u32, RegistryError> {
        let what = format!("the latest schema of subject '{subject}'");
        let url = self.endpoint(&["subjects", subject, "versions", "latest"]);
        let answer = self.call(&what, Method::GET, url, None)?;
        self.id_of(&what, &answer)
    }

    /// The Avro schema of id `id` (`GET /schemas/ids/{id}`).
    pub fn schema(&self, id: u32) -> Result<Schema, RegistryError> {
        let what = format!("the schema of id {id}");
        let url = self.endpoint(&["schemas", "ids", &id.to_string()]);
        let answer = self.call(&what, Method::GET, url, None)?;
        let bad = |reason: String| RegistryError::BadAnswer {
            url: self.url().to_owned(),
            what: what.clone(),
            reason,
        };
        if let Some(kind) = answer.get("schemaType").and_then(|kind| kind.as_str())
            && kind != "AVRO"
        {
            return Err(bad(format!("a {kind} schema, not an Avro one")));
        }
        if answer
            .get("references")
            .and_then(|references| references.as_array())
            .is_some_and(|references| !references.is_empty())
        {
            return Err(bad(
                "a schema that references other schemas, which Strom does not resolve yet"
                    .to_owned(),
            ));
        }
        let text = answer
            .get("schema")
            .and_then(|schema| schema.as_str())
            .ok_or_else(|| bad(format!("no \"schema\" field: {answer}")))?;
        Schema::parse_str(text)
            .map_err(|error| bad(format!("a schema that does not parse: {error}")))
    }

    /// The URL of the API path `segments` below the base.
    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("http URLs have paths")
            .pop_if_empty()
            .extend(segments);
        url
    }

    fn id_of(&self, what: &str, answer: &serde_json::Value) -> Result<u32, RegistryError> {
        answer
            .get("id")
            .and_then(|id| id.as_u64())
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| RegistryError::BadAnswer {
                url: self.url().to_owned(),
                what: what.to_owned(),
                reason: format!("no schema id: {answer}"),
            })
    }

    /// One API call, retried until the deadline while the failure may pass.
    fn call(
        &self,
        what: &str,
        method: Method,
        url: Url,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, RegistryError> {
        let registry = self.url().to_owned();
        let deadline = self.deadline;
        let asked = what.to_owned();
        let what = what.to_owned();
        run_blocking(async move {
            let client = reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .connect_timeout(REQUEST_TIMEOUT)
                .build()
                .map_err(|error| RegistryError::Unreachable {
                    url: registry.clone(),
                    what: what.clone(),
                    seconds: deadline.as_secs(),
                    last: describe(&error),
                })?;
            let started = Instant::now();
            let mut pause = Duration::from_millis(100);
            loop {
                // No attempt runs past the deadline.
                let left = deadline.saturating_sub(started.elapsed());
                let mut request = client
                    .request(method.clone(), url.clone())
                    .timeout(left.min(REQUEST_TIMEOUT))
                    .header(reqwest::header::ACCEPT, CONTENT_TYPE);
                if let Some(body) = &body {
                    request = request
                        .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                        .body(body.to_string());
                }
                let last = match request.send().await {
                    Ok(response) => {
                        let status = response.status();
                        let text = response.text().await.unwrap_or_default();
                        if status.is_success() {
                            return serde_json::from_str(&text).map_err(|error| {
                                RegistryError::BadAnswer {
                                    url: registry.clone(),
                                    what: what.clone(),
                                    reason: format!("a body that is not JSON ({error}): {text}"),
                                }
                            });
                        }
                        if !worth_retrying(status) {
                            return Err(RegistryError::Refused {
                                url: registry.clone(),
                                what: what.clone(),
                                status: status.as_u16(),
                                message: message_of(&text),
                            });
                        }
                        format!("HTTP {}: {}", status.as_u16(), message_of(&text))
                    }
                    Err(error) => describe(&error),
                };
                if started.elapsed() + pause >= deadline {
                    return Err(RegistryError::Unreachable {
                        url: registry.clone(),
                        what: what.clone(),
                        seconds: deadline.as_secs(),
                        last,
                    });
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        })
        .unwrap_or_else(|reason| {
            Err(RegistryError::Unreachable {
                url: self.url().to_owned(),
                what: asked,
                seconds: self.deadline.as_secs(),
                last: format!("the client could not run: {reason}"),
            })
        })
    }
}

/// Whether an answer of `status` may change on a later attempt.
fn worth_retrying(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

/// The registry's message in an error body (`{"error_code": .., "message": ..}`),
/// or the body itself.
fn message_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|answer| answer.get("message")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(500).collect())
}

/// The error and its causes on one line (reqwest's own text omits them).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Runs `future` to completion on a thread of its own with a runtime of its own,
/// so that a caller on any thread (an async runtime's included) may block on it.
fn run_blocking<F>(future: F) -> Result<F::Output, String>
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|error| error.to_string())?;
                let output = runtime.block_on(future);
                // Dropping the runtime would wait for its blocking tasks: a DNS
                // lookup that does not answer would hold the caller past the
                // deadline. They end on their own.
                runtime.shutdown_background();
                Ok(output)
            })
            .join()
            .unwrap_or_else(|_| Err("the registry client panicked".to_owned()))
    })
}

/// What a process has learnt from one registry: the schemas of ids it read
/// records with. Cloning shares it.
#[derive(Debug, Clone)]
pub struct RegistrySchemas {
    registry: SchemaRegistry,
    known: Arc<Mutex<Known>>,
}

#[derive(Debug, Default)]
struct Known {
    by_id: HashMap<u32, Arc<Schema>>,
}

impl PartialEq for RegistrySchemas {
    fn eq(&self, other: &Self) -> bool {
        self.registry == other.registry
    }
}

impl RegistrySchemas {
    /// Nothing learnt yet from `registry`.
    pub fn new(registry: SchemaRegistry) -> Self {
        Self {
            registry,
            known: Arc::default(),
        }
    }

    /// The registry.
    pub fn registry(&self) -> &SchemaRegistry {
        &self.registry
    }

    /// The schema of id `id`, fetched the first time it is asked for.
    pub fn schema(&self, id: u32) -> Result<Arc<Schema>, RegistryError> {
        if let Some(schema) = self.lock().by_id.get(&id) {
            return Ok(Arc::clone(schema));
        }
        // Fetched without the lock: other threads' known ids stay readable.
        let schema = Arc::new(self.registry.schema(id)?);
        Ok(Arc::clone(self.lock().by_id.entry(id).or_insert(schema)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        // The map is consistent after every insert: a panic elsewhere leaves it usable.
        self.known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_credentials_or_other_schemes_are_refused_without_showing_the_password() {
        let error = SchemaRegistry::new("http://user:hunter2@registry:8081").unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(error.to_string().contains("credentials"), "{error}");
        assert!(
            error.to_string().starts_with("http://registry:8081 is not"),
            "{error}"
        );
        let error = SchemaRegistry::new("https://registry/?apikey=hunter2#x").unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(
            error.to_string().contains("no query or fragment"),
            "{error}"
        );
        let error = SchemaRegistry::new("ftp://registry").unwrap_err();
        assert!(error.to_string().contains("http or https"), "{error}");
        assert!(SchemaRegistry::new("registry:8081").is_err());
    }

    #[test]
    fn endpoints_are_below_the_base_path_with_subjects_escaped() {
        let registry = SchemaRegistry::new("http://registry:8081/apis/ccompat/v7").unwrap();
        assert_eq!(registry.url(), "http://registry:8081/apis/ccompat/v7");
        assert_eq!(
            registry
                .endpoint(&["subjects", "a/b c-value", "versions"])
                .as_str(),
            "http://registry:8081/apis/ccompat/v7/subjects/a%2Fb%20c-value/versions"
        );
        let registry = SchemaRegistry::new("http://registry:8081/").unwrap();
        assert_eq!(
            registry.endpoint(&["schemas", "ids", "7"]).as_str(),
            "http://registry:8081/schemas/ids/7"
        );
    }

    #[test]
    fn a_registry_that_does_not_answer_fails_at_the_deadline() {
        // A port nothing listens on: connection refused, retried, then given up.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let registry = SchemaRegistry::new(&format!("http://127.0.0.1:{port}"))
            .unwrap()
            .with_deadline(Duration::from_millis(500));
        let started = Instant::now();
        let error = registry.schema(1).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            matches!(&error, RegistryError::Unreachable { what, .. } if what == "the schema of id 1"),
            "{error}"
        );
    }

    #[test]
    fn an_error_body_gives_the_registrys_message() {
        assert_eq!(
            message_of(r#"{"error_code": 40403, "message": "Schema 9 not found"}"#),
            "Schema 9 not found"
        );
        assert_eq!(message_of("bad gateway"), "bad gateway");
    }
}
