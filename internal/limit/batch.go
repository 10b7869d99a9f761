package limit

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// batcher sends the script calls that are waiting at the same moment in one pipelined
// round trip — group commit for the hot path. A call that finds a lane idle goes out at
// once (no added latency when the proxy is quiet); calls arriving while every lane is
// busy queue up and leave together with the next free lane. Under load this turns the
// two round trips per request into two per batch: one write and one read for the proxy,
// one read and one write for Redis, for many requests. The scripts still run one by one
// inside Redis, each atomic, so batching changes nothing about what they decide.
//
// The lanes are long-lived goroutines started with the first call; they live as long as
// the process (a Gate is made once per process).
type batcher struct {
	rdb   redis.UniversalClient
	lanes int // pipelines in flight at most
	calls chan *scriptCall
	start sync.Once
}

// maxBatch bounds one pipeline, so one batch's reply is not held up by a huge one.
const maxBatch = 256

type scriptCall struct {
	script *redis.Script
	keys   []string
	args   []any
	cmd    *redis.Cmd
	done   chan struct{}
}

func newBatcher(rdb redis.UniversalClient, lanes int) *batcher {
	return &batcher{rdb: rdb, lanes: max(lanes, 1), calls: make(chan *scriptCall, 4*maxBatch)}
}

// run runs script with keys and args and returns its reply. It waits for the reply even
// if the request's context ends: a script that ran must not be forgotten (its leases
// would leak until they expire), and the pipeline is bounded by the client's read and
// write timeouts.
func (b *batcher) run(script *redis.Script, keys []string, args ...any) *redis.Cmd {
	b.start.Do(func() {
		for range b.lanes {
			go b.lane()
		}
	})
	c := &scriptCall{script: script, keys: keys, args: args, done: make(chan struct{})}
	b.calls <- c
	<-c.done
	return c.cmd
}

// lane takes a call, and every call queued behind it, and sends them together.
func (b *batcher) lane() {
	batch := make([]*scriptCall, 0, maxBatch)
	for c := range b.calls {
		batch = append(batch[:0], c)
	more:
		for len(batch) < maxBatch {
			select {
			case c := <-b.calls:
				batch = append(batch, c)
			default:
				break more
			}
		}
		b.exec(batch)
		for i, c := range batch {
			close(c.done)
			batch[i] = nil
		}
	}
}

// exec pipelines the batch with EVALSHA; scripts Redis does not know (after a restart or
// SCRIPT FLUSH) are loaded and their calls sent again, once.
func (b *batcher) exec(batch []*scriptCall) {
	ctx := context.Background()
	pipe := b.rdb.Pipeline()
	for _, c := range batch {
		c.cmd = pipe.EvalSha(ctx, c.script.Hash(), c.keys, c.args...)
	}
	pipe.Exec(ctx) //nolint:errcheck // every command carries its own error
	var retry []*scriptCall
	for _, c := range batch {
		if err := c.cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			retry = append(retry, c)
		}
	}
	if len(retry) == 0 {
		return
	}
	loaded := map[*redis.Script]error{}
	pipe = b.rdb.Pipeline()
	for _, c := range retry {
		if _, ok := loaded[c.script]; !ok {
			loaded[c.script] = c.script.Load(ctx, b.rdb).Err()
		}
		if loaded[c.script] == nil {
			c.cmd = pipe.EvalSha(ctx, c.script.Hash(), c.keys, c.args...)
		}
	}
	if pipe.Len() > 0 {
		pipe.Exec(ctx) //nolint:errcheck
	}
}
