package relay

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/tollgate/tollgate/internal/billing"
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

func TestMemberValue(t *testing.T) {
	body := []byte(` {"id":"x","content":[{"text":"\"usage\": {\"input_tokens\": 9}"}], "usage" : {"input_tokens":3,"output_tokens":4} }`)
	if v := memberValue(body, "usage"); string(v) != `{"input_tokens":3,"output_tokens":4}` {
		t.Fatalf("usage = %q", v)
	}
	var u struct {
		InputTokens int `json:"input_tokens"`
	}
	if !decodeMember(body, "usage", &u) || u.InputTokens != 3 {
		t.Fatalf("decodeMember = %+v", u)
	}
	for _, bad := range []string{``, `{`, `{"usage"`, `{"usage":`, `{"usage":null}`, `[{"usage":{}}]`, `{"a":1 "usage":{}}`, `{"usage":{"input_tokens":"x"}}`, `{"a":{"usage":{}}}`} {
		if decodeMember([]byte(bad), "usage", &u) {
			t.Errorf("decodeMember(%q) found usage", bad)
		}
	}
}

// FuzzMemberValue checks the member scanner against encoding/json, and that it never
// panics on malformed input (upstream answers are not trusted).
func FuzzMemberValue(f *testing.F) {
	for _, seed := range []string{`{"usage":{"a":1}}`, `{"x":"\"usage\"","usage":[1,{"b":"}"}]}`, `{"usage":null}`, `{"usage":`, `{"a":[}`, `{}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		v := memberValue(body, "usage")
		var m map[string]json.RawMessage
		if json.Unmarshal(body, &m) != nil {
			return // malformed: not panicking is the property
		}
		want, ok := m["usage"]
		if !ok {
			if v != nil {
				t.Fatalf("found usage %q in %q, encoding/json did not", v, body)
			}
			return
		}
		if v == nil {
			if bytes.IndexByte(body, '\\') >= 0 {
				return // possibly an escaped key ("\u0075sage"): not recognised, no upstream writes one
			}
			t.Fatalf("missed usage in %q", body)
		}
		if bytes.Count(body, []byte(`"usage"`)) == 1 && !bytes.Equal(v, want) {
			t.Fatalf("usage = %q, encoding/json: %q", v, want)
		}
	})
}

// FuzzUsageScan checks the Anthropic usage scan against encoding/json.
func FuzzUsageScan(f *testing.F) {
	for _, seed := range []string{`{"input_tokens":3,"output_tokens":4}`, `{"input_tokens":null,"cache_creation":{"ephemeral_5m_input_tokens":7}}`,
		`{"cache_creation_input_tokens":5,"cache_creation":null,"x":[1]}`, `{"output_tokens":1.5}`, `{"input_tokens":1,"input_tokens":2}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, obj []byte) {
		var got anthropicUsage
		ok := got.decode(obj)
		if bytes.IndexByte(obj, '\\') >= 0 || bytes.ContainsFunc(obj, func(r rune) bool { return r >= 'A' && r <= 'Z' }) {
			return // escaped or differently cased keys: encoding/json matches them, the scan does not
		}
		var wantJSON anthropicUsageJSON
		wantOK := len(obj) > 0 && obj[0] == '{' && json.Unmarshal(obj, &wantJSON) == nil
		want := wantJSON.usage()
		if ok != wantOK {
			t.Fatalf("decode(%q) = %v, encoding/json %v", obj, ok, wantOK)
		}
		if !ok {
			return
		}
		var g, w billing.Usage
		got.apply(&g)
		want.apply(&w)
		if g != w {
			t.Fatalf("decode(%q) = %+v, encoding/json %+v", obj, g, w)
		}
	})
}

// An unterminated string ending in a backslash, in a body whose slice has no spare
// capacity, once made the member scan slice past the end.
func TestMemberValueTrailingBackslash(t *testing.T) {
	for _, s := range []string{`{"id":"x\`, `{"usage":"\`, `{"a":{"b":"\`, `{"\`} {
		body := []byte(s)[:len(s):len(s)]
		var u struct{}
		if decodeMember(body, "usage", &u) {
			t.Errorf("decodeMember(%q) found usage", s)
		}
		anthropicBodyUsage(body)
		chatBodyUsage(body)
		responsesBodyUsage(body)
		geminiBodyUsage(body)
	}
}
