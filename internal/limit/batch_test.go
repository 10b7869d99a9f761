package limit

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/testenv"
)

// pipelineCounter counts round trips (pipelines and single commands).
type pipelineCounter struct{ n atomic.Int64 }

func (p *pipelineCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (p *pipelineCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { p.n.Add(1); return next(ctx, cmd) }
}
func (p *pipelineCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { p.n.Add(1); return next(ctx, cmds) }
}

// TestBatcher: calls made at the same moment share round trips, each gets its own reply,
// and scripts Redis forgot (SCRIPT FLUSH, a restart) are loaded again transparently.
func TestBatcher(t *testing.T) {
	srv := testenv.RedisServer(t) // private: SCRIPT FLUSH must not disturb other tests
	opts, err := redis.ParseURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	trips := &pipelineCounter{}
	rdb.AddHook(trips)
	echo := newScript(`return redis.call('INCRBY', KEYS[1], ARGV[1])`)
	b := newBatcher(rdb, 2)

	const calls = 500
	var wg sync.WaitGroup
	start := make(chan struct{})
	got := make([]int64, calls)
	for i := range calls {
		wg.Go(func() {
			<-start
			v, err := b.run(echo, append(evalArgs(echo, 1, 1), fmt.Sprintf("k%d", i), i+1)).Int64()
			if err != nil {
				t.Error(err)
			}
			got[i] = v
		})
	}
	close(start)
	wg.Wait()
	for i, v := range got {
		if v != int64(i+1) {
			t.Fatalf("call %d got reply %d, want %d", i, v, i+1)
		}
	}
	// The first batch meets NOSCRIPT, loads the script and sends itself again; the rest
	// share pipelines. One round trip per call would be 500.
	if n := trips.n.Load(); n > calls/2 {
		t.Fatalf("%d round trips for %d concurrent calls: not batched", n, calls)
	}
	t.Logf("%d round trips for %d concurrent calls", trips.n.Load(), calls)

	if err := rdb.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := b.run(echo, append(evalArgs(echo, 1, 1), "k0", 10)).Int64(); err != nil || v != 11 {
		t.Fatalf("after SCRIPT FLUSH: %d, %v; want 11", v, err)
	}
}
