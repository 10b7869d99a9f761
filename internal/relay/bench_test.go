package relay

import (
	"fmt"
	"strings"
	"testing"
)

// Micro-benchmarks of the relay's per-request parsing (go test -run '^$' -bench . ./internal/relay).

// claudeCodeBody is shaped like a Claude Code turn: a long system prompt, tool
// definitions, a conversation, metadata with a session id; about 40 KB.
func claudeCodeBody() []byte {
	var b strings.Builder
	b.WriteString(`{"model":"claude-sonnet-4-5","max_tokens":32000,"stream":true,`)
	b.WriteString(`"metadata":{"user_id":"{\"device_id\":\"d1\",\"session_id\":\"2f1c-aa\"}"},`)
	b.WriteString(`"system":[{"type":"text","text":"` + strings.Repeat("You are Claude Code. Follow the rules. ", 200) + `","cache_control":{"type":"ephemeral"}}],`)
	b.WriteString(`"tools":[`)
	for i := range 20 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name":"tool%d","description":"%s","input_schema":{"type":"object","properties":{"path":{"type":"string"}},"required":["path"]}}`, i, strings.Repeat("does a thing \\\"well\\\" ", 20))
	}
	b.WriteString(`],"messages":[`)
	for i := range 30 {
		if i > 0 {
			b.WriteByte(',')
		}
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		fmt.Fprintf(&b, `{"role":"%s","content":[{"type":"text","text":"%s"}]}`, role, strings.Repeat("some words é ✓ ", 30))
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

func BenchmarkSniff(b *testing.B) {
	body := claudeCodeBody()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := sniff(body); err != nil {
			b.Fatal(err)
		}
	}
}

// stream64 is a 64-event Anthropic stream, line by line.
func stream64() [][]byte {
	var lines []string
	ev := func(name, data string) { lines = append(lines, "event: "+name+"\n", "data: "+data+"\n", "\n") }
	ev("message_start", `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":1200,"cache_creation_input_tokens":0,"cache_read_input_tokens":30000,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":1,"service_tier":"standard"}}}`)
	ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`)
	for i := range 59 {
		ev("content_block_delta", fmt.Sprintf(`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"word%d "}}`, i))
	}
	ev("content_block_stop", `{"type":"content_block_stop","index":0}`)
	ev("message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":1200,"cache_creation_input_tokens":0,"cache_read_input_tokens":30000,"output_tokens":60}}`)
	ev("message_stop", `{"type":"message_stop"}`)
	out := make([][]byte, len(lines))
	for i, l := range lines {
		out[i] = []byte(l)
	}
	return out
}

// BenchmarkAnthropicTap: the usage tap over one whole 64-event stream.
func BenchmarkAnthropicTap(b *testing.B) {
	lines := stream64()
	b.ReportAllocs()
	for b.Loop() {
		t := &anthropicTap{}
		for _, l := range lines {
			t.Line(l, false)
		}
		if u, ok := t.Usage(); !ok || u.Output != 60 || !t.Finished() {
			b.Fatalf("usage %+v %v", u, ok)
		}
	}
}

// BenchmarkBodyUsage: the usage of a non-streaming answer.
func BenchmarkBodyUsage(b *testing.B) {
	body := []byte(`{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"` +
		strings.Repeat("hello there ", 40) + `"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":6,"service_tier":"standard"}}`)
	b.ReportAllocs()
	for b.Loop() {
		if u, ok := anthropicBodyUsage(body); !ok || u.Output != 6 {
			b.Fatal(u, ok)
		}
	}
}
