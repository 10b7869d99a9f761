package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testenv"
	"github.com/tollgate/tollgate/internal/usage"
)

// TestRedisLosingAcknowledgedUsage: a Redis that restarts without its data (run without
// AOF here; a machine crash or a failover to a lagging replica loses the last writes the
// same way) loses the usage events it had acknowledged and no worker had stored yet. The
// proxy sees Redis's identity change and stores the events of its last seconds straight
// in PostgreSQL, so every answer fakellm served is billed once, and nothing twice once a
// worker ingests what the new Redis holds.
func TestRedisLosingAcknowledgedUsage(t *testing.T) {
	rs := testenv.RedisServer(t) // no persistence: a restart starts empty
	s := newStack(t, func(su *setup) { su.redis = rs })
	ctx := context.Background()
	before := s.balance(s.seeded.DemoUserID)
	seq := s.lastServedSeq()
	const n = 5
	var rids []string
	for range n {
		resp, b := rawPost(t, s.proxyURL, s.seeded.DemoKey, smallBody, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		rids = append(rids, resp.Header.Get("X-Tollgate-Request-Id"))
	}
	// Their completions are in Redis's stream; no worker has stored them (this stack's
	// consumer runs only when the test asks).
	stream := usage.StreamKey(s.prefix)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if l, _ := s.rdb.XLen(ctx, stream).Result(); l == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the completions did not reach Redis")
		}
	}
	rs.Stop()
	rs.Start()
	if l, err := s.rdb.XLen(ctx, stream).Result(); err != nil || l != 0 {
		t.Fatalf("the restarted Redis holds %d stream entries (%v), want none", l, err)
	}
	for deadline := time.Now().Add(10 * time.Second); s.usageCount(t) < n; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of the %d events Redis lost were stored again", s.usageCount(t), n)
		}
	}
	var want int64
	for _, e := range s.waitServed(t, seq, n) {
		want += s.expectedBilled(e.Usage)
	}
	s.checkBilledOnce(t, rids, want, "", before)
	if got := s.metric(t, "tollgate_usage_redelivered_total"); got != n {
		t.Fatalf("tollgate_usage_redelivered_total %v, want %d", got, n)
	}
	// Service goes on; what the new Redis holds is ingested once.
	if status, _ := s.post(t, s.seeded.DemoKey, smallBody); status != 200 {
		t.Fatalf("after the restart: %d", status)
	}
	s.ingest(n + 1)
	s.checkSnapshotHonest(t, s.seeded.DemoUserID)
}
