"""The request path: one HTTP client for every OpenAI-compatible endpoint (streaming, retries,
pacing to rate limits, timing), structured output on top of it, separating a reasoning model's
thinking from its answer, and the embedded llama.cpp server."""
