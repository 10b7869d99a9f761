// Package fakellm is a faithful fake of the Anthropic Messages API, for development,
// tests and benchmarks. It speaks the real wire format (event names, field names, error
// shapes, headers), answers deterministically, can be scripted per test, and keeps a log
// of what it served so billing tests can compare Tollgate's numbers with the upstream's.
//
// # Routes
//
//	POST /v1/messages               JSON, or SSE when the body has "stream":true
//	POST /v1/messages/count_tokens  {"input_tokens":N}
//	GET  /v1/models                 Anthropic list shape
//	GET  /v1/models/{id}            one model, or 404 not_found_error
//	GET  /_fakellm/served?since=N   served log entries with Seq > N, as a JSON array
//	POST /_fakellm/reset            empties the served log (Seq keeps counting)
//	GET  /healthz                   200
//
// The /v1 routes need a key in x-api-key or Authorization: Bearer. Query strings such
// as ?beta=true are ignored.
//
// # Formulas
//
// The counts are simple on purpose; tests should compare Tollgate with [Server.Served],
// not with these formulas, but they are stable:
//
//   - Counted text is every "text" of system (string or blocks) and messages (string
//     content or blocks of any type), including tool_result content (string or blocks).
//     Tool definitions, tool_use inputs, thinking and images are not counted.
//   - total = ceil(bytes of counted text / 4), minimum 1. count_tokens returns total.
//   - If any system or message block carries cache_control, the text up to and including
//     the last such block is the cached prefix: cache creation = floor(prefix bytes / 4),
//     in the 1h bucket when that block's ttl is "1h", else in the 5m bucket.
//     input_tokens = total - cache creation. cache_read_input_tokens is 0 (the fake keeps
//     no cache) unless a [Behavior] sets it.
//   - The last user text is the last text of the last message whose role is "user" (its
//     string content, or its last "text" block). The reply is
//     "Hello from fakellm. You said: " + its first 60 runes, or "Hello from fakellm."
//     when it is empty (as after a tool_result).
//   - Text and thinking stream one delta per word: a run of non-space bytes with the
//     spaces after it.
//   - output_tokens = the number of content_block_delta events of the answer (text,
//     thinking, signature and input_json deltas), minimum 1. message_start reports
//     output_tokens 1; message_delta reports the cumulative final usage.
//
// # Markers
//
// Words in any text block of the last user message trigger behaviour without code:
// FAKE_ERROR_<status>, FAKE_MIDSTREAM_ERROR, FAKE_TOOL_CALL, FAKE_THINKING,
// FAKE_SLOW_<ms> (delay between events) and FAKE_CUT_<n> (cut the stream after n
// events; FAKE_CUT_0 cuts right after the headers). A script set with
// [Server.SetScript] wins over markers field by field.
package fakellm
