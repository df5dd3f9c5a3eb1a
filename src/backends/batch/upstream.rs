//! HTTP to an upstream's Files and Batches API (OpenAI's shapes): upload an input file,
//! create, find, poll a batch, download its output and error files. Every reply is read with
//! a size bound; the objects are read loosely (unknown fields and statuses never fail).

use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::HttpSettings;

/// The largest output or error file read (OpenAI's input files are at most 200 MB).
pub const MAX_FILE_BYTES: usize = 256 * 1024 * 1024;
/// The largest batch object or listing read.
const MAX_OBJECT_BYTES: usize = 4 * 1024 * 1024;
/// How many pages of `GET /batches` a restart looks through for a batch it may have created.
const MAX_LIST_PAGES: usize = 20;
/// Time allowed for one call (an upload of a large file included).
const CALL_TIMEOUT: Duration = Duration::from_secs(600);
/// The metadata key naming the gateway's batch id.
pub const METADATA_KEY: &str = "switchyard_batch";

/// A batch as the upstream describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct BatchObject {
    /// The upstream's id.
    pub id: String,
    /// `validating`, `failed`, `in_progress`, `finalizing`, `completed`, `expired`,
    /// `cancelling`, `cancelled`; anything else reads as still running.
    #[serde(default)]
    pub status: String,
    /// The answered lines.
    pub output_file_id: Option<String>,
    /// The failed lines.
    pub error_file_id: Option<String>,
    /// Why a `failed` batch failed.
    pub errors: Option<BatchErrors>,
}

/// `errors` of a batch.
#[derive(Debug, Clone, Deserialize)]
pub struct BatchErrors {
    /// Each error.
    #[serde(default)]
    pub data: Vec<BatchError>,
}

/// One error of a batch.
#[derive(Debug, Clone, Deserialize)]
pub struct BatchError {
    /// e.g. `token_limit_exceeded`.
    pub code: Option<String>,
    /// What happened.
    pub message: Option<String>,
}

/// Why a call to the upstream failed.
#[derive(Debug)]
pub struct Fault {
    /// The upstream answered with a status that retrying will not change (a 4xx other than
    /// 408, 409 and 429), e.g. a wrong key or an endpoint it does not batch.
    pub refused: Option<u16>,
    /// What happened, for the log: the upstream's status and the start of its answer.
    pub message: String,
}

impl Fault {
    /// A failure worth trying again.
    pub fn transient(message: String) -> Self {
        Fault {
            refused: None,
            message,
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Deserialize)]
struct Listing {
    #[serde(default)]
    data: Vec<Value>,
    #[serde(default)]
    has_more: bool,
    last_id: Option<String>,
}

#[derive(Deserialize)]
struct FileObject {
    id: String,
}

/// The client for one backend's upstream.
#[derive(Debug)]
pub struct FilesAndBatches {
    client: reqwest::Client,
    base: String,
    auth: HeaderValue,
}

impl FilesAndBatches {
    /// The client for `settings` (whose `api_key` validation made sure of).
    pub fn new(name: &str, settings: &HttpSettings) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(CALL_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("backend `{name}`: cannot build the HTTP client: {e}"))?;
        let key = settings.api_key.as_ref().map_or("", |k| k.expose_secret());
        let mut auth = HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| format!("backend `{name}`: `api_key` is not a valid header value"))?;
        auth.set_sensitive(true);
        Ok(FilesAndBatches {
            client,
            base: settings.base_url.as_str().trim_end_matches('/').to_owned(),
            auth,
        })
    }

    /// Uploads `jsonl` with `purpose=batch`; returns the file's id.
    pub async fn upload(&self, jsonl: Vec<u8>) -> Result<String, Fault> {
        let boundary = format!("switchyard-{}", uuid::Uuid::new_v4().simple());
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
             filename=\"batch.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(&jsonl);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let request = self
            .client
            .post(format!("{}/files", self.base))
            .header(CONTENT_TYPE, content_type)
            .body(body);
        let file: FileObject = self.json(request).await?;
        Ok(file.id)
    }

    /// Creates the batch of `input_file_id`, naming `gateway_id` in its metadata.
    pub async fn create(
        &self,
        input_file_id: &str,
        endpoint: &str,
        gateway_id: &str,
    ) -> Result<BatchObject, Fault> {
        let body = json!({
            "input_file_id": input_file_id,
            "endpoint": endpoint,
            "completion_window": "24h",
            "metadata": { METADATA_KEY: gateway_id },
        });
        let request = self
            .client
            .post(format!("{}/batches", self.base))
            .json(&body);
        self.json(request).await
    }

    /// The batch `upstream_id` as it stands.
    pub async fn get(&self, upstream_id: &str) -> Result<BatchObject, Fault> {
        let request = self
            .client
            .get(format!("{}/batches/{upstream_id}", self.base));
        self.json(request).await
    }

    /// The batch the gateway created for `gateway_id`, if any (looked up after a restart).
    pub async fn find(&self, gateway_id: &str) -> Result<Option<BatchObject>, Fault> {
        let mut after: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let mut url = format!("{}/batches?limit=100", self.base);
            if let Some(after) = &after {
                url.push_str("&after=");
                url.extend(url::form_urlencoded::byte_serialize(after.as_bytes()));
            }
            let request = self.client.get(url);
            let page: Listing = self.json(request).await?;
            for batch in page.data {
                let ours = batch.pointer(&format!("/metadata/{METADATA_KEY}"))
                    == Some(&Value::String(gateway_id.to_owned()));
                if ours {
                    return serde_json::from_value(batch)
                        .map(Some)
                        .map_err(|e| Fault::transient(e.to_string()));
                }
            }
            match (page.has_more, page.last_id) {
                (true, Some(last)) => after = Some(last),
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The content of file `file_id`, at most `MAX_FILE_BYTES`.
    pub async fn content(&self, file_id: &str) -> Result<Vec<u8>, Fault> {
        let request = self
            .client
            .get(format!("{}/files/{file_id}/content", self.base));
        self.bytes(request, MAX_FILE_BYTES).await
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, Fault> {
        let bytes = self.bytes(request, MAX_OBJECT_BYTES).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Fault::transient(format!("unexpected reply: {e}")))
    }

    async fn bytes(
        &self,
        request: reqwest::RequestBuilder,
        limit: usize,
    ) -> Result<Vec<u8>, Fault> {
        let response = request
            .header(AUTHORIZATION, self.auth.clone())
            .send()
            .await
            .map_err(|e| Fault::transient(crate::backends::http::cause_chain(&e)))?;
        let status = response.status();
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk =
                chunk.map_err(|e| Fault::transient(crate::backends::http::cause_chain(&e)))?;
            if body.len() + chunk.len() > limit {
                let message = format!("the upstream's reply exceeds {limit} bytes");
                return Err(Fault::transient(message));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
            let code = status.as_u16();
            let final_answer = status.is_client_error() && ![408, 409, 429].contains(&code);
            return Err(Fault {
                refused: final_answer.then_some(code),
                message: format!("status {status}: {text}"),
            });
        }
        Ok(body)
    }
}
