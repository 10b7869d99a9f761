package usage

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func journalEvent(i int) Event {
	return Event{RequestID: "req_" + strconv.Itoa(i), Time: time.Unix(1_700_000_000, 0).UTC(), UserID: 7, KeyID: 3,
		GroupID: 1, AccountID: 2, Provider: "anthropic", Endpoint: "messages", ModelRequested: "claude-x",
		ModelUpstream: "claude-x", BilledNano: int64(1000 + i), OfficialNano: int64(1000 + i), FactorNum: 1, FactorDen: 1,
		PriceID: 4, Status: 200, ClientIP: "127.0.0.1", UserAgent: "test"}
}

// die drops what a dead process would: its mapping and file, and with them the lock
// (a mapping holds the file open, so closing the file alone keeps the lock).
func die(j *Journal) {
	syscall.Munmap(j.mem)
	j.f.Close()
}

func encoded(i int) []byte {
	ev := journalEvent(i)
	return ev.AppendJSON(nil)
}

// replayed returns the request ids ReplayJournals delivers from dir for tag.
func replayed(t *testing.T, dir, tag string) []string {
	t.Helper()
	var ids []string
	_, err := ReplayJournals(context.Background(), dir, tag, func(_ context.Context, evs []Event) error {
		for _, e := range evs {
			ids = append(ids, e.RequestID)
		}
		return nil
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	return ids
}

func TestJournalKeepsPendingEventsForTheNextProcess(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, "tagA", 64)
	if err != nil {
		t.Fatal(err)
	}
	slots := make([]int32, 4)
	for i := range slots {
		if slots[i] = j.Put(encoded(i)); slots[i] < 0 {
			t.Fatalf("event %d not journaled", i)
		}
	}
	j.Done(slots[1])
	j.Done(-1) // not journaled: ignored

	// A living process's journal is not replayed.
	if got := replayed(t, dir, "tagA"); len(got) != 0 {
		t.Fatalf("a live journal was replayed: %v", got)
	}
	// The process is gone (its lock with it): the pending events are delivered, decoded
	// as they were put, and the file goes.
	die(j)
	if got := replayed(t, dir, "tagB"); len(got) != 0 {
		t.Fatalf("another installation's journal was replayed: %v", got)
	}
	var evs []Event
	n, err := ReplayJournals(context.Background(), dir, "tagA", func(_ context.Context, got []Event) error {
		evs = append(evs, got...)
		return nil
	}, slog.New(slog.DiscardHandler))
	if err != nil || n != 3 {
		t.Fatalf("replayed %d events (%v), want 3", n, err)
	}
	slices.SortFunc(evs, func(a, b Event) int { return strings.Compare(a.RequestID, b.RequestID) })
	for k, i := range []int{0, 2, 3} {
		if want := journalEvent(i); evs[k] != want {
			t.Fatalf("replayed %+v, want %+v", evs[k], want)
		}
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*")); len(files) != 0 {
		t.Fatalf("files left after the replay: %v", files)
	}
}

// A stream's checkpoint and its final event both pending: the later one is delivered.
func TestJournalReplayKeepsTheLaterEventOfARequest(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, "t", 8)
	if err != nil {
		t.Fatal(err)
	}
	final := journalEvent(1)
	final.Time, final.BilledNano = final.Time.Add(time.Second), 5000
	checkpoint := journalEvent(1)
	checkpoint.ErrorClass = "proxy_lost"
	j.Put(final.AppendJSON(nil)) // the lower slot: replayed first
	j.Put(checkpoint.AppendJSON(nil))
	die(j)
	var got []Event
	if _, err := ReplayJournals(context.Background(), dir, "t", func(_ context.Context, evs []Event) error {
		got = append(got, evs...)
		return nil
	}, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != final {
		t.Fatalf("replayed %+v, want only the final event", got)
	}
}

func TestJournalReplayKeepsTheFileWhenDeliveryFails(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, "t", 8)
	if err != nil {
		t.Fatal(err)
	}
	j.Put(encoded(1))
	die(j)
	_, err = ReplayJournals(context.Background(), dir, "t", func(context.Context, []Event) error { return errors.New("down") }, slog.New(slog.DiscardHandler))
	if err == nil {
		t.Fatal("a failed delivery reported success")
	}
	if got := replayed(t, dir, "t"); !slices.Equal(got, []string{"req_1"}) {
		t.Fatalf("after a failed delivery the next replay got %v", got)
	}
}

func TestJournalIgnoresTornAndForeignRecords(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, "t", 8)
	if err != nil {
		t.Fatal(err)
	}
	a := j.Put(encoded(1))
	b := j.Put(encoded(2))
	j.Put(encoded(3))
	j.state(uint32(a)).Store(slotWriting) // its writer died mid-copy
	j.mem[int(b)*journalSlotSize+journalHeader+5] ^= 0xff
	die(j)
	if got := replayed(t, dir, "t"); !slices.Equal(got, []string{"req_3"}) {
		t.Fatalf("replayed %v, want only the intact pending event", got)
	}
}

func TestJournalFullOrOversizedIsNotKept(t *testing.T) {
	j, err := OpenJournal(t.TempDir(), "t", 4)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for i := range 4 {
		if j.Put([]byte(`{}`)) < 0 {
			t.Fatalf("put %d refused with free slots", i)
		}
	}
	if slot := j.Put([]byte(`{}`)); slot >= 0 {
		t.Fatalf("a full journal took an event in slot %d", slot)
	}
	j.Done(2)
	if slot := j.Put([]byte(`{}`)); slot != 2 {
		t.Fatalf("put after a Done went to slot %d, want the freed 2", slot)
	}
	if slot := j.Put(make([]byte, journalSlotSize)); slot >= 0 {
		t.Fatal("an event larger than a slot was kept")
	}
	// Slots in use stay low while few events are pending at once (the memory touched
	// follows them), and spread when many are.
	k, err := OpenJournal(t.TempDir(), "t", 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	for range 10_000 {
		if slot := k.Put([]byte(`{}`)); slot < 0 || slot >= 64 {
			t.Fatalf("one pending event at a time went to slot %d", slot)
		} else {
			k.Done(slot)
		}
	}
	for i := range 1024 {
		if k.Put([]byte(`{}`)) < 0 {
			t.Fatalf("put %d of 1024 refused", i)
		}
	}
	var nilJournal *Journal
	if nilJournal.Put([]byte(`{}`)) != -1 {
		t.Fatal("a nil journal kept an event")
	}
	nilJournal.Done(0)
}

func TestJournalCloseRemovesOnlyAnEmptyJournal(t *testing.T) {
	dir := t.TempDir()
	j, _ := OpenJournal(dir, "t", 8)
	j.Done(j.Put([]byte(`{}`)))
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	k, _ := OpenJournal(dir, "t", 8)
	k.Put(encoded(9))
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if got := replayed(t, dir, "t"); len(got) != 0 {
		t.Fatalf("replayed %v while the closed journal's process lives", got)
	}
	syscall.Munmap(k.mem) // the process exits
	if got := replayed(t, dir, "t"); !slices.Equal(got, []string{"req_9"}) {
		t.Fatalf("after closing with an event pending the replay got %v", got)
	}
}

// TestJournalSurvivesSIGKILL: a process that journals events and is killed with no
// chance to write anything more leaves them, in the page cache, for the next one.
func TestJournalSurvivesSIGKILL(t *testing.T) {
	if dir := os.Getenv("JOURNAL_CHILD_DIR"); dir != "" {
		j, err := OpenJournal(dir, "t", 64)
		if err != nil {
			os.Exit(2)
		}
		for i := range 5 {
			slot := j.Put(encoded(i))
			if i == 0 {
				j.Done(slot) // delivered before the kill
			}
		}
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestJournalSurvivesSIGKILL$")
	cmd.Env = append(os.Environ(), "JOURNAL_CHILD_DIR="+dir)
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v", err)
	}
	if got := replayed(t, dir, "t"); !slices.Equal(got, []string{"req_1", "req_2", "req_3", "req_4"}) {
		t.Fatalf("after the kill the replay got %v", got)
	}
}

func BenchmarkJournalPutDone(b *testing.B) {
	j, err := OpenJournal(b.TempDir(), "t", 0)
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	payload := encoded(1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			j.Done(j.Put(payload))
		}
	})
}
