package fakellm

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// send makes a request with the given header pairs and returns the response; the
// caller closes it.
func (tb *testBundle) send(t *testing.T, method, path, body string, header ...string) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, tb.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

var openAIAuth = []string{"Authorization", "Bearer sk-openai"}

// sendJSON makes a request, checks the status and decodes the JSON answer.
func (tb *testBundle) sendJSON(t *testing.T, path, body string, wantStatus int, header ...string) (map[string]any, *http.Response) {
	t.Helper()
	resp := tb.send(t, http.MethodPost, path, body, header...)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != wantStatus {
		t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, wantStatus, raw)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, raw)
	}
	return out, resp
}

// readDataLines parses a data-only SSE body (Chat Completions, Gemini alt=sse) until it
// ends: every event is one data line and a blank line. It returns the payloads and the
// error that ended the body (nil at a clean EOF).
func readDataLines(t *testing.T, body io.Reader) ([]string, error) {
	t.Helper()
	br := bufio.NewReader(body)
	var payloads []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if err == io.EOF && line == "" {
				return payloads, nil
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return payloads, err
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("unexpected SSE line %q", line)
		}
		if blank, err := br.ReadString('\n'); err != nil || blank != "\n" {
			t.Fatalf("no blank line after %q: %q %v", line, blank, err)
		}
		data = strings.TrimSuffix(data, "\n")
		if data != "[DONE]" && !json.Valid([]byte(data)) {
			t.Fatalf("data is not JSON: %s", data)
		}
		payloads = append(payloads, data)
	}
}

func decode(t *testing.T, raw string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, raw)
	}
	return m
}

// num reads a number at a path of keys in a decoded JSON object.
func num(t *testing.T, v any, path ...string) int64 {
	t.Helper()
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%v: not an object at %q", path, k)
		}
		v = m[k]
	}
	f, ok := v.(float64)
	if !ok {
		t.Fatalf("%v = %v, not a number", path, v)
	}
	return int64(f)
}

// tokensOf is the fake's input count for text: ceil(bytes/4), minimum 1.
func tokensOf(text string) int64 {
	return max(int64((len(text)+3)/4), 1)
}

var thinkingWords = int64(len(splitWords(thinkingText)))
