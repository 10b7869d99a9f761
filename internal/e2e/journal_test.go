package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/fakellm"
	"github.com/tollgate/tollgate/internal/limit"
	"github.com/tollgate/tollgate/internal/usage"
)

// lastServedSeq is the Seq of fakellm's latest entry (0 if none), for ServedSince.
func (s *stack) lastServedSeq() int64 {
	if served := s.fake.Served(); len(served) > 0 {
		return served[len(served)-1].Seq
	}
	return 0
}

// waitServed waits until fakellm has logged at least n entries after seq (it logs an
// answer when its handler returns, which can be just after the client has it) and
// returns them.
func (s *stack) waitServed(t *testing.T, seq int64, n int) []fakellm.Served {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		served := s.fake.ServedSince(seq)
		if len(served) >= n {
			return served
		}
		if time.Now().After(deadline) {
			t.Fatalf("fakellm logged %d of %d answers", len(served), n)
		}
	}
}

// holdRequests sends n requests at once to the proxy at url and returns their request
// ids once each has its response headers (and, with firstLine, the first line of its
// body), leaving the rest unread; release closes the bodies.
func (s *stack) holdRequests(t *testing.T, url, body string, n int, firstLine bool) (rids []string, release func()) {
	t.Helper()
	rids = make([]string, n)
	bodies := make([]io.Closer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, url+"/v1/messages", strings.NewReader(body))
			req.Header.Set("X-Api-Key", s.seeded.DemoKey)
			req.Header.Set("Anthropic-Version", "2023-06-01")
			resp, err := httpClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			bodies[i], rids[i] = resp.Body, resp.Header.Get("X-Tollgate-Request-Id")
			if resp.StatusCode != 200 {
				t.Errorf("status %d", resp.StatusCode)
			} else if firstLine {
				if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	release = func() {
		for _, b := range bodies {
			if b != nil {
				b.Close()
			}
		}
	}
	if t.Failed() {
		release()
		t.FailNow()
	}
	return rids, release
}

// billedRows reads the usage events of these request ids: how many, their bill, and
// their error classes.
func (s *stack) billedRows(t *testing.T, rids []string) (rows, billed int64, classes []string) {
	t.Helper()
	err := s.pool.QueryRow(context.Background(), `SELECT count(*), coalesce(sum(billed_cost_nano), 0),
		coalesce(array_agg(DISTINCT error_class), '{}') FROM usage_events WHERE request_id = ANY($1)`, rids).Scan(&rows, &billed, &classes)
	if err != nil {
		t.Fatal(err)
	}
	return rows, billed, classes
}

// checkBilledOnce checks that each of rids has one usage event, of error class class,
// that together they bill want, and that the demo user's wallet moved by exactly that
// from before.
func (s *stack) checkBilledOnce(t *testing.T, rids []string, want int64, class string, before int64) {
	t.Helper()
	rows, billed, classes := s.billedRows(t, rids)
	if rows != int64(len(rids)) || billed != want {
		t.Fatalf("billed %d rows, %d nano; fakellm served %d requests worth %d nano", rows, billed, len(rids), want)
	}
	if len(classes) != 1 || classes[0] != class {
		t.Fatalf("error classes %q, want [%q]", classes, class)
	}
	if moved := before - s.balance(s.seeded.DemoUserID); moved != want {
		t.Fatalf("wallet moved by %d nano, want %d", moved, want)
	}
}

// checkSnapshotHonest waits until the usage stream is ingested and the user's balance
// snapshot in Redis claims no more than the ledger: absent (the next admission loads the
// ledger's balance) or equal to it. Usage stored without its completion (replayed from a
// journal or the spool, or stored straight in PostgreSQL) must not leave the snapshot
// as it was before that usage, with the user's money still in it. With the stream
// ingested nothing is pending, so the user's pending sum (limit.PendingKey) must be gone
// too: one left behind would make every later load of the snapshot short by it.
func (s *stack) checkSnapshotHonest(t *testing.T, userID int64) {
	t.Helper()
	ctx := context.Background()
	key, pend := limit.CounterKeys(s.prefix, userID, 0, time.Now())[0], limit.PendingKey(s.prefix, userID)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		s.consumer.ProcessOnce(ctx) //nolint:errcheck // retried until the deadline
		drained := s.rdb.XLen(ctx, usage.StreamKey(s.prefix)).Val() == 0
		pending, pendErr := s.rdb.Get(ctx, pend).Int64()
		keySums := s.rdb.Keys(ctx, s.prefix+"pendk:*").Val() // the keys' pending sums
		snap, err := s.rdb.Get(ctx, key).Int64()
		ledger := s.balance(userID)
		if drained && errors.Is(pendErr, redis.Nil) && len(keySums) == 0 && (errors.Is(err, redis.Nil) || (err == nil && snap == ledger)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("balance snapshot %d (err %v), ledger %d, stream drained %v, pending sum %d (err %v), keys' pending sums %q: the snapshot still counts money the usage took, or a sum outlived its entries",
				snap, err, ledger, drained, pending, pendErr, keySums)
		}
	}
}

// usageTotals returns how many usage events there are and what they bill together.
func (s *stack) usageTotals(t *testing.T) (rows int, billed int64) {
	t.Helper()
	err := s.pool.QueryRow(context.Background(), "SELECT count(*), coalesce(sum(billed_cost_nano), 0) FROM usage_events").Scan(&rows, &billed)
	if err != nil {
		t.Fatal(err)
	}
	return rows, billed
}

// inUsageStream reports which of these request ids have an event in the usage stream.
func (s *stack) inUsageStream(t *testing.T, rids []string) []string {
	t.Helper()
	entries, err := s.rdb.XRange(context.Background(), usage.StreamKey(s.prefix), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range entries {
		for _, v := range e.Values {
			str, _ := v.(string)
			for _, rid := range rids {
				if strings.Contains(str, `"`+rid+`"`) {
					found = append(found, rid)
				}
			}
		}
	}
	return found
}

// TestKilledProxyBillsAnswersItHadRead: a proxy killed after it read whole answers from
// the upstream but before their completions reached Redis (here: stuck writing answers
// larger than the socket buffers to clients that read only the headers) leaves their
// usage in its journal, and the next proxy on the same spool directory bills each of them
// once, in full. Without the journal these requests, served by the upstream, were lost.
//
// "restarted": a proxy started after the kill delivers at start. "sibling": a proxy that
// was already running on the same directory delivers at its next spool round.
func TestKilledProxyBillsAnswersItHadRead(t *testing.T) {
	for _, mode := range []string{"restarted", "sibling"} {
		t.Run(mode, func(t *testing.T) { killedProxyBillsAnswersItHadRead(t, mode == "sibling") })
	}
}

func killedProxyBillsAnswersItHadRead(t *testing.T, sibling bool) {
	const n = 4
	s := newStack(t)
	s.exec(t, "UPDATE groups SET default_concurrency = 0")
	dir := t.TempDir()
	url, cmd := s.startProxy(t, "PROXY_SPOOL_DIR="+dir)
	if sibling {
		s.startProxy(t, "PROXY_SPOOL_DIR="+dir, "PROXY_SPOOL_INTERVAL=200ms")
	}
	big := strings.Repeat("lorem ipsum ", 1<<20) // a 12 MiB answer; loopback buffers hold ~4 MiB
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior { return fakellm.Behavior{Text: big} })
	before := s.balance(s.seeded.DemoUserID)
	rowsBefore := s.usageCount(t)
	seq := s.lastServedSeq()

	// Headers only: the proxy is left writing the bodies.
	rids, release := s.holdRequests(t, url, smallBody, n, false)
	served := s.waitServed(t, seq, n)
	if len(served) != n {
		t.Fatalf("fakellm served %d answers, want %d", len(served), n)
	}
	var wantBilled int64
	for _, e := range served {
		if !e.Complete || e.Status != 200 || e.Usage.OutputTokens == 0 {
			t.Fatalf("fakellm entry %+v, want a complete answer with usage", e)
		}
		wantBilled += s.expectedBilled(e.Usage)
	}
	// The proxy holds every answer (the client has its headers, sent once the answer is
	// journaled) and, stuck writing the bodies, has completed none. The kill is the event
	// the check waits for: whatever the proxy completed is in the usage stream once it is
	// dead. A sibling may deliver the dead proxy's journal at any round after the kill, so
	// with one the stream is read just before it instead.
	if sibling {
		if got := s.inUsageStream(t, rids); len(got) != 0 {
			t.Fatalf("completions of %v ran although their answers were still being written", got)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(cmd)
	release()
	if !sibling {
		if got := s.inUsageStream(t, rids); len(got) != 0 {
			t.Fatalf("completions of %v ran although their answers were still being written", got)
		}
	}

	if !sibling {
		s.startProxy(t, "PROXY_SPOOL_DIR="+dir)
	}
	s.ingest(rowsBefore + n)
	s.checkBilledOnce(t, rids, wantBilled, "", before)
	s.checkSnapshotHonest(t, s.seeded.DemoUserID)
	// The dead proxy's file goes once its events are delivered (just after them).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		files, _ := filepath.Glob(filepath.Join(dir, "inflight-*.wal"))
		if len(files) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("journal files %v, want only the living proxy's", files)
		}
	}
}

// TestKilledProxyUnderLoadBillsEveryAnswer kills a proxy relaying non-streaming requests
// from ten clients and restarts it on the same spool directory. Every answer a client
// received is billed exactly once, for what fakellm served; nothing is billed that
// fakellm did not serve, and the wallet moved by exactly the billed events. The dead
// proxy's leases stop counting within the lease TTL.
func TestKilledProxyUnderLoadBillsEveryAnswer(t *testing.T) {
	const ttl = 2 * time.Second
	s := newStack(t, func(su *setup) { su.limits = limit.Options{LeaseTTL: ttl} })
	s.exec(t, "UPDATE groups SET default_concurrency = 0")
	dir := t.TempDir()
	url, cmd := s.startProxy(t, "PROXY_SPOOL_DIR="+dir, "LEASE_TTL="+ttl.String())
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior { return fakellm.Behavior{Delay: 2 * time.Millisecond} })
	before := s.balance(s.seeded.DemoUserID)
	rowsBefore, billedBefore := s.usageTotals(t)
	seq := s.lastServedSeq()

	type answer struct{ rid, messageID string }
	var mu sync.Mutex
	var answers []answer
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 10}}
	for range 10 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodPost, url+"/v1/messages", strings.NewReader(smallBody))
				req.Header.Set("X-Api-Key", s.seeded.DemoKey)
				req.Header.Set("Anthropic-Version", "2023-06-01")
				resp, err := client.Do(req)
				if err != nil {
					return // the proxy died
				}
				rid := resp.Header.Get("X-Tollgate-Request-Id")
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				mu.Lock()
				var msg struct{ ID string }
				if err == nil && resp.StatusCode == 200 && json.Unmarshal(b, &msg) == nil {
					answers = append(answers, answer{rid, msg.ID})
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	// Killed under load, once the clients have had a good number of answers.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		got := len(answers)
		mu.Unlock()
		if got >= 50 {
			break
		}
		if time.Now().After(deadline) {
			close(stop)
			t.Fatalf("only %d answers after 30 s", got)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(cmd)
	killed := time.Now()
	close(stop)
	wg.Wait()

	// fakellm logs an answer as its handler returns, which can be just after the client
	// has it: wait until it has logged every answer a client received.
	served := map[string]fakellm.Served{} // complete answers, by message id
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		for _, e := range s.fake.ServedSince(seq) {
			if e.Status == 200 && e.Complete {
				served[e.MessageID] = e
			}
		}
		missing := ""
		for _, a := range answers {
			if _, ok := served[a.messageID]; !ok {
				missing = a.messageID
				break
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a client got %s, which fakellm did not log as served", missing)
		}
	}
	s.startProxy(t, "PROXY_SPOOL_DIR="+dir, "LEASE_TTL="+ttl.String())
	// Everything the restarted proxy delivers, and the orphan sweeps, have landed once
	// the count stops moving.
	var rows int
	for stable, deadline := 0, time.Now().Add(20*time.Second); stable < 3 || rows < rowsBefore+len(answers); time.Sleep(300 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("usage_events has %d rows after 20 s, want at least %d", rows, rowsBefore+len(answers))
		}
		s.consumer.ProcessOnce(context.Background()) //nolint:errcheck
		now, _ := s.usageTotals(t)
		if now == rows {
			stable++
		} else {
			rows, stable = now, 0
		}
	}

	var wantAnswered int64
	answered := make([]string, 0, len(answers))
	for _, a := range answers {
		wantAnswered += s.expectedBilled(served[a.messageID].Usage)
		answered = append(answered, a.rid)
	}
	if n, billed, _ := s.billedRows(t, answered); n != int64(len(answered)) || billed != wantAnswered {
		t.Fatalf("of %d answers clients received, %d are billed (%d nano, want %d)", len(answered), n, billed, wantAnswered)
	}
	// Requests cut before their client got the body, some before it even got the request
	// id (the proxy journals an answer before its headers): all the usage events that
	// appeared are this test's, and bill at most what fakellm served.
	var servedNano int64
	for _, e := range served {
		servedNano += s.expectedBilled(e.Usage)
	}
	n, billed := s.usageTotals(t)
	n, billed = n-rowsBefore, billed-billedBefore
	if n > len(served) || billed > servedNano {
		t.Fatalf("billed %d requests for %d nano; fakellm served %d for %d nano", n, billed, len(served), servedNano)
	}
	if moved := before - s.balance(s.seeded.DemoUserID); moved != billed {
		t.Fatalf("wallet moved by %d nano, the usage events bill %d", moved, billed)
	}
	t.Logf("%d answers received, %d served by fakellm, %d billed", len(answers), len(served), n)
	// Nothing runs now: every lease still counting was the dead proxy's, and none
	// outlives the TTL (with a second for the checks' own pace).
	s.waitNoLeases(t, s.leasesLive, killed.Add(ttl+time.Second), "counting after the lease TTL ("+ttl.String()+") and a second")
}

// TestRestartedProxyBillsStreamsFromItsJournal: streams cut by their proxy's death are
// billed from the checkpoints in its journal as soon as a proxy starts on its directory,
// not only by the sweep once their leases expire (here an hour away, so only the journal
// can have billed them). A checkpoint that had not reached Redis is billed the same way.
func TestRestartedProxyBillsStreamsFromItsJournal(t *testing.T) {
	const n = 5
	s := newStack(t)
	ctx := context.Background()
	s.exec(t, "UPDATE groups SET default_concurrency = 0")
	dir := t.TempDir()
	url, cmd := s.startProxy(t, "PROXY_SPOOL_DIR="+dir, "LEASE_TTL=1h")
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior {
		return fakellm.Behavior{EventDelay: 250 * time.Millisecond}
	})
	before := s.balance(s.seeded.DemoUserID)
	rowsBefore := s.usageCount(t)
	seq := s.lastServedSeq()
	body := `{"model":"` + model + `","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"an answer long enough to be cut in the middle of it"}]}`
	rids, release := s.holdRequests(t, url, body, n, true)
	// message_start has been relayed. Its checkpoint goes into the proxy's journal file
	// just after, then to Redis: once Redis has every checkpoint, the file has them all.
	s.waitCheckpoints(t, n)
	journal := s.prefix + "journal:ev"
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(cmd)
	release()
	// One checkpoint as if it had not reached Redis before the kill: the file bills it too.
	if err := s.rdb.HDel(ctx, journal, rids[0]).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.rdb.ZRem(ctx, s.prefix+"journal", rids[0]).Err(); err != nil {
		t.Fatal(err)
	}
	cut := s.waitServed(t, seq, n) // fakellm logs a cut stream at its next event
	var wantBilled int64
	for _, e := range cut {
		wantBilled += s.expectedBilled(e.Usage)
	}

	s.startProxy(t, "PROXY_SPOOL_DIR="+dir, "LEASE_TTL=1h")
	s.ingest(rowsBefore + n)
	s.checkBilledOnce(t, rids, wantBilled, "proxy_lost", before)
}
