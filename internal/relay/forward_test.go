package relay

import (
	"net/http"
	"reflect"
	"strings"
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

func TestBadModelName(t *testing.T) {
	for _, c := range []struct {
		model string
		bad   bool
	}{
		{"claude-sonnet-4-5-20250929", false},
		{"ft:gpt-4o-mini:org::abc123", false},
		{"anthropic.claude-3-sonnet-20240229-v1:0", false},
		{"vendor/model-name", false}, // OpenAI-compatible upstreams name models this way
		{"claude sonnet", true},
		{"claude\r\nX-Injected: yes", true},
		{"claude\x00", true},
		{"claude\x7f", true},
		{strings.Repeat("m", maxModelName), false},
		{strings.Repeat("m", maxModelName+1), true},
	} {
		if got := badModelName(c.model) != ""; got != c.bad {
			t.Errorf("badModelName(%q) bad = %v, want %v", c.model, got, c.bad)
		}
	}
}
