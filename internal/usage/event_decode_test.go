package usage

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/billing"
)

// sameAsUnmarshal checks that DecodeEvent gives what json.Unmarshal gives for data, into
// a zero event and into one with every field set (which keeps what data does not set).
func sameAsUnmarshal(t *testing.T, data []byte) {
	t.Helper()
	for _, start := range []Event{{}, fullEvent()} {
		got, want := start, start
		gotErr := DecodeEvent(string(data), &got)
		wantErr := json.Unmarshal(data, &want)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("%q: DecodeEvent error %v, json.Unmarshal error %v", data, gotErr, wantErr)
		}
		if wantErr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\nDecodeEvent    %+v\njson.Unmarshal %+v", data, got, want)
		}
	}
}

// decodesFast checks that DecodeEvent reads data itself rather than leaving it to
// encoding/json, and gets what json.Unmarshal does.
func decodesFast(t *testing.T, data []byte) {
	t.Helper()
	var got, want Event
	if !decodeEventFast(string(data), &got) {
		t.Fatalf("DecodeEvent left %s to encoding/json", data)
	}
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\nDecodeEvent    %+v\njson.Unmarshal %+v", data, got, want)
	}
}

// fullEvent has every field set.
func fullEvent() Event {
	return Event{RequestID: "r1", Time: time.Date(2026, 11, 23, 18, 0, 0, 123456789, time.UTC), UserID: 1, KeyID: 2,
		GroupID: 3, AccountID: 4, Provider: "anthropic", Endpoint: "messages", ModelRequested: "claude-sonnet-4-5",
		ModelUpstream: "claude-sonnet-4-5-20250929", Usage: billing.Usage{Input: 10, Output: 20, CacheWrite5m: 1, CacheWrite1h: 2, CacheRead: 3, Reasoning: 4},
		OfficialNano: 99, BilledNano: 100, FactorNum: 11, FactorDen: 10, PriceID: 7, FXRateMicro: 7_100_000, Status: 200,
		Stream: true, TTFBMillis: 5, DurationMillis: 50, ClientIP: "::1", UserAgent: "claude-cli/2.1 (\"quoted\" \\ <tag> & \u2028 \x01 \xff)",
		ErrorClass: "proxy_lost", Attempt: 2, Late: true}
}

// randomEvent has strings of awkward characters (escapes, invalid UTF-8, surrogates
// encoded as UTF-8) and integers of every magnitude and sign.
func randomEvent(rng *rand.Rand) Event {
	alphabet := []string{"a", "Z", "\"", "\\", "/", "\n", "\t", "\b", "\f", "\x00", "\x1f", "\x7f", "\xff", "\xe2\x82", "\xed\xa0\x80",
		"é", "€", "😀", "\u2028", "\u2029", "<", "&", " ", "\ufffd"}
	str := func() string {
		var s strings.Builder
		for range rng.IntN(12) {
			s.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		return s.String()
	}
	n := func() int64 { return rng.Int64N(1<<rng.IntN(63)) * int64(1-2*rng.IntN(2)) }
	zone := time.UTC
	if rng.IntN(2) == 0 {
		zone = time.FixedZone("", (rng.IntN(113)-56)*15*60)
	}
	return Event{
		RequestID:      str(),
		Time:           time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).In(zone),
		UserID:         n(),
		KeyID:          n(),
		GroupID:        n(),
		AccountID:      n(),
		Provider:       str(),
		Endpoint:       str(),
		ModelRequested: str(),
		ModelUpstream:  str(),
		Usage: billing.Usage{Input: n(), Output: n(), CacheWrite5m: n(), CacheWrite1h: n(), CacheRead: n(),
			Reasoning: n() % 3}, // often 0, which AppendJSON omits
		OfficialNano:   n(),
		BilledNano:     n(),
		FactorNum:      n(),
		FactorDen:      n(),
		PriceID:        n(),
		FXRateMicro:    n() % 2, // likewise
		Status:         int(n()),
		Stream:         rng.IntN(2) == 1,
		TTFBMillis:     int(n()),
		DurationMillis: int(n()),
		ClientIP:       str(),
		UserAgent:      str(),
		ErrorClass:     str(),
		Attempt:        int(n()),
		Late:           rng.IntN(2) == 1,
	}
}

// shuffled rewrites a JSON object with its members (and those of objects inside it) in a
// random order, loosely spaced, and with an unknown member of every kind of value.
func shuffled(t *testing.T, rng *rand.Rand, doc []byte) []byte {
	t.Helper()
	var members map[string]json.RawMessage
	if err := json.Unmarshal(doc, &members); err != nil {
		t.Fatal(err)
	}
	members["extra"] = json.RawMessage(`[{"a": [true, false, null]}, -0.5e+10, 0, "\u00e9\ud83d\ude00", {}, []]`)
	keys := make([]string, 0, len(members))
	for k := range members {
		keys = append(keys, k)
	}
	rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	var b bytes.Buffer
	b.WriteString("\n{ ")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" ,\r\n\t")
		}
		v := members[k]
		if v[0] == '{' && k != "extra" {
			v = shuffled(t, rng, v)
		}
		key, _ := json.Marshal(k)
		b.Write(key)
		b.WriteString(" : ")
		b.Write(v)
	}
	b.WriteString(" }\n")
	return b.Bytes()
}

func TestDecodeEvent(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	for range 5000 {
		e := randomEvent(rng)
		ours := e.AppendJSON(nil)
		theirs, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		indented, err := json.MarshalIndent(e, " ", "\t")
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range [][]byte{ours, theirs, indented, shuffled(t, rng, theirs)} {
			decodesFast(t, doc)
			sameAsUnmarshal(t, doc)
		}
	}
}

// TestDecodeEventKnowsEveryField guards against a field added to Event or billing.Usage
// but not to the decoder, which would skip its member as unknown.
func TestDecodeEventKnowsEveryField(t *testing.T) {
	t.Parallel()
	e := fullEvent()
	for _, v := range []reflect.Value{reflect.ValueOf(e), reflect.ValueOf(e.Usage)} {
		for i := range v.NumField() {
			if v.Field(i).IsZero() {
				t.Fatalf("fullEvent leaves %s unset", v.Type().Field(i).Name)
			}
		}
	}
	doc, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	decodesFast(t, doc)

	// encoding/json gives a member to the field whose name its key matches
	// case-insensitively: those are for it to decode.
	for _, typ := range []reflect.Type{reflect.TypeFor[Event](), reflect.TypeFor[billing.Usage]()} {
		for i := range typ.NumField() {
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			for _, key := range []string{strings.ToUpper(name), strings.ToLower(name)} {
				if key == name {
					continue
				}
				doc := `{"` + key + `":1}`
				if typ != reflect.TypeFor[Event]() {
					doc = `{"usage":{"` + key + `":1}}`
				}
				if decodeEventFast(doc, &Event{}) {
					t.Errorf("DecodeEvent skipped %s, which encoding/json decodes into %s", doc, typ.Field(i).Name)
				}
			}
		}
	}
}

// decodeEdgeCases are documents the fast path must read exactly as encoding/json does or
// leave to it.
var decodeEdgeCases = []string{
	``, ` `, `null`, `{}`, `[]`, `"x"`, `1`, `{`, `}`, `{"rid":"a"}x`, `{"rid":"a"}{}`, ` {"rid" : "a" } `,
	`{"rid":"a",}`, `{,"rid":"a"}`, `{"rid" "a"}`, `{"rid":}`, `{"rid":"a" "uid":1}`, `{"rid":'a'}`,
	`{"rid":null,"t":null,"uid":null,"usage":null,"stream":null,"status":null}`,
	`{"rid":1}`, `{"rid":true}`, `{"rid":["a"]}`, `{"rid":{}}`, `{"uid":"1"}`, `{"stream":1}`, `{"stream":"true"}`,
	`{"usage":[]}`, `{"usage":"x"}`, `{"usage":1}`, `{"t":1}`, `{"t":{}}`, `{"t":[]}`, `{"t":true}`,
	`{"uid":-0}`, `{"uid":01}`, `{"uid":-}`, `{"uid":1.0}`, `{"uid":1e3}`, `{"uid":1E+0}`, `{"uid":.5}`, `{"uid":+1}`,
	`{"uid":9223372036854775807}`, `{"uid":9223372036854775808}`, `{"uid":-9223372036854775808}`, `{"uid":-9223372036854775809}`,
	`{"status":9223372036854775807}`, `{"uid":00}`, `{"uid":0x1}`, `{"uid":1_000}`, `{"uid":Infinity}`, `{"uid":NaN}`,
	`{"stream":true}`, `{"stream":false}`, `{"stream":tru}`, `{"stream":truefalse}`, `{"stream":nul}`, `{"rid":nullx}`,
	`{"t":"2026-01-02T03:04:05Z"}`, `{"t":"2026-01-02T03:04:05.123456789+05:30"}`, `{"t":"2026-01-02T03:04:05-00:00"}`,
	`{"t":"2026-01-02t03:04:05z"}`, `{"t":"2026-01-02T3:04:05Z"}`, `{"t":"2026-01-02T03:04:05,5Z"}`, `{"t":"2026-01-02T03:04:05+24:00"}`,
	`{"t":"2026-01-02T03:04:05+05:60"}`, `{"t":"2026-01-02T03:04:05"}`, `{"t":"2026-02-30T03:04:05Z"}`, `{"t":"0000-01-01T00:00:00Z"}`,
	`{"t":"2026-01-02T03:04:05.Z"}`, `{"t":"bad"}`, `{"t":""}`, `{"t":"\u0032026-01-02T03:04:05Z"}`, `{"t":"2026-01-02T03:04:05Z\n"}`,
	"{\"t\":\"2026-01-02T03:04:05Z\x00\"}", "{\"t\":\"2026-01-02T03:04:05\xffZ\"}",
	`{"rid":"\"\\\/\b\f\n\r\t"}`, `{"rid":"\u0000\u001f\u007f\u00e9\u20ac\uFFFD"}`, `{"rid":"\ud83d\ude00"}`, `{"rid":"\ud83d"}`,
	`{"rid":"\ud83dx"}`, `{"rid":"\ud83d\u0041"}`, `{"rid":"\ude00\ud83d"}`, `{"rid":"\ud83d\ud83d\ude00"}`, `{"rid":"\ud83d\u"}`,
	`{"rid":"\u12"}`, `{"rid":"\u12g4"}`, `{"rid":"\x"}`, `{"rid":"\'"}`, `{"rid":"\"}`, `{"rid":"a`, "{\"rid\":\"a\x01\"}",
	"{\"rid\":\"\xff\xfe\xed\xa0\x80\xe2\x82\"}", "{\"rid\":\"\xe2\x82\\n\"}", "{\"rid\":\"é😀\"}", "{\"rid\":\"a\x7f\"}",
	`{"RID":"a"}`, `{"Rid":"a"}`, `{"ri\u0064":"a"}`, `{"\u0072id":"a"}`, `{"ſtatus":1}`, `{"\u212aid":1}`, "{\"\u212aid\":1}",
	`{"usage":{"INPUT":1}}`, `{"usage":{"ınput":1}}`, `{"usage":{"input":1,"input":2}}`, `{"usage":{"input":1},"usage":{"output":2}}`,
	`{"usage":{"input":1},"usage":null}`, `{"rid":"a","rid":"b"}`, `{"rid":"a","rid":null}`, `{"t":"2026-01-02T03:04:05Z","t":null}`,
	`{"x":1,"y":"s","z":[1,[2,{"a":{"b":[]}}]],"w":{"rid":"no"},"v":true,"u":null}`, `{"x":[1,]}`, `{"x":[,1]}`, `{"x":[1 2]}`,
	`{"x":{"a" 1}}`, `{"x":-}`, `{"x":1.}`, `{"x":1e}`, `{"x":1e+}`, `{"x":-01}`, `{"x":0.5E-3}`, `{"x":"\u00"}`,
	`{"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`,
	`{"x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`,
	"\ufeff{}", "{\"rid\":\"a\"}\x00", "\t\r\n{\t\r\n}\t\r\n", "{\"rid\":\"a\"\f}", "{\"rid\":\"a\"\u00a0}",
}

// FuzzDecodeEvent: for any input, DecodeEvent errs exactly when json.Unmarshal does and
// otherwise decodes the same event.
func FuzzDecodeEvent(f *testing.F) {
	for _, doc := range decodeEdgeCases {
		f.Add([]byte(doc))
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 20 {
		e := randomEvent(rng)
		theirs, err := json.Marshal(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(e.AppendJSON(nil))
		f.Add(theirs)
	}
	full := fullEvent()
	f.Add(full.AppendJSON(nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		sameAsUnmarshal(t, data)
	})
}

func BenchmarkDecodeEvent(b *testing.B) {
	e := benchEvent()
	raw := string(e.AppendJSON(nil))
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var e Event
			if err := DecodeEvent(raw, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
	// As decodeEntry did before DecodeEvent: the stream entry is a string.
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var e Event
			if err := json.Unmarshal([]byte(raw), &e); err != nil {
				b.Fatal(err)
			}
		}
	})
}
