package fakellm

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type testBundle struct {
	fake *Server
	url  string
}

func setup(t *testing.T, opts Options) *testBundle {
	t.Helper()
	fake := New(opts)
	ts := httptest.NewServer(fake)
	t.Cleanup(ts.Close)
	return &testBundle{fake: fake, url: ts.URL}
}

// post sends body to path with a valid key and returns the response; the caller closes it.
func (tb *testBundle) post(t *testing.T, ctx context.Context, path, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tb.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Api-Key", "sk-test")
	req.Header.Set("Anthropic-Version", "2023-06-01")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return resp
}

// postJSON posts and decodes the JSON answer, checking the status.
func (tb *testBundle) postJSON(t *testing.T, path, body string, wantStatus int) (map[string]any, *http.Response) {
	t.Helper()
	resp := tb.post(t, context.Background(), path, body)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != wantStatus {
		t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, wantStatus, raw)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content-type = %q", ct)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, raw)
	}
	return out, resp
}

type sseEvent struct {
	name string
	data map[string]any
	raw  string
}

// readEvents parses an SSE body until it ends, checking that every event has an event
// line, a JSON data line whose type equals the event name, and a blank line after. It
// returns the events read and the error that ended the body (nil at a clean EOF).
func readEvents(t *testing.T, body io.Reader) ([]sseEvent, error) {
	t.Helper()
	br := bufio.NewReader(body)
	var events []sseEvent
	var cur sseEvent
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if err == io.EOF && line == "" && cur.name == "" {
				return events, nil
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return events, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.raw = strings.TrimPrefix(line, "data: ")
			if err := json.Unmarshal([]byte(cur.raw), &cur.data); err != nil {
				t.Fatalf("data of %s is not JSON: %v: %s", cur.name, err, cur.raw)
			}
		case line == "":
			if cur.name == "" || cur.data == nil {
				t.Fatalf("incomplete event before blank line: %+v", cur)
			}
			if cur.data["type"] != cur.name {
				t.Fatalf("event %s carries type %v", cur.name, cur.data["type"])
			}
			events = append(events, cur)
			cur = sseEvent{}
		default:
			t.Fatalf("unexpected SSE line %q", line)
		}
	}
}

// stream posts a streaming request and reads all its events; a transport error while
// reading is returned, not fatal.
func (tb *testBundle) stream(t *testing.T, body string) ([]sseEvent, *http.Response, error) {
	t.Helper()
	resp := tb.post(t, context.Background(), "/v1/messages", body)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(resp.Body)
		t.Fatalf("status = %d: %s", resp.StatusCode, raw)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream; charset=utf-8" {
		t.Errorf("content-type = %q", ct)
	}
	events, err := readEvents(t, resp.Body)
	return events, resp, err
}

func eventNames(events []sseEvent) []string {
	names := make([]string, len(events))
	for i, e := range events {
		names[i] = e.name
	}
	return names
}

// waitServed waits until the log has n entries after since; entries of requests the
// client abandoned are recorded only when the server notices.
func waitServed(t *testing.T, fake *Server, since int64, n int) []Served {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := fake.ServedSince(since)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("served log has %d entries after %d, want %d", len(got), since, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lastServed returns the one entry the test's single request produced. The log has it
// as soon as the client has read the whole response.
func lastServed(t *testing.T, fake *Server) Served {
	t.Helper()
	got := fake.Served()
	if len(got) != 1 {
		t.Fatalf("served log has %d entries, want 1: %+v", len(got), got)
	}
	return got[0]
}

// usageOf reads an Anthropic usage object.
func usageOf(t *testing.T, v any) Usage {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("usage is %T", v)
	}
	num := func(k string) int64 {
		f, _ := m[k].(float64)
		return int64(f)
	}
	u := Usage{
		InputTokens:  num("input_tokens"),
		OutputTokens: num("output_tokens"),
		CacheRead:    num("cache_read_input_tokens"),
	}
	if cc, ok := m["cache_creation"].(map[string]any); ok {
		f5, _ := cc["ephemeral_5m_input_tokens"].(float64)
		f1, _ := cc["ephemeral_1h_input_tokens"].(float64)
		u.CacheCreation5m, u.CacheCreation1h = int64(f5), int64(f1)
		if total := num("cache_creation_input_tokens"); total != u.CacheCreation5m+u.CacheCreation1h {
			t.Errorf("cache_creation_input_tokens %d != 5m %d + 1h %d", total, u.CacheCreation5m, u.CacheCreation1h)
		}
	} else {
		u.CacheCreation5m = num("cache_creation_input_tokens") // message_delta has no breakdown
	}
	return u
}

func body(stream bool, userText string) string {
	b, _ := json.Marshal(map[string]any{
		"model":      "claude-sonnet-4-5",
		"max_tokens": 1024,
		"stream":     stream,
		"messages":   []any{map[string]any{"role": "user", "content": userText}},
	})
	return string(b)
}

// deltasOf concatenates the deltas of one type and counts them.
func deltasOf(events []sseEvent, deltaType, field string) (string, int) {
	var sb strings.Builder
	n := 0
	for _, e := range events {
		if e.name != "content_block_delta" {
			continue
		}
		d := e.data["delta"].(map[string]any)
		if d["type"] == deltaType {
			sb.WriteString(d[field].(string))
			n++
		}
	}
	return sb.String(), n
}
