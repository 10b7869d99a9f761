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
// stops; on a single CPU the loop ends at once and changes nothing. (GOMAXPROCS is the
// process's: this package has no other test to disturb.)
func TestAdaptProcs(t *testing.T) {
	wide := runtime.GOMAXPROCS(0) // the runtime's default: go test sets no GOMAXPROCS
	defer runtime.SetDefaultGOMAXPROCS()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		adaptProcs(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), 50*time.Millisecond)
		close(done)
	}()
	if wide < 2 {
		// CI and the bench machine have two CPUs and take the path below.
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("on a single CPU the loop kept running")
		}
		if n := runtime.GOMAXPROCS(0); n != wide {
			t.Fatalf("on a single CPU GOMAXPROCS became %d", n)
		}
		return
	}
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
