//! The gateway through the `async-openai` crate, unmodified but for its base URL: its strict
//! types double as a check of the gateway's own output shapes.

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestUserMessageArgs, ChatCompletionStreamOptions,
    CreateChatCompletionRequestArgs,
};
use async_openai::types::embeddings::CreateEmbeddingRequestArgs;
use futures::StreamExt;

use crate::support::{openai_routes, spawn_gateway};

#[tokio::test]
async fn async_openai_chats_streams_embeds_lists_and_sees_not_found() {
    // Arrange: `up/` is an openai backend pointing back at the gateway, so `up/echo/x` crosses
    // the openai backend's real HTTP and SSE relay before the echo backend answers.
    let gw = spawn_gateway(&openai_routes("{gateway}/v1", "")).await;
    let client = Client::with_config(
        OpenAIConfig::new()
            .with_api_base(format!("{}/v1", gw.base))
            .with_api_key("sk-any"),
    );
    let user = |text: &str| {
        ChatCompletionRequestUserMessageArgs::default()
            .content(text)
            .build()
            .unwrap()
            .into()
    };

    // Chat, through the openai backend.
    let request = CreateChatCompletionRequestArgs::default()
        .model("up/echo/hello")
        .messages(vec![user("ping pong")])
        .build()
        .unwrap();
    let response = client.chat().create(request).await.unwrap();
    assert_eq!(
        response.choices[0].message.content.as_deref(),
        Some("ping pong")
    );
    assert_eq!(
        response.model, "echo/hello",
        "the upstream saw the stripped name"
    );
    assert_eq!(response.usage.unwrap().completion_tokens, 2);

    // Streaming chat, with usage.
    let request = CreateChatCompletionRequestArgs::default()
        .model("up/echo/hello")
        .messages(vec![user("one two three")])
        .stream_options(ChatCompletionStreamOptions {
            include_usage: Some(true),
            include_obfuscation: None,
        })
        .build()
        .unwrap();
    let mut stream = client.chat().create_stream(request).await.unwrap();
    let mut text = String::new();
    let mut usage = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        if let Some(choice) = chunk.choices.first() {
            text.push_str(choice.delta.content.as_deref().unwrap_or_default());
        }
        usage = usage.or(chunk.usage);
    }
    assert_eq!(text, "one two three");
    assert_eq!(usage.unwrap().completion_tokens, 3);

    // Embeddings.
    let request = CreateEmbeddingRequestArgs::default()
        .model("echo/embed")
        .input(vec!["a", "b"])
        .build()
        .unwrap();
    let embeddings = client.embeddings().create(request).await.unwrap();
    assert_eq!(embeddings.data.len(), 2);
    assert_eq!(embeddings.data[1].index, 1);

    // Models.
    let models = client.models().list().await.unwrap();
    let ids: Vec<_> = models.data.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["up/gpt-4o", "echo/hello"]);

    // Unknown model: an API error with the 404 and OpenAI's code.
    let request = CreateChatCompletionRequestArgs::default()
        .model("nope/x")
        .messages(vec![user("x")])
        .build()
        .unwrap();
    match client.chat().create(request).await {
        Err(OpenAIError::ApiError(e)) => {
            assert_eq!(e.status_code.as_u16(), 404);
            assert_eq!(e.api_error.code.as_deref(), Some("model_not_found"));
        }
        other => panic!("expected a 404 ApiError, got {other:?}"),
    }
}
