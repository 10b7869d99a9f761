package usage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// Journal holds the usage events whose delivery is under way, so that a proxy killed
// between reading an answer and handing its event to Redis leaves the event behind for
// the next process to deliver. Without it, a non-streaming answer (or an OpenAI stream,
// which reports usage only at its end) that the upstream served and the proxy read, but
// whose completion had not reached Redis when the proxy died, went unbilled.
//
// The journal is a file of fixed slots mapped into the proxy's memory. Putting an event is
// a copy into the mapping and no system call: the bytes are in the page cache the moment
// they are stored, and the kernel keeps them when the process dies (SIGKILL, an OOM kill,
// a crash). They are not fsynced: a crash of the whole machine can lose the last second
// of events, as Redis's AOF with appendfsync everysec can.
//
// An event is put before its answer goes to the client and marked done once Redis,
// PostgreSQL or the spool has it. ReplayJournals delivers the events left pending in the
// files of processes that are gone; ingestion is idempotent by request id, so an event
// that was delivered but not yet marked done is still billed once.
//
// Each process writes its own file and holds an exclusive lock on it while it lives.
// Files are named after a tag of the installation (its database and Redis prefix), so
// proxies of two installations sharing a directory never deliver each other's events.
type Journal struct {
	f     *os.File
	mem   []byte
	slots uint32
	next  atomic.Uint32
	// active bounds the slots in use. It starts small and doubles when they are crowded,
	// so the pages touched (memory the proxy holds) follow the most events pending at once
	// rather than the journal's size.
	active atomic.Uint32
}

const (
	journalSlotSize = 1024
	journalHeader   = 12 // state, length, CRC-32C of the payload
	// JournalSlots is the default number of slots: events whose completion is under way at
	// once. A slot is held from the answer to its completion (well under a second unless
	// Redis is failing), so 8,192 outlast bursts of tens of thousands of requests a second.
	JournalSlots = 8192

	slotFree    = 0
	slotWriting = 1 // being written: ignored by a replay (the writer died mid-copy)
	slotPending = 2
)

var journalCRC = crc32.MakeTable(crc32.Castagnoli)

// OpenJournal creates this process's journal file in dir, with room for slots events
// (8 MiB of disk by default). Only the pages of slots in use take memory.
func OpenJournal(dir, tag string, slots int) (*Journal, error) {
	if slots <= 0 {
		slots = JournalSlots
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("usage journal directory %s: %w", dir, err)
	}
	name := filepath.Join(dir, journalPrefix(tag)+strconv.FormatInt(time.Now().UnixNano(), 10)+"-"+strconv.Itoa(os.Getpid())+".wal")
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open usage journal: %w", err)
	}
	size := slots * journalSlotSize
	mem, err := func() ([]byte, error) {
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			return nil, fmt.Errorf("lock usage journal: %w", err)
		}
		// The blocks are allocated now: a store into a page of a sparse file on a full
		// disk would kill the process with SIGBUS.
		if err := allocate(f, size); err != nil {
			return nil, fmt.Errorf("allocate usage journal (%d bytes): %w", size, err)
		}
		mem, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
		if err != nil {
			return nil, fmt.Errorf("map usage journal: %w", err)
		}
		return mem, nil
	}()
	if err != nil {
		f.Close()
		os.Remove(name)
		return nil, err
	}
	j := &Journal{f: f, mem: mem, slots: uint32(slots)}
	j.active.Store(uint32(min(slots, 64)))
	return j, nil
}

// allocate gives f size bytes of disk: fallocate, or zeros written where the file
// system has no fallocate.
func allocate(f *os.File, size int) error {
	err := syscall.Fallocate(int(f.Fd()), 0, 0, int64(size))
	if !errors.Is(err, syscall.EOPNOTSUPP) {
		return err
	}
	_, err = f.Write(make([]byte, size))
	return err
}

func journalPrefix(tag string) string { return "inflight-" + tag + "-" }

func (j *Journal) state(slot uint32) *atomic.Uint32 {
	return (*atomic.Uint32)(unsafe.Pointer(&j.mem[slot*journalSlotSize]))
}

// Put keeps an event's encoding until Done and returns its slot, or -1 when it was not
// kept: nil journal, an event larger than a slot (about 1 KB; events are 400–700 bytes), or
// every slot pending (thousands of completions stuck at once).
func (j *Journal) Put(payload []byte) int32 {
	if j == nil || len(payload) > journalSlotSize-journalHeader {
		return -1
	}
	for {
		active := j.active.Load()
		probes := uint32(8)
		if active == j.slots {
			probes = j.slots // crowded at full size: look at every slot once
		}
		for range probes {
			slot := j.next.Add(1) % active
			if st := j.state(slot); st.CompareAndSwap(slotFree, slotWriting) {
				rec := j.mem[slot*journalSlotSize : (slot+1)*journalSlotSize]
				binary.LittleEndian.PutUint32(rec[4:], uint32(len(payload)))
				binary.LittleEndian.PutUint32(rec[8:], crc32.Checksum(payload, journalCRC))
				copy(rec[journalHeader:], payload)
				st.Store(slotPending)
				return int32(slot)
			}
		}
		if active == j.slots {
			return -1
		}
		j.active.CompareAndSwap(active, min(2*active, j.slots))
	}
}

// Done frees a slot Put returned once its event is delivered; -1 is ignored.
func (j *Journal) Done(slot int32) {
	if j != nil && slot >= 0 {
		j.state(uint32(slot)).Store(slotFree)
	}
}

// Close removes the journal's file if no event is pending; otherwise it is left for a
// replay to deliver. The mapping stays until the process exits, so that a completion
// still running after a shutdown gave up waiting for it cannot fault; it holds the file's
// lock until then too.
func (j *Journal) Close() error {
	if j == nil {
		return nil
	}
	var err error
	if len(pendingRecords(j.mem)) == 0 {
		err = os.Remove(j.f.Name())
	}
	return errors.Join(err, j.f.Close())
}

// pendingRecords returns the payloads of the pending slots whose checksum holds.
func pendingRecords(mem []byte) [][]byte {
	var out [][]byte
	for off := 0; off+journalSlotSize <= len(mem); off += journalSlotSize {
		rec := mem[off : off+journalSlotSize]
		if binary.LittleEndian.Uint32(rec) != slotPending {
			continue
		}
		n := binary.LittleEndian.Uint32(rec[4:])
		if n > journalSlotSize-journalHeader {
			continue
		}
		payload := rec[journalHeader : journalHeader+n]
		if crc32.Checksum(payload, journalCRC) != binary.LittleEndian.Uint32(rec[8:]) {
			continue
		}
		out = append(out, payload)
	}
	return out
}

// ReplayJournals delivers the pending events of the journal files in dir with this tag
// that no living process holds, and removes each file once its events are delivered.
// It returns how many events it delivered.
func ReplayJournals(ctx context.Context, dir, tag string, deliver func(context.Context, []Event) error, log *slog.Logger) (int, error) {
	files, err := filepath.Glob(filepath.Join(dir, journalPrefix(tag)+"*.wal"))
	if err != nil {
		return 0, err
	}
	delivered := 0
	var errs []error
	for _, name := range files {
		n, err := replayJournal(ctx, name, deliver, log)
		delivered += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return delivered, errors.Join(errs...)
}

func replayJournal(ctx context.Context, name string, deliver func(context.Context, []Event) error, log *slog.Logger) (int, error) {
	f, err := openOrphan(name)
	if f == nil || err != nil {
		return 0, err
	}
	defer f.Close()
	mem, err := io.ReadAll(f)
	if err != nil {
		return 0, fmt.Errorf("read usage journal %s: %w", name, err)
	}
	// A stream's checkpoint and its final event can both be pending (killed between
	// journaling the one and freeing the other): the later one stands for the request.
	var events []Event
	at := map[string]int{}
	for _, p := range pendingRecords(mem) {
		var ev Event
		if err := DecodeEvent(string(p), &ev); err != nil {
			log.Error("unreadable event in usage journal; skipped", "file", name, "err", err, "event", string(p))
			continue
		}
		if i, ok := at[ev.RequestID]; ok {
			if ev.Time.After(events[i].Time) {
				events[i] = ev
			}
			continue
		}
		at[ev.RequestID] = len(events)
		events = append(events, ev)
	}
	if len(events) > 0 {
		if err := deliver(ctx, events); err != nil {
			return 0, fmt.Errorf("deliver %d journaled usage events: %w", len(events), err)
		}
		log.Warn("delivered the usage events a proxy that died had journaled", "file", name, "events", len(events))
	}
	return len(events), os.Remove(name)
}
