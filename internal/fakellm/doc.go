// Package fakellm is a faithful fake of the Anthropic Messages API, OpenAI Chat
// Completions and Responses (with Codex's backend path), and the Gemini API, for
// development, tests and benchmarks. It speaks the real wire formats (event names,
// field names, usage fields, error shapes, headers), answers deterministically, can be
// scripted per test, and keeps a log of what it served so billing tests can compare
// Tollgate's numbers with the upstream's.
//
// # Routes
//
//	POST /v1/messages                   JSON, or SSE when the body has "stream":true
//	POST /v1/messages/count_tokens      {"input_tokens":N}
//	GET  /v1/models, /v1/models/{id}    Anthropic list shape; unknown id: 404 not_found_error
//	POST /v1/chat/completions           chat.completion, or data-only SSE ending in data: [DONE]
//	POST /v1/responses                  Response object, or named SSE events with sequence_number
//	POST /backend-api/codex/responses   the same, Codex's ChatGPT-auth path
//	GET  /v1/responses (Upgrade: websocket), same for the Codex path
//	                                    426 with an empty body: Codex falls back to HTTP
//	GET  /v1beta/models, /v1beta/models/{model}
//	POST /v1beta/models/{model}:generateContent
//	POST /v1beta/models/{model}:streamGenerateContent
//	                                    ?alt=sse: data: lines; else a JSON array written
//	                                    element by element, [{…},\n{…}]
//	POST /v1beta/models/{model}:countTokens
//	                                    {"totalTokens":N,…}; the body may wrap the request
//	                                    in generateContentRequest
//	POST /v1/oauth/token                refresh grant, JSON or form; see below
//	GET  /_fakellm/served?since=N       served log entries with Seq > N, as a JSON array
//	POST /_fakellm/reset                empties the served log (Seq keeps counting)
//	GET  /healthz                       200
//
// Keys: Anthropic routes take x-api-key or Authorization: Bearer; OpenAI routes a
// Bearer token; Gemini routes x-goog-api-key, ?key= or a Bearer token. Options.APIKeys
// limits the keys; by default any non-empty key is accepted. Query strings such as
// ?beta=true are ignored. Errors come in each provider's shape: Anthropic's
// {"type":"error","error":{type,message},"request_id"} with request-id; OpenAI's
// {"error":{message,type,param,code}} with x-request-id, x-ratelimit-{limit,remaining,
// reset}-{requests,tokens} (exhausted on a 429) and, when a behaviour sets it,
// retry-after; Gemini's {"error":{code,message,status}}, a 429 with QuotaFailure and
// RetryInfo details. A missing key is a 401 (Gemini: 403 PERMISSION_DENIED), a wrong
// one a 401 (Gemini: 400 API_KEY_INVALID).
//
// # OAuth
//
// The token endpoint answers grant_type=refresh_token with {"access_token",
// "refresh_token","expires_in","token_type":"Bearer"}. Refresh tokens are valid once:
// each refresh spends its token and issues a new pair, and a spent or unknown token
// gets 400 {"error":"invalid_grant"}. Valid refresh tokens come from
// [Server.SetRefreshToken] and from earlier refreshes; [Server.Refreshes] counts the
// successful ones. With Options.CheckAccessTokens (or [Server.SetCheckAccessTokens]),
// a Bearer token on any model route must have been issued by the endpoint and not have
// expired (Options.AccessTokenTTL, default 1h), or have been added with
// [Server.AddAccessToken]; [Server.RevokeAccessToken] withdraws one.
//
// # Formulas
//
// The counts are simple on purpose; tests should compare Tollgate with [Server.Served],
// not with these formulas, but they are stable and the same in every dialect:
//
//   - Counted text. Anthropic: every "text" of system and messages, including
//     tool_result content. Chat Completions: every message's string content or text
//     parts, of any role. Responses: instructions plus a string input, or every string
//     content, input_text and output_text part and function_call_output output of the
//     input items. Gemini: every parts[].text of contents and systemInstruction. Tool
//     definitions, tool call arguments, images and reasoning items are not counted.
//   - total = ceil(bytes of counted text / 4), minimum 1; the count endpoints return it.
//   - Anthropic cache: if any system or message block carries cache_control, the text up
//     to and including the last such block is the cached prefix: cache creation =
//     floor(prefix bytes / 4), in the 1h bucket when that block's ttl is "1h", else in
//     the 5m bucket; input_tokens = total - cache creation. The fake keeps no cache, so
//     cache reads (Anthropic cache_read_input_tokens, OpenAI cached_tokens, Gemini
//     cachedContentTokenCount) are 0 unless a [Behavior] sets CacheRead; OpenAI and
//     Gemini then report total as the prompt count (CacheRead of it cached).
//   - The last user turn is the last message whose role is user (Anthropic, Chat
//     Completions' user, tool or function, Responses' user message or
//     function_call_output, Gemini's user, function or empty role). Its texts are where markers are looked for; the
//     last of them is the last user text. A turn that only carries tool results
//     (tool_result blocks, a tool message, function_call_output, functionResponse
//     parts) has none.
//   - The reply is "Hello from fakellm. You said: " + the first 60 runes of the last
//     user text, or "Hello from fakellm." when it is empty (as after a tool result).
//   - Text and thinking stream one delta per word: a run of non-space bytes with the
//     spaces after it. A tool call's arguments stream in 8-byte fragments after an
//     empty first one (Gemini sends the call whole but counts it the same).
//   - Anthropic output_tokens = the number of content_block_delta events of the answer
//     (text, thinking, signature and input_json deltas), minimum 1. message_start
//     reports output_tokens 1; message_delta reports the cumulative final usage.
//   - OpenAI and Gemini output = text words + tool argument fragments (the empty first
//     one included) + reasoning, where reasoning is the number of words of the fake
//     thinking text when Thinking is on (Behavior.ReasoningTokens overrides it). OpenAI
//     reports it as completion_tokens / output_tokens with reasoning_tokens inside;
//     Gemini as candidatesTokenCount (without thoughts) and thoughtsTokenCount, and
//     totalTokenCount = prompt + candidates + thoughts. Each Gemini stream chunk carries
//     the usage so far: candidates counted up to that chunk, thoughts in full.
//
// In the served log every dialect maps onto [Usage] as it bills: InputTokens is the
// prompt without cached tokens, CacheRead the cached tokens, OutputTokens the output
// including reasoning, and Reasoning the reasoning or thoughts tokens for information.
// Served.Usage is what the client could observe on the wire (zero for a Chat
// Completions stream without stream_options.include_usage, or a stream that ended
// before its usage); Served.Generated is the usage of the whole planned answer.
//
// # Markers
//
// Words in a text of the last user turn trigger behaviour without code, in every
// dialect: FAKE_ERROR_<status>, FAKE_MIDSTREAM_ERROR, FAKE_TOOL_CALL, FAKE_THINKING,
// FAKE_SLOW_<ms> (delay between events) and FAKE_CUT_<n> (cut the stream after n
// events, data lines or array elements; FAKE_CUT_0 cuts right after the headers). A
// script set with [Server.SetScript] wins over markers field by field.
package fakellm
