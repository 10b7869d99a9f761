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
	for _, stream := range []bool{false, true} {
		name := map[bool]string{false: "json", true: "stream"}[stream]
		b.Run(name, func(b *testing.B) {
			fake := New(Options{MaxLog: 1000})
			reqBody := body(stream, "Write a haiku about gateways and tokens, please.")
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/v1/messages", strings.NewReader(reqBody))
				req.Header.Set("X-Api-Key", "k")
				rec := httptest.NewRecorder()
				fake.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatal(rec.Code)
				}
			}
		})
	}
}
