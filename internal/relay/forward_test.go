package relay

import (
	"net/http"
	"reflect"
	"testing"
)

// TestUpstreamRequestHeader: the client's headers go upstream except hop-by-hop ones
// (and those the Connection header names), credentials, forwarding headers and the
// ones the transport sets.
func TestUpstreamRequestHeader(t *testing.T) {
	in := http.Header{}
	for k, v := range map[string]string{
		"Anthropic-Version": "2023-06-01", "Anthropic-Beta": "oauth-2025-04-20", "User-Agent": "claude-cli/2.0",
		"X-Stainless-Lang": "js", "Content-Type": "application/json", "X-Session-Tag": "keep me",
		"Authorization": "Bearer tg-secret", "X-Api-Key": "tg-secret", "X-Goog-Api-Key": "g", "Cookie": "c=1",
		"Forwarded": "for=1.2.3.4", "X-Forwarded-For": "1.2.3.4", "X-Real-Ip": "1.2.3.4", "Content-Length": "12",
		"Accept-Encoding": "gzip", "Host": "tollgate", "Keep-Alive": "timeout=5", "Te": "trailers",
		"Transfer-Encoding": "chunked", "Upgrade": "h2c", "Proxy-Authorization": "Basic x",
		"Connection": "keep-alive, X-Hop-Private", "X-Hop-Private": "secret",
	} {
		in.Set(k, v)
	}
	in.Add("Anthropic-Beta", "interleaved-thinking-2025-05-14")
	got := upstreamRequestHeader(in)
	want := http.Header{
		"Anthropic-Version": {"2023-06-01"}, "Anthropic-Beta": {"oauth-2025-04-20", "interleaved-thinking-2025-05-14"},
		"User-Agent": {"claude-cli/2.0"}, "X-Stainless-Lang": {"js"}, "Content-Type": {"application/json"},
		"X-Session-Tag": {"keep me"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("forwarded %v\nwant %v", got, want)
	}
	if in.Get("Authorization") == "" {
		t.Error("the client's header map was changed")
	}
}
