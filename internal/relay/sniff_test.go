package relay

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

func TestSniff(t *testing.T) {
	body := []byte(` { "messages":[{"role":"user","content":"a \"model\": \"x\" }"}], "metadata":{"user_id":"u{1}"},
		"model" : "claude-sonnet-4-5", "stream":true, "extra":{"model":"nested"} }`)
	s, err := sniff(body)
	if err != nil {
		t.Fatal(err)
	}
	if s.Model != "claude-sonnet-4-5" || !s.Stream || string(s.Metadata) != `{"user_id":"u{1}"}` {
		t.Fatalf("sniff = %+v", s)
	}
	mapped := s.withModel(body, "claude-opus-4-1")
	var v map[string]any
	if err := json.Unmarshal(mapped, &v); err != nil || v["model"] != "claude-opus-4-1" || v["extra"].(map[string]any)["model"] != "nested" {
		t.Fatalf("withModel = %s (%v)", mapped, err)
	}

	for _, bad := range []string{``, `{`, `[1]`, `{"model":1}`, `{"model":"a",}`, "\xff"} {
		if _, err := sniff([]byte(bad)); err == nil {
			t.Errorf("sniff(%q) accepted", bad)
		}
	}
	if s, err := sniff([]byte(`{"stream":false,"model":"m\u00e9"}`)); err != nil || s.Stream || s.Model != "mé" {
		t.Fatalf("escaped model: %+v, %v", s, err)
	}
}

// FuzzSniff checks the one-pass scanner against encoding/json on arbitrary input.
func FuzzSniff(f *testing.F) {
	for _, seed := range []string{`{"model":"a","stream":true}`, `{"x":[{"y":"}"}],"model":"b"}`, `{}`, `{"model":"\"q\""}`, `{"stream":1}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := sniff(body)
		if !utf8.Valid(body) {
			// Refused outright (encoding/json would decode it with replacement characters).
			if err == nil {
				t.Fatalf("sniff accepted invalid UTF-8 %q", body)
			}
			return
		}
		// Keys are matched exactly, as the providers do (encoding/json's struct decoding
		// would fold case), so the reference is a map lookup.
		var obj map[string]json.RawMessage
		refErr := json.Unmarshal(body, &obj)
		if refErr != nil {
			if err == nil {
				t.Fatalf("sniff accepted invalid JSON %q", body)
			}
			return
		}
		var refModel string
		if json.Unmarshal(obj["model"], &refModel) == nil && len(obj["model"]) > 0 && obj["model"][0] == '"' {
			m := refModel
			if err != nil || s.Model != m {
				t.Fatalf("model: sniff %q, %v; json %q", s.Model, err, m)
			}
			if got := s.withModel(body, "zz"); !json.Valid(got) {
				t.Fatalf("withModel produced invalid JSON from %q", body)
			}
		}
		if err == nil && s.Stream != (string(obj["stream"]) == "true") {
			t.Fatalf("stream: sniff %v, json %s", s.Stream, obj["stream"])
		}
	})
}
