package e2e

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/internal/account"
	"github.com/tollgate/tollgate/internal/billing"
	"github.com/tollgate/tollgate/internal/fakellm"
	"github.com/tollgate/tollgate/internal/testenv"
	"github.com/tollgate/tollgate/internal/usage"
)

// startWorker runs cmd/worker as its own process on the stack's stores and waits until
// it serves /healthz, which it does once its jobs have started.
func (s *stack) startWorker(t *testing.T, extraEnv ...string) *exec.Cmd {
	t.Helper()
	addr := freeAddr(t)
	env := append([]string{"WORKER_HEALTH_ADDR=" + addr, "USAGE_CLAIM_IDLE=1s"}, extraEnv...)
	cmd := s.startProcess(t, "worker", env...)
	waitUp(t, "http://"+addr+"/healthz", "worker")
	return cmd
}

// syntheticEvents are usage events of the demo user, as a proxy would append them.
func (s *stack) syntheticEvents(t *testing.T, n int) ([]usage.Event, int64) {
	t.Helper()
	var keyID, groupID, priceID int64
	ctx := context.Background()
	s.pool.QueryRow(ctx, "SELECT id, (SELECT group_id FROM users WHERE id = $1) FROM api_keys WHERE user_id = $1", s.seeded.DemoUserID).Scan(&keyID, &groupID)
	s.pool.QueryRow(ctx, "SELECT id FROM prices WHERE pattern = $1", model).Scan(&priceID)
	evs := make([]usage.Event, n)
	var total int64
	for i := range evs {
		billed := int64(1000 + i%977)
		total += billed
		evs[i] = usage.Event{RequestID: fmt.Sprintf("req_synthetic_%06d", i), Time: time.Now(), UserID: s.seeded.DemoUserID,
			KeyID: keyID, GroupID: groupID, AccountID: s.seeded.AccountID, Provider: "anthropic", Endpoint: "messages",
			ModelRequested: model, ModelUpstream: model, Usage: billing.Usage{Input: 10, Output: 5},
			OfficialNano: billed, BilledNano: billed, FactorNum: 1, FactorDen: 1, PriceID: priceID, Status: 200, Attempt: 1}
	}
	return evs, total
}

// usageCount returns how many usage events there are (usageTotals).
func (s *stack) usageCount(t *testing.T) int {
	t.Helper()
	n, _ := s.usageTotals(t)
	return n
}

// TestWorkerKilledMidBatch: a worker SIGKILLed while ingesting leaves its entries
// pending; another worker takes them over, with no duplicate and no missing row, and the
// ledger debits exactly the events' cost.
func TestWorkerKilledMidBatch(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	before := s.balance(s.seeded.DemoUserID)
	const n = 20000
	evs, total := s.syntheticEvents(t, n)
	for i := 0; i < n; i += 2000 {
		if err := usage.Append(ctx, s.rdb, s.prefix, evs[i:i+2000]); err != nil {
			t.Fatal(err)
		}
	}
	a := s.startWorker(t)
	for deadline := time.Now().Add(30 * time.Second); s.usageCount(t) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first worker ingested nothing")
		}
	}
	// Kill it mid-batch: frozen (SIGSTOP) at a moment when it holds entries it read and
	// did not acknowledge, with events still to ingest.
	pending := func() int64 {
		p, err := s.rdb.XPending(ctx, usage.StreamKey(s.prefix), usage.ConsumerGroup).Result()
		if err != nil {
			t.Fatal(err)
		}
		return p.Count
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(3 * time.Millisecond) {
		a.Process.Signal(syscall.SIGSTOP)
		// Commands it sent just before it stopped (an XACK, a COMMIT) land meanwhile.
		time.Sleep(50 * time.Millisecond)
		if pending() > 0 && s.usageCount(t) < n {
			break
		}
		a.Process.Signal(syscall.SIGCONT)
		if time.Now().After(deadline) {
			t.Fatal("never caught the first worker holding a batch")
		}
	}
	a.Process.Signal(syscall.SIGKILL)
	waitExit(a)
	killedAt, held := s.usageCount(t), pending()
	if killedAt >= n || held == 0 {
		t.Fatalf("killed with %d of %d rows stored and %d entries pending: not mid-batch", killedAt, n, held)
	}
	s.startWorker(t)
	for deadline := time.Now().Add(60 * time.Second); s.usageCount(t) < n; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events ingested after the kill", s.usageCount(t), n)
		}
	}
	t.Logf("killed after %d rows holding %d entries; the second worker finished the other %d", killedAt, held, n-killedAt)
	var rows, distinct int
	var billed int64
	s.pool.QueryRow(ctx, "SELECT count(*), count(DISTINCT request_id), sum(billed_cost_nano) FROM usage_events").Scan(&rows, &distinct, &billed)
	if rows != n || distinct != n || billed != total {
		t.Fatalf("%d rows (%d distinct) billing %d; want %d rows billing %d", rows, distinct, billed, n, total)
	}
	if got := s.balance(s.seeded.DemoUserID); got != before-total {
		t.Fatalf("balance %d, want %d", got, before-total)
	}
	// The dead worker's last batch was stored but not acknowledged: the second worker
	// claims it once it has been idle USAGE_CLAIM_IDLE (1 s), finds it stored, and
	// acknowledges it — which may come after the rows above are all there.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		pending, err := s.rdb.XPending(ctx, usage.StreamKey(s.prefix), usage.ConsumerGroup).Result()
		if err == nil && pending.Count == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("entries still pending: %+v %v", pending, err)
		}
	}
	// Taking over the stored batch neither duplicated it nor debited it again.
	var again int
	s.pool.QueryRow(ctx, "SELECT count(*) FROM usage_events").Scan(&again)
	if again != n {
		t.Fatalf("%d rows after the claimed entries were acknowledged, want %d", again, n)
	}
	if got := s.balance(s.seeded.DemoUserID); got != before-total {
		t.Fatalf("balance %d after the claimed entries were acknowledged, want %d", got, before-total)
	}
}

// TestTwoWorkersRunPeriodicJobsOnce: workers on the same stores share one schedule, and
// each period gets one run of each periodic job however many workers run and however
// often River's leadership moves between them (job.aligned: an elected leader's
// RunOnStart run is skipped when the period already had its run). Two workers start; one
// stops gracefully and a third starts; then the second stops. Exactly one of the first two
// led when it stopped, so leadership moved at least once to a worker that runs the
// RunOnStart jobs at once. Each run of oauth_refresh redeems the OAuth account's refresh
// token once: the provider gets one token request per run and accepts every one (a
// second redeem of a spent token would be refused), while a proxy keeps serving with the
// rotating tokens.
func TestTwoWorkersRunPeriodicJobsOnce(t *testing.T) {
	const every = 2 * time.Second
	s := newStack(t, func(su *setup) {
		su.noDemo = true
		su.accounts = []accountSpec{{name: "oauth-acct", priority: 1, oauth: &account.Credential{
			AccessToken: "at-initial", RefreshToken: "rt-initial", ExpiresAt: time.Now().Add(time.Hour)}}}
	})
	s.fake.SetCheckAccessTokens(true)
	s.fake.AddAccessToken("at-initial")
	s.fake.SetRefreshToken("rt-initial")
	seq := s.fake.LastSeq()
	// Tokens live an hour at fakellm; with two hours' lead every run finds the token due.
	env := []string{"ANTHROPIC_OAUTH_TOKEN_URL=" + s.fakeURL + "/v1/oauth/token", "ANTHROPIC_OAUTH_CLIENT_ID=tollgate-test-client",
		"OAUTH_REFRESH_INTERVAL=" + every.String(), "OAUTH_REFRESH_AHEAD=2h"}
	started := time.Now()
	first, second := s.startWorker(t, env...), s.startWorker(t, env...)

	// Requests keep coming through the proxy meanwhile.
	ctx := context.Background()
	stop := make(chan struct{})
	served := make(chan int)
	go func() {
		n := 0
		defer func() { served <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if status, body := s.post(t, s.seeded.DemoKey, smallBody); status != 200 {
				t.Errorf("a request while the workers refresh: %d %+v", status, body)
				return
			}
			n++
			time.Sleep(50 * time.Millisecond)
		}
	}()

	completed := func() int {
		var n int
		s.pool.QueryRow(ctx, "SELECT count(*) FROM river_job WHERE kind = 'oauth_refresh' AND state = 'completed'").Scan(&n)
		return n
	}
	awaitRuns := func(runs int) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); completed() < runs; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d oauth_refresh runs completed in 60 s, want %d", completed(), runs)
			}
		}
	}
	stopWorker := func(w *exec.Cmd) {
		w.Process.Signal(syscall.SIGTERM)
		waitExit(w)
	}
	awaitRuns(2)
	stopWorker(first) // just after a run: a new leader's RunOnStart falls in the same period
	third := s.startWorker(t, env...)
	awaitRuns(4)
	stopWorker(second)
	awaitRuns(6)
	close(stop)
	if n := <-served; n == 0 {
		t.Fatal("no request was served while the workers refreshed")
	}
	stopping := time.Now()
	stopWorker(third)

	// At most one run per period (runs are scheduled in the period they are for; a
	// period may lack one while no worker led), and so no more than the periods spanned.
	periodsOnce := func(kind string, period time.Duration) int {
		t.Helper()
		rows, err := s.pool.Query(ctx, "SELECT scheduled_at FROM river_job WHERE kind = $1 AND scheduled_at < $2 ORDER BY scheduled_at", kind, stopping)
		if err != nil {
			t.Fatal(err)
		}
		times, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(times); i++ {
			if times[i].Truncate(period).Equal(times[i-1].Truncate(period)) {
				t.Fatalf("%s runs %d and %d were scheduled at %s and %s, in one period of %s: run twice",
					kind, i, i+1, times[i-1].Format("15:04:05.000"), times[i].Format("15:04:05.000"), period)
			}
		}
		if spanned := int(stopping.Truncate(period).Sub(started.Truncate(period))/period) + 1; len(times) > spanned {
			t.Fatalf("%d %s jobs in %d periods of %s", len(times), kind, spanned, period)
		}
		return len(times)
	}
	periodsOnce("oauth_refresh", every)
	if n := periodsOnce("usage_rollup", time.Minute); n < 1 {
		t.Fatal("usage_rollup never ran")
	}

	// Each completed run redeemed the refresh token once, and the provider accepted it.
	var tokenRequests int
	for _, e := range s.fake.ServedSince(seq) {
		if e.Endpoint != fakellm.EndpointOAuthToken {
			continue
		}
		tokenRequests++
		if e.Status != 200 {
			t.Fatalf("token request %d answered %d: a spent refresh token was redeemed again", tokenRequests, e.Status)
		}
	}
	if done := completed(); tokenRequests != done {
		t.Fatalf("%d token requests for %d completed oauth_refresh runs, want one each", tokenRequests, done)
	}
	if n := s.fake.Refreshes(); n != tokenRequests {
		t.Fatalf("fakellm rotated %d tokens for %d token requests", n, tokenRequests)
	}
}

// TestWorkerReportsRedisDurability: the worker tells whether Redis keeps an append-only
// file (tollgate_redis_aof_enabled), since without one a Redis restart loses the usage
// events not yet ingested, and whether it may evict keys without an expiry, the usage
// stream among them (tollgate_redis_eviction_safe): on the test Redis (AOF, no memory
// limit, as make dev and make bench run it) both are 1; on a Redis without persistence
// AOF is 0; on one with a memory limit, eviction is safe under noeviction and volatile-lru
// and not under allkeys-lru.
func TestWorkerReportsRedisDurability(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string // a Redis of the test's own with these options; nil: the test Redis
		want []string // metric lines
	}{
		{"aof", nil, []string{"tollgate_redis_aof_enabled 1", "tollgate_redis_eviction_safe 1"}},
		{"none", []string{}, []string{"tollgate_redis_aof_enabled 0", "tollgate_redis_eviction_safe 1"}},
		{"noeviction", []string{"--maxmemory", "64mb", "--maxmemory-policy", "noeviction"}, []string{"tollgate_redis_eviction_safe 1"}},
		{"volatile", []string{"--maxmemory", "64mb", "--maxmemory-policy", "volatile-lru"}, []string{"tollgate_redis_eviction_safe 1"}},
		{"allkeys", []string{"--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"}, []string{"tollgate_redis_eviction_safe 0"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newStack(t, func(su *setup) {
				if c.args != nil {
					su.redis = testenv.RedisServer(t, c.args...)
				}
			})
			addr := freeAddr(t)
			s.startProcess(t, "worker", "WORKER_HEALTH_ADDR="+addr)
			waitUp(t, "http://"+addr+"/healthz", "worker")
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				resp, err := httpClient.Get("http://" + addr + "/metrics")
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				missing := ""
				for _, line := range c.want {
					if !strings.Contains(string(b), "\n"+line+"\n") {
						missing = line
						break
					}
				}
				if missing == "" {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("worker metrics lack %q:\n%s", missing, grepLines(string(b), "tollgate_redis_"))
				}
			}
		})
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for line := range strings.SplitSeq(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
