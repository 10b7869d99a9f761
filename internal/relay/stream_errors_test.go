package relay

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestStreamErrors: each protocol's closing error event is one whole SSE event whose data
// is JSON carrying Tollgate's type and message where the protocol's clients look for them,
// with a message that needs escaping.
func TestStreamErrors(t *testing.T) {
	const typ, msg = "tollgate_upstream_stalled", `Tollgate: the upstream sent nothing for 5m0s; "quoted" \ and 
 newline`
	for _, c := range []struct {
		name  string
		f     func([]byte, string, string, string) []byte
		event string // the event: line, if the protocol names its events
		typ   func(map[string]any) any
		msg   func(map[string]any) any
	}{
		{"anthropic", anthropicStreamError, "error",
			func(m map[string]any) any { return m["error"].(map[string]any)["type"] },
			func(m map[string]any) any { return m["error"].(map[string]any)["message"] }},
		{"chat", chatStreamError, "",
			func(m map[string]any) any { return m["error"].(map[string]any)["type"] },
			func(m map[string]any) any { return m["error"].(map[string]any)["message"] }},
		{"responses", responsesStreamError, "error",
			func(m map[string]any) any { return m["code"] },
			func(m map[string]any) any { return m["message"] }},
		{"gemini", geminiStreamError, "",
			func(m map[string]any) any {
				return m["error"].(map[string]any)["details"].([]any)[0].(map[string]any)["reason"]
			},
			func(m map[string]any) any { return m["error"].(map[string]any)["message"] }},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := c.f([]byte("prefix"), typ, msg, "req_1")
			if !bytes.HasPrefix(out, []byte("prefix")) || !bytes.HasSuffix(out, []byte("\n\n")) {
				t.Fatalf("not one event appended: %q", out)
			}
			var event, data string
			sc := bufio.NewScanner(bytes.NewReader(out[len("prefix"):]))
			lines := 0
			for sc.Scan() {
				line := sc.Text()
				if v, ok := strings.CutPrefix(line, "event: "); ok {
					event = v
				}
				if v, ok := strings.CutPrefix(line, "data: "); ok {
					data = v
				}
				if line != "" {
					lines++
				}
			}
			if event != c.event || lines != map[bool]int{true: 2, false: 1}[c.event != ""] {
				t.Fatalf("event %q in %d lines: %q", event, lines, out)
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(data), &m); err != nil {
				t.Fatalf("data is not JSON: %v\n%s", err, data)
			}
			if c.typ(m) != typ || c.msg(m) != msg {
				t.Fatalf("type %v, message %v", c.typ(m), c.msg(m))
			}
		})
	}
}
