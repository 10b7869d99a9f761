package relay

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestValidJSON(t *testing.T) {
	cases := []string{
		``, ` `, `{}`, `[]`, `[ ]`, `{ }`, `{"a":1}`, `{"a":1,}`, `[1,]`, `[,1]`, `{,}`, `{"a"}`, `{"a":}`, `{1:2}`,
		`"x"`, `"\u00e9\n\"\\\/\b\f\r\t"`, `"\u00g9"`, `"\x"`, "\"\x01\"", "\"\xff\"", `"abc`, `"\`, `"\u12`,
		`0`, `-0`, `01`, `-`, `1.`, `1.5`, `.5`, `1e5`, `1E+5`, `1e-5`, `1e`, `1e+`, `-1.5e10`, `2x`,
		`true`, `false`, `null`, `tru`, `nul`, `truex`, `true false`, `[true,false,null]`,
		`{"a":[1,{"b":[]},"c"],"d":{"e":null}}`, `{"a":1}}`, `[[]`, `[]]`, `{"a":1]`, `[1}`,
		" \t\r\n{\"a\" : [ 1 , 2 ] }\n ", strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
		strings.Repeat("[", 10001) + strings.Repeat("]", 10001), strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000),
	}
	for _, c := range cases {
		if got, want := validJSON([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("validJSON(%.40q) = %v, encoding/json %v", c, got, want)
		}
	}
	if !validJSON(claudeCodeBody()) {
		t.Error("the Claude Code body is not valid")
	}
}

// FuzzValidJSON: validJSON decides as encoding/json.Valid on any input.
func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5e-3,"x\"y",true,null,{}]}`, `[`, `"\u00e9"`, `-0.0E+1`, `{"a":1,}`, "\"\x1f\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, encoding/json %v", b, got, want)
		}
	})
}

func BenchmarkValidJSON(b *testing.B) {
	body := claudeCodeBody()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if !validJSON(body) {
			b.Fatal("invalid")
		}
	}
}
