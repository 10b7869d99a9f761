// Package relay is the proxy's data plane: HTTP handlers per wire protocol that
// authenticate the key, admit the request, pick an upstream account, forward the body
// unchanged, stream the answer back event by event, meter it and record its cost.
package relay

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/account"
	"github.com/tollgate/tollgate/internal/apikey"
	"github.com/tollgate/tollgate/internal/billing"
	"github.com/tollgate/tollgate/internal/invalidate"
	"github.com/tollgate/tollgate/internal/limit"
	"github.com/tollgate/tollgate/internal/schedule"
	"github.com/tollgate/tollgate/internal/usage"
)

// Config wires a Server.
type Config struct {
	Log      *slog.Logger
	Keys     *apikey.Cache
	Accounts *schedule.Store
	Pricing  *billing.Pricing
	Gate     *limit.Gate
	Redis    redis.UniversalClient
	Prefix   string // Redis key prefix
	// Invalidations returns the cache invalidations recorded in PostgreSQL since its last
	// call (invalidate.Feed), read every invalidationPoll beside the Redis messages,
	// which a Redis outage or a lost message would otherwise leave unseen until the
	// caches expire. Nil: messages only.
	Invalidations func(ctx context.Context) ([]invalidate.Event, error)
	// Fallback records a usage event when the Redis completion fails, so a served
	// request is never lost (normally a direct PostgreSQL ingest).
	Fallback func(ctx context.Context, ev usage.Event) error
	// Recorded reports whether PostgreSQL already holds a request's usage event (one the
	// fallback wrote): an orphan sweep then drops its checkpoint instead of billing it.
	Recorded func(ctx context.Context, requestID string) (bool, error)
	// Spool keeps events that neither Redis nor the fallback took; Deliver hands them
	// on later (Redis stream, else PostgreSQL).
	Spool   *usage.Spool
	Deliver func(ctx context.Context, evs []usage.Event) error
	// Redeliver stores events straight in PostgreSQL, idempotently, with whatever else
	// that takes (the counters' reset): those Redis acknowledged shortly before it
	// changed identity (recent.go).
	Redeliver  func(ctx context.Context, evs []usage.Event) error
	SpoolEvery time.Duration // how often spooled events are retried; default 10 s
	// Journal keeps each usage event from the moment its answer is read until a store
	// has it (usage.Journal); ReplayJournals delivers the events dead proxies left in
	// theirs, with the spool's schedule.
	Journal        *usage.Journal
	ReplayJournals func(ctx context.Context) error
	Transport      http.RoundTripper
	Registry       *prometheus.Registry
	MaxBodyBytes   int64         // default 32 MiB
	StreamLimit    time.Duration // longest an upstream exchange may run; default 30 min
	// HeaderTimeout: a streamed request fails over (class upstream_timeout) when its
	// upstream sends no response headers within it; IdleTimeout: a stream is cut (class
	// upstream_stalled) when its upstream sends nothing for that long (stall.go);
	// ResponseTimeout: a non-streamed request fails like a streamed one without headers
	// when its answer has not come within it. 0: only StreamLimit bounds them.
	HeaderTimeout, IdleTimeout, ResponseTimeout time.Duration
	// Ready reports whether the dependencies requests need answer, for /readyz.
	Ready func(ctx context.Context) error
	// SetAccountState persists an account's state change (asynchronously, once per
	// change) and announces it so every proxy reloads its snapshot.
	SetAccountState func(ctx context.Context, id int64, state, reason string, until *time.Time) error
	// KeyPrefixes lists the hash prefixes of existing keys (reloaded with the snapshots)
	// so that random keys are refused without a database lookup each.
	KeyPrefixes apikey.PrefixLoader
	// QuotaFlushEvery is how often observed quota headers are written; default 15 s.
	QuotaFlushEvery time.Duration
	// SetAccountQuota stores an account's latest quota headers (JSON) for the console.
	SetAccountQuota func(ctx context.Context, id int64, snapshot []byte) error
	// Refresh redeems an OAuth account's refresh token after its access token was
	// refused (account.Refresher.Refresh); nil disables refreshing.
	Refresh func(ctx context.Context, accountID int64, rejectedAccessToken string) (account.Credential, error)
}

// Server serves the proxy routes.
type Server struct {
	cfg      Config
	log      *slog.Logger
	metrics  *metrics
	draining atomic.Bool
	// subscribed: the invalidation channel is live, so caches hear about changes.
	subscribed atomic.Bool
	states     chan stateChange
	egress     egressPool
	quotas     quotas
	// completions counts attempts whose completion (lease release, usage record) is
	// still running after their response ended.
	completions sync.WaitGroup
	afterOnce   sync.Once
	afterQueue  chan func()
	// inflight counts upstream exchanges in progress (memoryLoop).
	inflight atomic.Int64
	// recent keeps the usage events Redis acknowledged in its last seconds (recent.go);
	// redisID is Redis's identity when the proxy started (PrepareRedis).
	recent  recentEvents
	redisID string
	// deferred holds the light-load completions waiting out lightCompletionDelay.
	deferredMu  sync.Mutex
	deferred    map[uint64]*deferredCompletion
	deferredSeq uint64
	deferredN   atomic.Int32
}

type deferredCompletion struct {
	id   uint64
	user int64
	run  func()
	// started is set by whoever runs it (the timer or settleDeferred); done is closed
	// once it has run. It stays in the map until then, so that the same user's next
	// admission can wait for a completion the timer has already started.
	started bool
	done    chan struct{}
}

// deferCompletion runs complete after lightCompletionDelay from the call of the function
// it returns, or before the admission of the same user's next request if that comes
// first (settleDeferred). The caller registers the completion before its answer leaves
// and arms the delay after: registered only after the flush, a completion could be missed
// by the next request of a client that read the answer first (its admission then found
// the previous request's slot still taken: a 429 where limits are not waited for).
func (s *Server) deferCompletion(user int64, complete func()) (arm func()) {
	s.deferredMu.Lock()
	if s.deferred == nil {
		s.deferred = make(map[uint64]*deferredCompletion)
	}
	s.deferredSeq++
	id := s.deferredSeq
	s.deferred[id] = &deferredCompletion{id: id, user: user, run: complete, done: make(chan struct{})}
	s.deferredN.Add(1)
	s.deferredMu.Unlock()
	return func() {
		time.AfterFunc(lightCompletionDelay, func() {
			s.deferredMu.Lock()
			d := s.deferred[id]
			start := d != nil && !d.started
			if start {
				d.started = true
			}
			s.deferredMu.Unlock()
			if start {
				s.runDeferred(d)
			}
		})
	}
}

// runDeferred runs a deferred completion its caller has marked started, then forgets it.
func (s *Server) runDeferred(d *deferredCompletion) {
	d.run()
	s.deferredMu.Lock()
	delete(s.deferred, d.id)
	s.deferredN.Add(-1)
	s.deferredMu.Unlock()
	close(d.done)
}

// settleDeferred runs the deferred completions of this user's earlier requests on the
// caller's goroutine, and waits for those the timer has already started, so that the
// admission that follows sees their leases released and their cost in the balance
// snapshot and spend counters (and takes the admission a completion reserved, rather
// than being admitted beside it): a client that sends its requests one after the other
// meets its limits exactly as if each completion had run before its answer. (Without
// the wait, a completion started by its timer just before the next request raced that
// request's admission: on a loaded machine a sequential client went two requests over
// a spending cap.)
func (s *Server) settleDeferred(user int64) {
	if s.deferredN.Load() == 0 {
		return
	}
	var runs []*deferredCompletion
	var waits []chan struct{}
	s.deferredMu.Lock()
	for _, d := range s.deferred {
		if d.user != user {
			continue
		}
		if d.started {
			waits = append(waits, d.done)
			continue
		}
		d.started = true
		runs = append(runs, d)
	}
	s.deferredMu.Unlock()
	for _, d := range runs {
		s.runDeferred(d)
	}
	for _, done := range waits {
		<-done
	}
}

// Completion workers: completions run on long-lived goroutines whose stacks have already
// grown to what the work needs (a new goroutine per completion spent 3 % of the proxy's
// CPU growing its stack). When the queue is full a completion gets its own goroutine:
// it is never dropped and never makes the client wait.
const (
	afterWorkers = 64
	afterBacklog = 4096
)

// after runs f soon, off the request's goroutine.
func (s *Server) after(f func()) {
	s.afterOnce.Do(func() {
		s.afterQueue = make(chan func(), afterBacklog)
		for range afterWorkers {
			go func() {
				for f := range s.afterQueue {
					f()
				}
			}()
		}
	})
	select {
	case s.afterQueue <- f:
	default:
		go f()
	}
}

// New returns a server; call Run to keep its caches fresh.
func New(cfg Config) *Server {
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 32 << 20
	}
	if cfg.StreamLimit == 0 {
		cfg.StreamLimit = 30 * time.Minute
	}
	if cfg.QuotaFlushEvery == 0 {
		cfg.QuotaFlushEvery = 15 * time.Second
	}
	if cfg.Transport == nil {
		cfg.Transport = NewTransport()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	s := &Server{cfg: cfg, log: cfg.Log, metrics: newMetrics(cfg.Registry), states: make(chan stateChange, 1024)}
	// The recent-events keep is aged and handed on only by redisWatchLoop.
	s.recent.off.Store(!s.watchesRedis())
	return s
}

// watchesRedis: Redis's identity is watched, so that the usage it loses is stored again
// (recent.go).
func (s *Server) watchesRedis() bool { return s.cfg.Redis != nil && s.cfg.Redeliver != nil }

// Handler is the proxy's route table.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/messages", func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, &anthropicMessages) })
	mux.HandleFunc("POST /v1/messages/count_tokens", func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, &anthropicCountTokens) })
	mux.HandleFunc("GET /v1/models", s.models)
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, &openAIChat) })
	mux.HandleFunc("POST /v1/responses", func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, &openAIResponses) })
	mux.HandleFunc("POST /backend-api/codex/responses", func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, &openAIResponses) })
	mux.HandleFunc("GET /v1/responses", responsesWebSocket)
	mux.HandleFunc("GET /v1beta/models", s.geminiModels)
	mux.HandleFunc("POST /v1beta/models/{target}", s.geminiAction)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) }) //nolint:errcheck
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		anthropicError(w, http.StatusNotFound, errNotFound, "Tollgate: no route for "+r.Method+" "+r.URL.Path, "")
	})
	return mux
}

// WaitCompletions waits (up to timeout) for completions still recording usage.
func (s *Server) WaitCompletions(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() {
		s.completions.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Drain makes /readyz fail so load balancers stop sending new requests during shutdown.
func (s *Server) Drain() { s.draining.Store(true) }

// servesWithoutRedis reports REDIS_OUTAGE=serve (limit/local.go): the proxy is ready and
// serves while Redis is away, its caches kept fresh by the periodic reloads and the key
// cache's TTL until it can subscribe to invalidations.
func (s *Server) servesWithoutRedis() bool {
	return s.cfg.Gate != nil && s.cfg.Gate.Options().RedisOutage == limit.OutageServe
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	}
	if !s.subscribed.Load() && !s.servesWithoutRedis() {
		http.Error(w, "not ready: not yet subscribed to cache invalidations", http.StatusServiceUnavailable)
		return
	}
	if s.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.cfg.Ready(ctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	w.Write([]byte("ready\n")) //nolint:errcheck
}

// Run keeps the caches fresh until ctx ends: it applies invalidation messages from the
// web app and reloads the account and price snapshots periodically as a safety net.
func (s *Server) Run(ctx context.Context) {
	go s.refreshLoop(ctx)
	go s.stateWriter(ctx)
	go s.quotaWriter(ctx)
	go s.spoolLoop(ctx)
	go s.sweepLoop(ctx)
	go s.memoryLoop(ctx)
	if s.watchesRedis() {
		go s.redisWatchLoop(ctx)
	}
	go s.cfg.Gate.Run(ctx)
	if s.cfg.Invalidations != nil {
		go s.invalidationPollLoop(ctx)
	}
	s.invalidationLoop(ctx)
}

func (s *Server) reloadSnapshots(ctx context.Context) {
	if s.cfg.KeyPrefixes != nil {
		if err := s.cfg.Keys.ReloadKnown(ctx, s.cfg.KeyPrefixes); err != nil {
			s.log.Error("reload known keys", "err", err)
		}
	}
	if err := s.cfg.Accounts.Reload(ctx); err != nil {
		s.log.Error("reload account snapshot", "err", err)
	}
	if err := s.cfg.Pricing.Reload(ctx); err != nil {
		s.log.Error("reload price snapshot", "err", err)
	}
}

// memoryLoop gives memory back after a burst. Thousands of open streams leave hundreds of
// megabytes of garbage when they end, and with nothing allocating no collection comes to
// free it (the next burst would then start on top of it: the 10k-stream bench peaked
// 30 % higher in its third round than in its first). When the number of exchanges in
// flight falls to a tenth of a peak of at least burstStreams, the proxy collects and
// returns the freed pages to the OS, once per burst.
func (s *Server) memoryLoop(ctx context.Context) {
	const burstStreams = 1000
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var peak int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := s.inflight.Load()
		peak = max(peak, n)
		if peak >= burstStreams && n <= peak/10 {
			// Two collections: the first moves what the burst's connections left in
			// sync.Pools (their buffers, here and in net/http) to the pools' victim
			// caches, the second frees it; FreeOSMemory's then returns the pages.
			runtime.GC()
			debug.FreeOSMemory()
			s.log.Info("burst over; memory returned", "peak_in_flight", peak, "in_flight", n)
			peak = n
		}
	}
}

// sweepLoop bills the checkpoints of streams whose proxy died mid-stream (their leases
// expired without a completion), every third of the lease TTL and at start. Every proxy
// sweeps; the completion script lets one of them bill each request.
func (s *Server) sweepLoop(ctx context.Context) {
	t := time.NewTicker(max(s.cfg.Gate.Options().LeaseTTL/3, time.Second))
	defer t.Stop()
	for {
		s.sweepOrphans(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) sweepOrphans(ctx context.Context) {
	for range 10 { // at most 1,000 per sweep; the next sweep goes on
		orphans, err := s.cfg.Gate.Orphans(ctx, 100)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("look for orphaned streams", "err", err)
			}
			return
		}
		for _, o := range orphans {
			var ev usage.Event
			if err := json.Unmarshal(o.Event, &ev); err != nil {
				s.log.Error("orphaned stream checkpoint unreadable; billing it needs a hand", "request_id", o.RequestID, "err", err, "event", string(o.Event))
				if err := s.cfg.Gate.Forget(ctx, o.RequestID); err != nil {
					s.log.Warn("drop unreadable checkpoint", "request_id", o.RequestID, "err", err)
				}
				continue
			}
			if s.cfg.Recorded != nil {
				// Completed through the PostgreSQL fallback while Redis was away (the journal
				// entry outlived it): billed already.
				done, err := s.cfg.Recorded(ctx, o.RequestID)
				if err != nil {
					s.log.Warn("look up orphaned stream in the ledger (will retry)", "request_id", o.RequestID, "err", err)
					return
				}
				if done {
					if err := s.cfg.Gate.Forget(ctx, o.RequestID); err != nil {
						s.log.Warn("drop checkpoint of a recorded request", "request_id", o.RequestID, "err", err)
					}
					continue
				}
			}
			lease := limit.Lease{RequestID: o.RequestID, UserID: ev.UserID, KeyID: ev.KeyID, AccountID: ev.AccountID, Orphan: true}
			err := s.cfg.Gate.Complete(ctx, lease, usage.StreamKey(s.cfg.Prefix), o.Event, ev.BilledNano)
			switch {
			case err == nil:
				s.log.Warn("billed a stream whose proxy died, from its checkpoint", "request_id", o.RequestID, "billed_nano", ev.BilledNano)
			case errors.Is(err, limit.ErrSwept), errors.Is(err, limit.ErrAlive): // billed elsewhere, or not an orphan
			default:
				s.log.Warn("bill orphaned stream (will retry)", "request_id", o.RequestID, "err", err)
				return
			}
		}
		if len(orphans) < 100 {
			return
		}
	}
}

// spoolLoop delivers, now and then and at start, the usage events dead proxies left in
// their journals and those spooled because no store took them, and retries the counter
// resets Redis refused (limit.Gate.ResetCounters).
func (s *Server) spoolLoop(ctx context.Context) {
	t := time.NewTicker(cmp.Or(s.cfg.SpoolEvery, 10*time.Second))
	defer t.Stop()
	for {
		if s.cfg.ReplayJournals != nil {
			if err := s.cfg.ReplayJournals(ctx); err != nil {
				s.log.Warn("deliver the usage events dead proxies journaled (will retry)", "err", err)
			}
		}
		if s.cfg.Spool != nil && s.cfg.Deliver != nil {
			if err := s.cfg.Spool.Replay(ctx, s.cfg.Deliver); err != nil {
				s.log.Warn("deliver spooled usage (will retry)", "err", err)
			}
		}
		if s.cfg.Gate != nil {
			if err := s.cfg.Gate.ResetCounters(ctx); err != nil {
				s.log.Warn("reset the counters of usage stored without Redis (will retry)", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) refreshLoop(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.reloadSnapshots(ctx)
		}
	}
}

func (s *Server) invalidationLoop(ctx context.Context) {
	ps := s.cfg.Redis.Subscribe(ctx, invalidate.Channel(s.cfg.Prefix))
	defer ps.Close()
	for {
		msg, err := ps.Receive(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			time.Sleep(200 * time.Millisecond) // go-redis reconnects; don't spin meanwhile
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			// (Re)subscribed: messages may have been missed while disconnected, or,
			// serving without Redis, before this proxy first subscribed. The recorded
			// events bring what they said (Invalidations); without them, every cached
			// key goes.
			if s.subscribed.Swap(true) || s.servesWithoutRedis() {
				if s.cfg.Invalidations == nil {
					s.cfg.Keys.Flush()
				}
				s.reloadSnapshots(ctx)
			}
		case *redis.Message:
			if ev, ok := invalidate.Parse(m.Payload); ok {
				s.apply(ctx, ev)
			}
		}
	}
}

// invalidationPoll is how often a proxy reads the recorded invalidations: the longest a
// change whose Redis message was lost takes to reach it. One indexed read that finds
// nothing, most of the time.
const invalidationPoll = time.Second

// invalidationPollLoop applies the invalidations recorded in PostgreSQL (Invalidations)
// every invalidationPoll. Most arrive a second time here, after their Redis message:
// dropping a cache entry again costs one lookup, and the snapshots' reloads are cheap.
// While PostgreSQL is away the loop says so once, and catches up when it returns.
func (s *Server) invalidationPollLoop(ctx context.Context) {
	t := time.NewTicker(invalidationPoll)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		evs, err := s.cfg.Invalidations(ctx)
		if err != nil {
			if !failing && ctx.Err() == nil {
				s.log.Warn("read cache invalidations from PostgreSQL (retried every poll; Redis messages still apply)", "err", err)
			}
			failing = true
			s.metrics.feedFailing.Set(1)
			continue
		}
		if failing {
			s.log.Info("reading cache invalidations from PostgreSQL again")
			failing = false
			s.metrics.feedFailing.Set(0)
		}
		// A burst of changes (accounts cooling down one after another) reloads a
		// snapshot once per read, not once per change.
		applied := make(map[invalidate.Event]bool, len(evs))
		for _, ev := range evs {
			if !applied[ev] {
				applied[ev] = true
				s.apply(ctx, ev)
			}
		}
	}
}

// apply drops what an invalidation names from the caches, or reloads the snapshot it
// names.
func (s *Server) apply(ctx context.Context, ev invalidate.Event) {
	switch ev.Kind {
	case invalidate.Key:
		s.cfg.Keys.InvalidateHash(ev.ID)
	case invalidate.User:
		if id, err := strconv.ParseInt(ev.ID, 10, 64); err == nil {
			s.cfg.Keys.InvalidateUser(id)
		}
	case invalidate.Accounts:
		if err := s.cfg.Accounts.Reload(ctx); err != nil {
			s.log.Error("reload account snapshot", "err", err)
		}
	case invalidate.Prices:
		if err := s.cfg.Pricing.Reload(ctx); err != nil {
			s.log.Error("reload price snapshot", "err", err)
		}
	}
}

// newRequestID names a request (limit.NewRequestID: a reserved admission names its
// request before it arrives, so the ids come from there).
func newRequestID() string { return limit.NewRequestID() }

// keyFrom reads the client's key: x-api-key, x-goog-api-key, else Authorization: Bearer.
func keyFrom(r *http.Request) string {
	if k := r.Header.Get("X-Api-Key"); k != "" {
		return k
	}
	if k := r.Header.Get("X-Goog-Api-Key"); k != "" {
		return k
	}
	if a := r.Header.Get("Authorization"); len(a) > 7 && (a[:7] == "Bearer " || a[:7] == "bearer ") {
		return a[7:]
	}
	return ""
}

// keyInQuery reports a key passed in the URL, which would leak into logs and histories.
func keyInQuery(r *http.Request) bool {
	q := r.URL.Query()
	return q.Has("key") || q.Has("api_key") || q.Has("x-api-key")
}
