package relay

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"
)

// quotaPrefixes mark the response headers in which providers describe an account's
// rate-limit windows and quotas (requests and tokens remaining, resets, Codex's plan
// usage). They never reach the client; the latest values are kept for the console.
var quotaPrefixes = []string{"anthropic-ratelimit-", "x-ratelimit-", "x-codex-"}

// quotas keeps each account's latest quota headers in memory and writes the changed ones
// to PostgreSQL every Config.QuotaFlushEvery: no I/O per request.
type quotas struct {
	mu    sync.Mutex
	dirty map[int64]map[string]string
}

func (q *quotas) observe(accountID int64, h http.Header) {
	var snap map[string]string
	for k, v := range h {
		lk := strings.ToLower(k)
		for _, p := range quotaPrefixes {
			if strings.HasPrefix(lk, p) && len(v) > 0 {
				if snap == nil {
					snap = map[string]string{}
				}
				snap[lk] = v[0]
				break
			}
		}
	}
	if snap == nil {
		return
	}
	snap["observed_at"] = time.Now().UTC().Format(time.RFC3339)
	q.mu.Lock()
	if q.dirty == nil {
		q.dirty = map[int64]map[string]string{}
	}
	q.dirty[accountID] = snap
	q.mu.Unlock()
}

func (q *quotas) take() map[int64]map[string]string {
	q.mu.Lock()
	defer q.mu.Unlock()
	d := q.dirty
	q.dirty = nil
	return d
}

// quotaWriter flushes observed quota headers until ctx ends.
func (s *Server) quotaWriter(ctx context.Context) {
	t := time.NewTicker(s.cfg.QuotaFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.flushQuotas(context.WithoutCancel(ctx))
			return
		case <-t.C:
			s.flushQuotas(ctx)
		}
	}
}

func (s *Server) flushQuotas(ctx context.Context) {
	if s.cfg.SetAccountQuota == nil {
		return
	}
	for id, snap := range s.quotas.take() {
		b, _ := json.Marshal(snap)
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := s.cfg.SetAccountQuota(wctx, id, b); err != nil {
			s.log.Warn("record account quota", "account_id", id, "err", err)
		}
		cancel()
	}
}
