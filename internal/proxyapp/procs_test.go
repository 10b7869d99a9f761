package proxyapp

import (
	"testing"
	"time"
)

// TestProcsController: the proxy runs on one processor while it uses little CPU, takes
// all of them once it uses more than half a core, and goes back to one only when it uses
// under a fifth of a core (no flapping in between).
func TestProcsController(t *testing.T) {
	start := time.Unix(0, 0)
	c := &procsController{max: 4, cur: 1, lastAt: start}
	var cpu time.Duration
	now := start
	step := func(cores float64) int {
		now = now.Add(procsEvery)
		cpu += time.Duration(cores * float64(procsEvery))
		return c.next(cpu, now)
	}
	for i, tc := range []struct {
		cores float64
		want  int
	}{
		{0.05, 1}, // 200 requests a second
		{0.4, 1},  // busier, still under the threshold
		{0.9, 4},  // a burst: all processors
		{1.7, 4},
		{0.3, 4}, // between the thresholds: stays
		{0.25, 4},
		{0.1, 1}, // quiet again
		{0.45, 1},
		{0.6, 4},
	} {
		if got := step(tc.cores); got != tc.want {
			t.Fatalf("step %d at %.2f cores: %d processors, want %d", i, tc.cores, got, tc.want)
		}
	}
	// A clock that did not move changes nothing.
	if got := c.next(cpu+time.Second, now); got != 4 {
		t.Fatalf("no elapsed time: %d processors, want 4", got)
	}
}
