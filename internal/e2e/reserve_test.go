package e2e

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/fakellm"
	"github.com/tollgate/tollgate/internal/limit"
)

// TestReservedAdmissionsAreBilledAsTheirRequests: four clients run one Claude Code
// session each (the session header makes their requests alike), streams and plain calls
// mixed, so most requests are admitted from reservations their run's completions made.
// Every request is billed once under the id its response carried, the ledger holds what
// fakellm served, and once the runs stop the leftover reservations are released: no
// lease stays behind.
func TestReservedAdmissionsAreBilledAsTheirRequests(t *testing.T) {
	s := newStack(t, func(su *setup) { su.limits = limit.Options{ReserveIdle: 300 * time.Millisecond} })
	ctx := context.Background()
	before := s.balance(s.seeded.DemoUserID)
	seq := s.fake.LastSeq()
	stream := `{"model":"` + model + `","max_tokens":32,"stream":true,"messages":[{"role":"user","content":"reserved stream"}]}`

	const clients, each = 4, 30
	var mu sync.Mutex
	ids := map[string]bool{}
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			session := map[string]string{"X-Claude-Code-Session-Id": "session-" + string(rune('a'+c))}
			for i := range each {
				body := smallBody
				if i%2 == 1 {
					body = stream
				}
				resp, b := rawPost(t, s.proxyURL, s.seeded.DemoKey, body, session)
				if resp.StatusCode != 200 || (body == stream && !strings.Contains(string(b), "message_stop")) {
					t.Errorf("client %d request %d: %d %s", c, i, resp.StatusCode, b)
					return
				}
				mu.Lock()
				ids[resp.Header.Get("X-Tollgate-Request-Id")] = true
				mu.Unlock()
				time.Sleep(5 * time.Millisecond) // a client's think time, well within the reserve idle
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	const total = clients * each
	if len(ids) != total {
		t.Fatalf("%d distinct request ids for %d requests", len(ids), total)
	}

	served := s.fake.ServedSince(seq)
	if len(served) != total {
		t.Fatalf("fakellm served %d requests, want %d", len(served), total)
	}
	var want int64
	for _, e := range served {
		want += s.expectedBilled(e.Usage)
	}
	s.ingest(total)
	rows, err := s.pool.Query(ctx, "SELECT request_id FROM usage_events")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var rid string
		rows.Scan(&rid)
		if !ids[rid] {
			t.Errorf("usage event %s is no response's request id", rid)
		}
		delete(ids, rid)
	}
	rows.Close()
	if len(ids) != 0 {
		t.Fatalf("%d responses have no usage event", len(ids))
	}
	if got := s.balance(s.seeded.DemoUserID); got != before-want {
		t.Fatalf("balance moved by %d, fakellm served %d", before-got, want)
	}

	// Each run's first two requests are admitted in full; after that a run is busy and
	// its completions reserve the next admission.
	taken := s.metricLabelled(t, "tollgate_admissions_reserved_total", `outcome="taken"`)
	if taken < total/2 {
		t.Fatalf("%v of %d requests admitted from reservations, want most", taken, total)
	}
	// The last reservation of each run finds no request: released after the idle time.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		made := s.metricLabelled(t, "tollgate_admissions_reserved_total", `outcome="made"`)
		released := s.metricLabelled(t, "tollgate_admissions_reserved_total", `outcome="released"`)
		if made == taken+released {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reservations made %v, taken %v, released %v", made, taken, released)
		}
	}
	keys, err := s.rdb.Keys(ctx, s.prefix+"conc:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if n, _ := s.rdb.ZCard(ctx, k).Result(); n != 0 {
			t.Errorf("%s holds %d leases after the runs ended", k, n)
		}
	}
	t.Logf("%d requests, %v admitted from reservations", total, taken)

	// A reserved request holds its leases under the id its response carries: the member
	// its completion, a failover or an orphan sweep acts on.
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior { return fakellm.Behavior{EventDelay: 20 * time.Millisecond} })
	defer s.fake.SetScript(nil)
	slow := map[string]string{"X-Claude-Code-Session-Id": "session-slow"}
	made := s.metricLabelled(t, "tollgate_admissions_reserved_total", `outcome="made"`)
	for range 2 { // the run becomes busy; the second completion reserves
		if resp, b := rawPost(t, s.proxyURL, s.seeded.DemoKey, smallBody, slow); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
	}
	// The completion runs after the response: wait for its reservation.
	for deadline := time.Now().Add(5 * time.Second); s.metricLabelled(t, "tollgate_admissions_reserved_total", `outcome="made"`) == made; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the busy run's completion reserved nothing")
		}
	}
	req, _ := http.NewRequest(http.MethodPost, s.proxyURL+"/v1/messages", strings.NewReader(stream))
	req.Header.Set("X-Api-Key", s.seeded.DemoKey)
	req.Header.Set("X-Claude-Code-Session-Id", "session-slow")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	bufio.NewReader(resp.Body).ReadString('\n')
	if now := s.metricLabelled(t, "tollgate_admissions_reserved_total", `outcome="taken"`); now != taken+1 {
		t.Fatalf("the slow stream was not admitted from a reservation (taken %v -> %v)", taken, now)
	}
	rid := resp.Header.Get("X-Tollgate-Request-Id")
	if _, err := s.rdb.ZScore(ctx, s.prefix+"conc:a:"+strconv.FormatInt(s.seeded.AccountID, 10), rid).Result(); err != nil {
		t.Fatalf("no lease under the response's request id %s while the stream runs: %v", rid, err)
	}
	io.Copy(io.Discard, resp.Body)
}
