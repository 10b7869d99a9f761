package limit

import (
	"context"
	"errors"
	"sync"

	"github.com/redis/go-redis/v9"
)

// batcher sends the script calls that are waiting at the same moment in one pipelined
// round trip — group commit for the hot path. A call that finds a lane free is sent at
// once from its own goroutine, taking along whatever is queued: when the proxy is quiet
// nothing waits and nothing is handed to another goroutine. Calls arriving while every
// lane is busy queue up and leave together with the next free lane. Under load this
// turns the two round trips per request into two per batch: one write and one read for
// the proxy, one read and one write for Redis, for many requests. The scripts still run
// one by one inside Redis, each atomic, so batching changes nothing about what they
// decide.
type batcher struct {
	rdb redis.UniversalClient
	// lost is called when a round trip fails, or Redis answers NOSCRIPT (it restarted or
	// was flushed): what the scripts wrote may be gone (the reservations' leases, for one).
	lost func()

	mu    sync.Mutex
	free  int // lanes not sending
	queue []*scriptCall
}

// maxBatch bounds one pipeline, so one batch's reply is not held up by a huge one.
const maxBatch = 256

type scriptCall struct {
	script *script
	args   []any // the whole EVALSHA command (evalArgs)
	cmd    *redis.Cmd
	done   chan struct{} // closed when cmd holds the reply (queued calls only)
	// then is a call that must run right after this one, in the same pipeline (a
	// completion's reservation of the next admission: it must see the completion's debit).
	then *scriptCall
	// noscript: Redis did not know the script and the call was sent again after loading
	// it, so it may have run out of order with the calls around it.
	noscript bool
}

func newBatcher(rdb redis.UniversalClient, lanes int) *batcher {
	return &batcher{rdb: rdb, free: max(lanes, 1)}
}

// run runs the EVALSHA command args of script and returns its reply. It waits for the reply even
// if the request's context ends: a script that ran must not be forgotten (its leases
// would leak until they expire), and the pipeline is bounded by the client's read and
// write timeouts.
func (b *batcher) run(s *script, args []any) *redis.Cmd {
	c := &scriptCall{script: s, args: args}
	b.do(c)
	return c.cmd
}

// do runs c (and c.then) and returns when their replies are in.
func (b *batcher) do(c *scriptCall) {
	b.mu.Lock()
	if b.free > 0 {
		// Lead: send this call and everything queued, on this goroutine.
		b.free--
		batch := b.take(c)
		b.mu.Unlock()
		b.send(batch)
		b.mu.Lock()
		if len(b.queue) > 0 {
			// Calls queued meanwhile: a lane goroutine carries on, so this caller returns.
			b.mu.Unlock()
			go b.lane()
		} else {
			b.free++
			b.mu.Unlock()
		}
		return
	}
	c.done = make(chan struct{})
	b.queue = append(b.queue, c)
	b.mu.Unlock()
	<-c.done
}

// take returns first (if any) followed by up to maxBatch queued calls. b.mu is held.
func (b *batcher) take(first *scriptCall) []*scriptCall {
	n := min(len(b.queue), maxBatch)
	batch := make([]*scriptCall, 0, n+1)
	if first != nil {
		batch = append(batch, first)
	}
	batch = append(batch, b.queue[:n]...)
	if n == len(b.queue) {
		clear(b.queue)
		b.queue = b.queue[:0]
	} else {
		b.queue = append([]*scriptCall(nil), b.queue[n:]...)
	}
	return batch
}

// lane sends queued calls until the queue is empty, then frees its lane.
func (b *batcher) lane() {
	for {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.free++
			b.mu.Unlock()
			return
		}
		batch := b.take(nil)
		b.mu.Unlock()
		b.send(batch)
	}
}

// send runs the batch and wakes the calls that wait for it.
func (b *batcher) send(batch []*scriptCall) {
	b.exec(batch)
	for _, c := range batch {
		if c.done != nil {
			close(c.done)
		}
	}
}

// exec pipelines the batch with EVALSHA; scripts Redis does not know (after a restart or
// SCRIPT FLUSH) are loaded and their calls sent again, once.
func (b *batcher) exec(batch []*scriptCall) {
	ctx := context.Background()
	pipe := b.rdb.Pipeline()
	for _, c := range batch {
		for ; c != nil; c = c.then {
			c.cmd = pipe.Do(ctx, c.args...)
		}
	}
	var replyErr redis.Error
	if _, err := pipe.Exec(ctx); err != nil && !errors.As(err, &replyErr) && b.lost != nil {
		b.lost() // not a script's own error: the round trip failed (or Breaker refused it)
	}
	var retry []*scriptCall
	for _, c := range batch {
		for ; c != nil; c = c.then {
			if err := c.cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
				retry = append(retry, c)
			}
		}
	}
	if len(retry) == 0 {
		return
	}
	if b.lost != nil {
		b.lost()
	}
	loaded := map[*script]error{}
	pipe = b.rdb.Pipeline()
	for _, c := range retry {
		c.noscript = true
		if _, ok := loaded[c.script]; !ok {
			loaded[c.script] = c.script.Load(ctx, b.rdb).Err()
		}
		if loaded[c.script] == nil {
			c.cmd = pipe.Do(ctx, c.args...)
		}
	}
	if pipe.Len() > 0 {
		pipe.Exec(ctx) //nolint:errcheck
	}
}
