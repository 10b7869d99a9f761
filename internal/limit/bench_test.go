package limit

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/tollgate/tollgate/internal/testenv"
)

// benchGate is a gate on the test Redis with a user and key limit, two accounts, and a
// balance that never runs out.
func benchGate(b *testing.B) (*Gate, Request, string) {
	rdb, prefix := testenv.Redis(b)
	g := NewGate(rdb, prefix, func(context.Context, int64) (int64, error) { return 1 << 60, nil }, nil, Options{})
	req := Request{UserID: 1, KeyID: 1, UserConcurrency: 1 << 20, KeyConcurrency: 1 << 20, KeyRPM: 0, Session: "1:s",
		Candidates: []Candidate{{ID: 1, Priority: 1, Weight: 1}, {ID: 2, Priority: 1, Weight: 1}}}
	return g, req, prefix + "usage"
}

var benchEvent = []byte(`{"rid":"r","uid":1,"kid":1,"usage":{"input":12,"output":6},"billed":117000}`)

// BenchmarkAdmitComplete: one request's two script calls, one after the other (the
// latency of the Redis side of the hot path; a round trip each).
func BenchmarkAdmitComplete(b *testing.B) {
	g, req, stream := benchGate(b)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		req.RequestID = "r" + strconv.Itoa(i)
		l, err := g.Admit(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		if err := g.Complete(ctx, l, stream, benchEvent, 117000); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAdmitCompleteParallel: the same from 64 goroutines at once, as under load;
// calls waiting at the same moment share pipelines (batch.go).
func BenchmarkAdmitCompleteParallel(b *testing.B) {
	g, req, stream := benchGate(b)
	ctx := context.Background()
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(32) // × GOMAXPROCS goroutines
	b.RunParallel(func(pb *testing.PB) {
		r := req
		for pb.Next() {
			r.RequestID = "r" + strconv.FormatInt(n.Add(1), 10)
			l, err := g.Admit(ctx, r)
			if err != nil {
				b.Error(err)
				return
			}
			if err := g.Complete(ctx, l, stream, benchEvent, 117000); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
