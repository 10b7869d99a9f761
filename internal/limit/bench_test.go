package limit

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/redisinfo"
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
// latency of the Redis side of the hot path; a round trip each). redis-µs/op is the
// time Redis spent in the scripts (INFO commandstats), which, unlike the round trip, is
// CPU taken from everything else on the machine. "limits" has a user and a key
// concurrency limit, two accounts and a sticky session (close to what `make bench` runs,
// which also sets an RPM limit and caps); "plain" is a key without limits and one
// account.
func BenchmarkAdmitComplete(b *testing.B) {
	b.Run("limits", func(b *testing.B) {
		g, req, stream := benchGate(b)
		benchAdmitComplete(b, g, req, stream)
	})
	b.Run("plain", func(b *testing.B) {
		g, req, stream := benchGate(b)
		req.UserConcurrency, req.KeyConcurrency, req.Session = 0, 0, ""
		req.Candidates = req.Candidates[:1]
		benchAdmitComplete(b, g, req, stream)
	})
}

func benchAdmitComplete(b *testing.B, g *Gate, req Request, stream string) {
	ctx := context.Background()
	before := scriptMicros(b, g.rdb)
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
	b.ReportMetric((scriptMicros(b, g.rdb)-before)/float64(b.N), "redis-µs/op")
}

// scriptMicros is the total time Redis has spent in EVALSHA since its stats were reset.
func scriptMicros(b *testing.B, rdb redis.UniversalClient) float64 {
	stats, err := redisinfo.Commands(context.Background(), rdb)
	if err != nil {
		b.Fatal(err)
	}
	return stats["evalsha"].Usec
}

// redisCPU is Redis's own CPU time in seconds (redisinfo.CPU).
func redisCPU(b *testing.B, rdb redis.UniversalClient) float64 {
	s, err := redisinfo.CPU(context.Background(), rdb)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkAdmitCompleteParallel: the same from 64 goroutines at once, as under load;
// calls waiting at the same moment share pipelines (batch.go). redis-cpu-µs/op is all of
// Redis's CPU per admission + completion (see redisCPU), shared with other clients of
// the test Redis if there are any.
func BenchmarkAdmitCompleteParallel(b *testing.B) {
	g, req, stream := benchGate(b)
	ctx := context.Background()
	var n atomic.Int64
	before := redisCPU(b, g.rdb)
	defer func() { b.ReportMetric((redisCPU(b, g.rdb)-before)*1e6/float64(b.N), "redis-cpu-µs/op") }()
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
