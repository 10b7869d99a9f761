package usage

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/billing"
)

// sameAsEncodingJSON checks that AppendJSON's document decodes to what encoding/json's
// does.
func sameAsEncodingJSON(t *testing.T, e Event) {
	t.Helper()
	ours := e.AppendJSON(nil)
	if !json.Valid(ours) {
		t.Fatalf("AppendJSON wrote invalid JSON: %s", ours)
	}
	theirs, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var a, b Event
	if err := json.Unmarshal(ours, &a); err != nil {
		t.Fatalf("decode %s: %v", ours, err)
	}
	if err := json.Unmarshal(theirs, &b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) || !a.Time.Equal(b.Time) {
		t.Fatalf("AppendJSON: %s\nencoding/json: %s", ours, theirs)
	}
}

func TestAppendJSON(t *testing.T) {
	sameAsEncodingJSON(t, Event{})
	sameAsEncodingJSON(t, Event{RequestID: "r1", Time: time.Date(2026, 11, 23, 18, 0, 0, 123456789, time.UTC), UserID: 1, KeyID: 2,
		GroupID: 3, AccountID: 4, Provider: "anthropic", Endpoint: "messages", ModelRequested: "claude-sonnet-4-5",
		ModelUpstream: "claude-sonnet-4-5-20250929", Usage: billing.Usage{Input: 10, Output: 20, CacheWrite5m: 1, CacheWrite1h: 2, CacheRead: 3, Reasoning: 4},
		OfficialNano: 99, BilledNano: 100, FactorNum: 11, FactorDen: 10, PriceID: 7, FXRateMicro: 7_100_000, Status: 200,
		Stream: true, TTFBMillis: 5, DurationMillis: 50, ClientIP: "::1", UserAgent: "claude-cli/2.1 (\"quoted\" \\ <tag> & \u2028 \x01 \xff)",
		ErrorClass: "proxy_lost", Attempt: 2, Late: true})
	// Random strings: control characters, quotes, backslashes, invalid UTF-8, multi-byte.
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "Z", "\"", "\\", "\n", "\t", "\x00", "\x1f", "\x7f", "\xff", "\xe2\x82", "é", "€", "😀", "\u2028", "\u2029", "<", "&", " "}
	str := func() string {
		n := rng.IntN(12)
		s := ""
		for range n {
			s += alphabet[rng.IntN(len(alphabet))]
		}
		return s
	}
	for range 5000 {
		sameAsEncodingJSON(t, Event{RequestID: str(), Time: time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).In(time.FixedZone("x", rng.IntN(20)*1800-36000)),
			UserID: rng.Int64() - rng.Int64(), Provider: str(), Endpoint: str(), ModelRequested: str(), ModelUpstream: str(),
			Usage: billing.Usage{Input: rng.Int64(), Reasoning: rng.Int64N(3)}, BilledNano: -rng.Int64(), FXRateMicro: rng.Int64N(2),
			Status: rng.IntN(600), Stream: rng.IntN(2) == 1, ClientIP: str(), UserAgent: str(), ErrorClass: str(), Attempt: rng.IntN(4), Late: rng.IntN(2) == 1})
	}
}

// FuzzAppendJSON: any strings encode to the document encoding/json would make.
func FuzzAppendJSON(f *testing.F) {
	f.Add("r", "ua \"x\"", "\xff\xfe", "\u2028")
	f.Fuzz(func(t *testing.T, rid, ua, model, class string) {
		sameAsEncodingJSON(t, Event{RequestID: rid, UserAgent: ua, ModelRequested: model, ErrorClass: class, Time: time.Unix(1, 2)})
	})
}

func benchEvent() Event {
	return Event{RequestID: "req_nmf6dc7bsl7r2xghkjoy55ugqe", Time: time.Now(), UserID: 1, KeyID: 2, GroupID: 3, AccountID: 4,
		Provider: "anthropic", Endpoint: "messages", ModelRequested: "claude-sonnet-4-5", ModelUpstream: "claude-sonnet-4-5",
		Usage: billing.Usage{Input: 1200, Output: 60, CacheRead: 30000}, OfficialNano: 117000, BilledNano: 117000, FactorNum: 1,
		FactorDen: 1, PriceID: 9, Status: 200, Stream: true, TTFBMillis: 12, DurationMillis: 900, ClientIP: "203.0.113.7",
		UserAgent: "claude-cli/2.1.197 (external, cli)", Attempt: 1}
}

func BenchmarkAppendJSON(b *testing.B) {
	e := benchEvent()
	buf := make([]byte, 0, 640)
	b.ReportAllocs()
	for b.Loop() {
		buf = e.AppendJSON(buf[:0])
	}
}

func BenchmarkMarshalJSON(b *testing.B) {
	e := benchEvent()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(e); err != nil {
			b.Fatal(err)
		}
	}
}
