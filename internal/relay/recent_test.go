package relay

import (
	"fmt"
	"testing"
)

// TestRecentEventsAge: an event stays in the keep for recentGenerations-1 agings and
// leaves at the next; take empties it.
func TestRecentEventsAge(t *testing.T) {
	var r recentEvents
	r.add([]byte("a"))
	for i := range recentGenerations - 1 {
		r.age()
		r.add([]byte(fmt.Sprint(i)))
	}
	if got := r.take(); len(got) != recentGenerations || string(got[len(got)-1]) != "a" {
		t.Fatalf("after %d agings: %q", recentGenerations-1, got)
	}
	if got := r.take(); len(got) != 0 {
		t.Fatalf("take left %q", got)
	}
	r.add([]byte("b"))
	for range recentGenerations {
		r.age()
	}
	if got := r.take(); len(got) != 0 {
		t.Fatalf("after %d agings the keep still holds %q", recentGenerations, got)
	}
}

// TestRecentEventsBounded: past recentMax events the oldest generation goes, and a keep
// turned off keeps nothing.
func TestRecentEventsBounded(t *testing.T) {
	var r recentEvents
	for range recentMax / 2 {
		r.add(nil)
	}
	r.age()
	for range recentMax/2 + 1 {
		r.add(nil)
	}
	if got := len(r.take()); got != recentMax/2+1 {
		t.Fatalf("kept %d events past the bound, want %d (the older generation gone)", got, recentMax/2+1)
	}
	r.off.Store(true)
	r.add(nil)
	if got := len(r.take()); got != 0 {
		t.Fatalf("a keep turned off kept %d", got)
	}
}
