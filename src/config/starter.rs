//! `switchyard init`: a commented starter routes.toml for the backend kinds an operator names.
//!
//! Every key of each section is written, commented out where it has a default, with the same
//! words as the README's tables, so the file itself is the reference while editing. A test runs
//! `check` on the output for every kind: a starter that does not load would be worse than none.

use std::fmt::Write;

/// The kinds `init --backend` accepts, in the order they are written.
pub const KINDS: &[&str] = &["echo", "openai", "ollama", "redis", "proxy"];

/// The starter file for `kinds` (each at most once, in `KINDS` order; empty means `echo`).
/// `schema_path` goes into the Taplo `#:schema` directive on the first line.
pub fn starter(kinds: &[&str], schema_path: &str) -> Result<String, String> {
    if let Some(unknown) = kinds.iter().find(|k| !KINDS.contains(k)) {
        return Err(format!(
            "unknown backend kind `{unknown}` (expected one of: {})",
            KINDS.join(", ")
        ));
    }
    let chosen: Vec<&str> = if kinds.is_empty() {
        vec!["echo"]
    } else {
        KINDS
            .iter()
            .copied()
            .filter(|k| kinds.contains(k))
            .collect()
    };
    let mut out = String::new();
    let _ = writeln!(out, "#:schema {schema_path}");
    out.push_str(HEADER);
    out.push_str(SERVER);
    for kind in &chosen {
        out.push_str(backend_section(kind));
    }
    Ok(out)
}

fn backend_section(kind: &str) -> &'static str {
    match kind {
        "openai" => OPENAI,
        "ollama" => OLLAMA,
        "redis" => REDIS,
        "proxy" => PROXY,
        _ => ECHO,
    }
}

const HEADER: &str = "\
# Switchyard routes: which backend serves which model-name prefix.
# Every key is described in README.md (\"Configuration: routes.toml\"); your editor shows the same
# text on hover through the schema above. Validate with: switchyard check routes.toml
# Values may refer to the environment: \"${VAR}\" or \"${VAR:-default}\".
";

const SERVER: &str = "
[server]
# Address to listen on; --listen / SWITCHYARD_LISTEN override it.
listen = \"127.0.0.1:8080\"
# Largest request body accepted, in bytes; larger is a 413.
# max_body_bytes = 33554432
# Backend for pass-through requests (/v1/audio/...) whose body names no model. With a store the
# gateway serves /v1/files and /v1/batches itself, unless this backend has batch = \"upstream\".
# default_backend = \"openai\"
# Grace period for in-flight requests after SIGTERM/SIGINT.
# shutdown_timeout = \"30s\"
# HTTP worker threads (default: one per core).
# workers = 2
";

const ECHO: &str = "
# The built-in echo backend: no network; answers with the last user message.
[backends.echo]
kind = \"echo\"

[[routes]]
prefix = \"echo/\"            # model-name prefix; the longest matching prefix wins
backend = \"echo\"
models = [\"hello\"]          # advertised by /v1/models as echo/hello
# strip_prefix = true       # echo/hello reaches the backend as hello
";

const OPENAI: &str = "
# An OpenAI-compatible server: OpenAI, vLLM, SGLang, TGI, llama.cpp.
[backends.openai]
kind = \"openai\"
base_url = \"https://api.openai.com/v1\"   # /v1 included; the path below /v1 is appended
api_key = \"${OPENAI_API_KEY}\"             # sent as Authorization: Bearer; absent: the client's passes
# headers = { \"OpenAI-Organization\" = \"${OPENAI_ORG:-}\" }   # extra headers, treated as secrets
# connect_timeout = \"5s\"
# request_timeout = \"600s\"
# responses = \"native\"     # /v1/responses relayed; \"translate\" for servers without one

[[routes]]
prefix = \"openai/\"
backend = \"openai\"
models = [\"gpt-4o-mini\"]
# discover = false          # also list the backend's own /models under the prefix
";

const OLLAMA: &str = "
# An Ollama server through its native API (base_url is the server's root, without /v1).
[backends.ollama]
kind = \"ollama\"
base_url = \"http://127.0.0.1:11434\"
# api_key = \"${OLLAMA_API_KEY}\"
# connect_timeout = \"5s\"
# request_timeout = \"600s\"

[[routes]]
prefix = \"local/\"
backend = \"ollama\"
discover = true             # list the models the Ollama server has pulled
";

const REDIS: &str = "
# Inference boxes behind a firewall: jobs on a Redis queue, answered by `switchyard worker`
# (or openai-rq workers) next to the model server.
[backends.dc]
kind = \"redis\"
redis_url = \"${REDIS_URL:-redis://127.0.0.1:6379/0}\"
# timeout = \"600s\"          # how long a client waits for its answer, and between stream entries

[[routes]]
prefix = \"dc/\"
backend = \"dc\"
models = [\"llama3.1-8b\"]
";

const PROXY: &str = "
# Any HTTP server, relayed raw (audio and endpoints the gateway does not model).
[backends.raw]
kind = \"proxy\"
base_url = \"http://127.0.0.1:8000/v1\"
# batch = \"upstream\"   # as default_backend: relay /v1/files and /v1/batches to its own Batch API
# api_key = \"${RAW_API_KEY}\"
# connect_timeout = \"5s\"
# request_timeout = \"600s\"

[[routes]]
prefix = \"raw/\"
backend = \"raw\"
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_kind_is_refused_by_name() {
        let err = starter(&["vllm"], "x").unwrap_err();
        assert!(err.contains("`vllm`") && err.contains("openai"), "{err}");
    }

    #[test]
    fn kinds_are_written_once_each_in_a_stable_order_and_echo_is_the_default() {
        let text = starter(&["redis", "openai", "redis"], "s.json").unwrap();
        assert!(text.starts_with("#:schema s.json\n"));
        assert_eq!(text.matches("kind = \"redis\"").count(), 1);
        assert!(text.find("[backends.openai]") < text.find("[backends.dc]"));
        assert!(starter(&[], "s").unwrap().contains("[backends.echo]"));
    }
}
