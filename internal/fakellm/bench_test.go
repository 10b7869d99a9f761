package fakellm

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkServe measures the handler alone (no network), which bounds what the fake
// costs when it is the "direct" baseline of the bench suite.
func BenchmarkServe(b *testing.B) {
	const prompt = "Write a haiku about gateways and tokens, please."
	cases := []struct {
		name, path, body, key, value string
	}{
		{"json", "/v1/messages", body(false, prompt), "X-Api-Key", "k"},
		{"stream", "/v1/messages", body(true, prompt), "X-Api-Key", "k"},
		{"chat_stream", "/v1/chat/completions", chatBodyOf(true, true, prompt), "Authorization", "Bearer k"},
		{"responses_stream", "/v1/responses", codexBody(true, prompt), "Authorization", "Bearer k"},
		{"gemini_stream", "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", geminiBodyOf(prompt), "X-Goog-Api-Key", "k"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			fake := New(Options{MaxLog: 1000})
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, c.path, strings.NewReader(c.body))
				req.Header.Set(c.key, c.value)
				rec := httptest.NewRecorder()
				fake.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatal(rec.Code, rec.Body.String())
				}
			}
		})
	}
}
