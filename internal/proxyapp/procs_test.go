package proxyapp

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// TestAdaptProcs: a nearly idle process narrows to one P after a calm second, widens
// again within an interval or two of using a core, and leaves every P in place when it
// stops. (GOMAXPROCS is the process's: this package has no other test to disturb.)
func TestAdaptProcs(t *testing.T) {
	wide := runtime.GOMAXPROCS(0) // the runtime's default: go test sets no GOMAXPROCS
	if wide < 2 {
		t.Skip("one CPU: nothing to adapt")
	}
	defer runtime.SetDefaultGOMAXPROCS()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		adaptProcs(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), wide, 50*time.Millisecond)
		close(done)
	}()
	waitProcs := func(want int, within time.Duration) {
		t.Helper()
		for deadline := time.Now().Add(within); runtime.GOMAXPROCS(0) != want; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("GOMAXPROCS %d after %s, want %d", runtime.GOMAXPROCS(0), within, want)
			}
		}
	}
	waitProcs(1, 5*time.Second)

	// A goroutine spinning uses the whole of the one P: the process widens.
	var stop atomic.Bool
	spun := make(chan struct{})
	go func() {
		defer close(spun)
		for n := 0; !stop.Load(); n++ {
			if n%1_000_000 == 0 {
				runtime.Gosched() // let the ticker's goroutine run on the single P
			}
		}
	}()
	waitProcs(wide, 2*time.Second)
	stop.Store(true)
	<-spun

	// Calm again, then stopped while narrow: every P comes back.
	waitProcs(1, 5*time.Second)
	cancel()
	<-done
	if n := runtime.GOMAXPROCS(0); n != wide {
		t.Fatalf("GOMAXPROCS %d after the loop stopped, want %d", n, wide)
	}
}
