package usage

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

func TestSpoolWritesAndReplays(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	sp, err := NewSpool(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"req_a", "req_b"} {
		if err := sp.Write(Event{RequestID: id, BilledNano: 7}); err != nil {
			t.Fatal(err)
		}
	}
	// Another process (a second spool on the same directory) cannot take a live file.
	other, _ := NewSpool(dir, log)
	var got []Event
	take := func(_ context.Context, evs []Event) error { got = append(got, evs...); return nil }
	if err := other.Replay(context.Background(), take); err != nil || len(got) != 0 {
		t.Fatalf("a live spool file was replayed by another process: %v %v", got, err)
	}
	// Delivery failing keeps the file.
	if err := sp.Replay(context.Background(), func(context.Context, []Event) error { return errors.New("down") }); err == nil {
		t.Fatal("a failed delivery reported success")
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl")); len(files) != 1 {
		t.Fatalf("files after a failed delivery: %v", files)
	}
	if err := sp.Replay(context.Background(), take); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].RequestID != "req_a" || got[1].BilledNano != 7 {
		t.Fatalf("replayed %+v", got)
	}
	if files, _ := os.ReadDir(dir); len(files) != 0 {
		t.Fatalf("spool not emptied: %v", files)
	}
}
