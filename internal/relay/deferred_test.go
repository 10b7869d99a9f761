package relay

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestSettleWaitsForAStartedCompletion: the same user's next admission waits for a
// deferred completion whose timer has already started it, runs one not started yet —
// one registered while its answer is being flushed, its delay not armed — and leaves
// other users' alone.
func TestSettleWaitsForAStartedCompletion(t *testing.T) {
	s := &Server{}
	started, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	s.deferCompletion(1, func() {
		close(started)
		<-release
		finished.Store(true)
	})()
	select {
	case <-started: // the timer ran it
	case <-time.After(5 * time.Second):
		t.Fatal("the deferred completion did not start after lightCompletionDelay")
	}
	// Another user's completion, and one of user 1 registered but not armed (its answer
	// still being flushed).
	var other, second atomic.Bool
	s.deferCompletion(2, func() { other.Store(true) })()
	s.deferCompletion(1, func() { second.Store(true) })

	settled := make(chan struct{})
	go func() {
		s.settleDeferred(1)
		close(settled)
	}()
	select {
	case <-settled:
		t.Fatal("settleDeferred returned while user 1's started completion was still running")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	select {
	case <-settled:
	case <-time.After(5 * time.Second):
		t.Fatal("settleDeferred did not return once the completion finished")
	}
	if !finished.Load() || !second.Load() {
		t.Fatalf("after settling user 1: started one finished %v, queued one ran %v", finished.Load(), second.Load())
	}
	for deadline := time.Now().Add(5 * time.Second); s.deferredN.Load() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d deferred completions left", s.deferredN.Load())
		}
	}
	if !other.Load() {
		t.Fatal("user 2's completion never ran")
	}
}
