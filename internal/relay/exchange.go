package relay

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"hash/fnv"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/internal/apikey"
	"github.com/tollgate/tollgate/internal/billing"
	"github.com/tollgate/tollgate/internal/limit"
	"github.com/tollgate/tollgate/internal/schedule"
	"github.com/tollgate/tollgate/internal/usage"
)

// Failover bounds: at most maxAttempts accounts per request, and no new attempt once
// failoverWindow has passed since the request arrived (a client waiting longer than
// that is better served by the upstream's own error).
const (
	maxAttempts     = 3
	failoverWindow  = 45 * time.Second
	maxErrorBody    = 64 << 10
	maxResponseBody = 64 << 20 // a non-streaming answer held in memory to read its usage
)

// serve runs one request through the shared pipeline.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, p *protocol) {
	start := time.Now()
	rid := newRequestID()
	w.Header().Set("X-Tollgate-Request-Id", rid)
	code := s.handle(w, r, p, rid, start)
	s.metrics.requests.WithLabelValues(p.endpoint, strconv.Itoa(code)).Inc()
	s.metrics.duration.WithLabelValues(p.endpoint).Observe(time.Since(start).Seconds())
}

// authenticate reads and checks the client's key, or writes the refusal.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, p *protocol, rid string, now time.Time) (apikey.Info, int) {
	fail := func(status int, typ, msg string) (apikey.Info, int) {
		p.writeError(w, status, typ, msg, rid)
		return apikey.Info{}, status
	}
	if keyInQuery(r) {
		return fail(http.StatusBadRequest, errInvalidRequest, "Tollgate: API keys are not accepted in the URL; send the x-api-key or Authorization: Bearer header")
	}
	plaintext := keyFrom(r)
	if plaintext == "" {
		return fail(http.StatusUnauthorized, errAuthentication, "Tollgate: missing API key; send it in the x-api-key or Authorization: Bearer header")
	}
	key, err := s.cfg.Keys.Get(r.Context(), plaintext)
	if errors.Is(err, apikey.ErrUnknown) {
		return fail(http.StatusUnauthorized, errAuthentication, "Tollgate: invalid API key")
	}
	if errors.Is(err, apikey.ErrBusy) {
		w.Header().Set("Retry-After", "1")
		return fail(http.StatusServiceUnavailable, errUnavailable, "Tollgate: "+err.Error())
	}
	if err != nil {
		s.log.Error("look up API key", "request_id", rid, "err", err)
		return fail(http.StatusServiceUnavailable, errUnavailable, "Tollgate: cannot verify API keys right now; retry shortly")
	}
	if why := key.Refusal(now, remoteIP(r)); why != "" {
		status := http.StatusForbidden
		if key.Status == "revoked" || (key.ExpiresAt != nil && !now.Before(*key.ExpiresAt)) {
			status = http.StatusUnauthorized
		}
		return fail(status, errAuthentication, "Tollgate: "+why)
	}
	return key, 0
}

// handle authenticates, admits and relays; it returns the status the client got.
func (s *Server) handle(w http.ResponseWriter, r *http.Request, p *protocol, rid string, start time.Time) int {
	fail := func(status int, typ, msg string) int {
		p.writeError(w, status, typ, msg, rid)
		return status
	}
	key, status := s.authenticate(w, r, p, rid, start)
	if status != 0 {
		return status
	}
	body, err := readBody(w, r, s.cfg.MaxBodyBytes)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return fail(http.StatusRequestEntityTooLarge, errTooLarge,
				"Tollgate: request body exceeds "+strconv.FormatInt(s.cfg.MaxBodyBytes>>20, 10)+" MiB")
		}
		return fail(http.StatusBadRequest, errInvalidRequest, "Tollgate: could not read the request body")
	}
	req, err := sniff(body)
	if err != nil {
		return fail(http.StatusBadRequest, errInvalidRequest, "Tollgate: "+err.Error())
	}
	if p.request != nil {
		if err := p.request(r, &req); err != nil {
			return fail(http.StatusBadRequest, errInvalidRequest, "Tollgate: "+err.Error())
		}
	}
	if req.Model == "" {
		return fail(http.StatusBadRequest, errInvalidRequest, "Tollgate: model is required")
	}
	if msg := badModelName(req.Model); msg != "" {
		return fail(http.StatusBadRequest, errInvalidRequest, "Tollgate: "+msg)
	}
	if !key.AllowsModel(req.Model) {
		return fail(http.StatusForbidden, errPermission, "Tollgate: this API key may not use model "+strconv.Quote(req.Model))
	}
	cands := s.cfg.Accounts.Candidates(key.GroupID, p.provider, req.Model)
	if p.accepts != nil {
		cands = slices.DeleteFunc(cands, func(a *schedule.Account) bool { return !p.accepts(a) })
	}
	if p.billable && len(cands) > 0 {
		// An account whose (mapped) model has no price is never used: the request would
		// be served for free.
		var priceErr error
		cands = slices.DeleteFunc(cands, func(a *schedule.Account) bool {
			err := s.cfg.Pricing.Priced(key.GroupID, p.provider, a.UpstreamModel(req.Model), start)
			priceErr = cmp.Or(priceErr, err)
			return err != nil
		})
		if len(cands) == 0 {
			return fail(http.StatusBadRequest, errUnpricedModel,
				"Tollgate cannot bill model "+strconv.Quote(req.Model)+" ("+strings.TrimPrefix(priceErr.Error(), billing.ErrUnpriced.Error()+": ")+"), so it is not served; ask the operator to add a price")
		}
	}
	if len(cands) == 0 {
		return fail(http.StatusServiceUnavailable, errNoUpstream, "Tollgate has no upstream account available for model "+strconv.Quote(req.Model)+" right now")
	}

	areq := limit.Request{
		RequestID: rid, UserID: key.UserID, KeyID: key.KeyID,
		UserConcurrency: key.UserConcurrency, KeyConcurrency: key.Concurrency, KeyRPM: key.RPM,
		Session: sessionOf(key.KeyID, r, &req), Candidates: toCandidates(cands),
		KeyDailyCap: key.DailyCap, KeyMonthlyCap: key.MonthlyCap, UserDailyCap: key.UserDaily,
	}
	s.settleDeferred(key.UserID)
	lease, err := s.cfg.Gate.Admit(r.Context(), areq)
	if lease.Reserved {
		// Admitted ahead of time (limit/reserve.go): the request takes the id its
		// reservation was made under, the member of its leases.
		rid, areq.RequestID = lease.RequestID, lease.RequestID
		w.Header().Set("X-Tollgate-Request-Id", rid)
	}
	s.metrics.queueWait.Observe(lease.Waited.Seconds())
	if err != nil {
		var refusal *limit.Refusal
		switch {
		case errors.As(err, &refusal):
			if refusal.RetryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(int((refusal.RetryAfter+time.Second-1)/time.Second)))
			}
			return fail(refusal.Status, refusal.Type, refusal.Message)
		case errors.Is(err, limit.ErrNoAccount):
			return fail(http.StatusServiceUnavailable, errNoUpstream, "Tollgate has no upstream account available for model "+strconv.Quote(req.Model)+" right now (all are cooling down or rate-limited)")
		case r.Context().Err() != nil:
			return 499 // the client gave up while waiting
		}
		s.log.Error("admission", "request_id", rid, "err", err)
		return fail(http.StatusServiceUnavailable, errUnavailable, "Tollgate cannot check limits right now; retry shortly")
	}
	x := &exchange{s: s, p: p, w: w, r: r, rid: rid, start: start, key: key, model: req.Model,
		clientStream: req.Stream, clientIP: remoteIP(r)}
	if p.prepare != nil {
		body, x.filter = p.prepare(&req, body)
	}
	return x.run(body, &req, cands, areq, lease)
}

// readBody reads the request body, at most limit bytes. With a small Content-Length
// (every SDK sends one) the buffer is allocated once at its size instead of grown by
// doubling; a large one is not trusted with memory before its bytes arrive (64 KiB per
// connection at most is held for a body that trickles in).
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	if r.ContentLength >= 0 && r.ContentLength <= 64<<10 {
		body := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return nil, err
		}
		return body, nil
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
}

func toCandidates(accs []*schedule.Account) []limit.Candidate {
	out := make([]limit.Candidate, len(accs))
	for i, a := range accs {
		out[i] = limit.Candidate{ID: a.ID, Priority: a.Priority, Weight: a.Weight, MaxConcurrency: a.MaxConcurrency}
	}
	return out
}

// sessionOf derives the sticky-session key, namespaced by API key: Claude Code's or
// Codex's session header, metadata.user_id, OpenAI's prompt_cache_key or
// previous_response_id, else a hash of the system prompt and first message (the stable
// head of a conversation). "" when the request carries no hint.
func sessionOf(keyID int64, r *http.Request, req *sniffed) string {
	h := fnv.New64a()
	var meta string
	if req.Metadata != nil {
		meta = metadataSession(req.Metadata)
	}
	switch {
	case r.Header.Get("X-Claude-Code-Session-Id") != "":
		h.Write([]byte("s:" + r.Header.Get("X-Claude-Code-Session-Id")))
	case r.Header.Get("Session_id") != "" || r.Header.Get("Session-Id") != "":
		h.Write([]byte("s:" + r.Header.Get("Session_id") + r.Header.Get("Session-Id")))
	case meta != "":
		h.Write([]byte("m:" + meta))
	case req.Hints != nil: // OpenAI prompt_cache_key / previous_response_id
		h.Write([]byte("h:"))
		h.Write(req.Hints)
	case req.System != nil || req.FirstMsg != nil:
		h.Write(req.System)
		h.Write([]byte{0})
		h.Write(req.FirstMsg)
	default:
		return ""
	}
	return strconv.FormatInt(keyID, 10) + ":" + strconv.FormatUint(h.Sum64(), 36)
}

// metadataSession reads metadata.user_id; Claude Code puts JSON with a session_id in it.
func metadataSession(meta []byte) string {
	var m struct {
		UserID string `json:"user_id"`
	}
	if json.Unmarshal(meta, &m) != nil || m.UserID == "" {
		return ""
	}
	if strings.HasPrefix(m.UserID, "{") {
		var inner struct {
			SessionID string `json:"session_id"`
		}
		if json.Unmarshal([]byte(m.UserID), &inner) == nil && inner.SessionID != "" {
			return inner.SessionID
		}
	}
	return m.UserID
}

// exchange is one client request and its upstream attempts.
type exchange struct {
	s        *Server
	p        *protocol
	w        http.ResponseWriter
	r        *http.Request
	rid      string
	start    time.Time
	key      apikey.Info
	model    string
	clientIP netip.Addr
	// clientStream: the client asked for a stream; filter edits what it receives.
	clientStream bool
	// guard watches the current attempt's upstream for stalls (stall.go); nil if none.
	guard  *stallGuard
	filter lineFilter
	// The attempt running now, for a stream's checkpoint (checkpoint).
	lease         *limit.Lease
	attemptNo     int
	upstreamModel string
	// ckpt is closed when the checkpoint call has returned; ckptSlot is the checkpoint's
	// journal slot (usage.Journal), freed once the stream's final event is journaled.
	ckpt     chan struct{}
	ckptSlot int32
	// completing: the completion (which stops renewing the lease) is on its way.
	completing bool
}

// outcome is what one attempt produced.
type outcome struct {
	acc       *schedule.Account
	committed bool // bytes (or at least headers) went to the client: never retry
	status    int
	class     string // failure class; "" for a clean answer
	// For an uncommitted failure: the response to give the client if no other
	// account can serve, and when the account may be used again.
	header     http.Header
	body       []byte
	retryAt    time.Time
	reason     string // human reason for an account state change
	stream     bool
	ttfb       time.Duration
	usage      billing.Usage
	sawUsage   bool
	upstreamID string
	local      bool // failed for lack of local resources (never the account's fault)
	// bill is what the outcome costs, priced and journaled once (prepareBill).
	bill      bill
	billReady bool
}

// bill is an outcome's usage event, priced.
type bill struct {
	ev      usage.Event
	payload []byte // ev encoded; nil when there is nothing to bill
	nano    int64
	slot    int32 // its usage.Journal slot; -1 when not journaled
}

// localExhaustion reports errors of this machine running out of descriptors or buffers.
func localExhaustion(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOBUFS)
}

func (x *exchange) run(body []byte, req *sniffed, cands []*schedule.Account, areq limit.Request, lease limit.Lease) int {
	s := x.s
	defer func() {
		if !x.completing { // a panic: stop renewing; the lease expires
			s.cfg.Gate.Untrack(lease.RequestID)
		}
	}()
	var last outcome
	var refreshed *schedule.Account // an OAuth account with the credential refreshed in this request
	for attempt := 1; ; attempt++ {
		acc := accountByID(cands, lease.AccountID)
		if refreshed != nil && refreshed.ID == acc.ID {
			acc = refreshed
		}
		attemptBody := body
		upstreamModel := acc.UpstreamModel(x.model)
		if upstreamModel != x.model && req.modelEnd > 0 {
			attemptBody = req.withModel(body, upstreamModel)
		}
		s.cfg.Gate.Track(lease) // renewed while it runs, with every other lease of this process
		x.lease, x.attemptNo, x.upstreamModel = &lease, attempt, upstreamModel
		last = x.attempt(acc, attemptBody, upstreamModel)
		if last.committed {
			x.completeAfterResponse(lease, attempt, last, upstreamModel)
			return last.status
		}
		if last.local {
			x.p.writeError(x.w, http.StatusServiceUnavailable, errUnavailable,
				"Tollgate is overloaded right now ("+last.reason+"); retry shortly", x.rid)
			x.completeAfterResponse(lease, 0, last, "")
			return http.StatusServiceUnavailable
		}
		if last.class == "auth_failed" && acc.Kind == "oauth" && refreshed == nil && s.cfg.Refresh != nil {
			// The access token was refused: refresh it once (cluster-wide single use of the
			// refresh token) and retry the same account.
			cred, err := s.cfg.Refresh(x.r.Context(), acc.ID, acc.Credential.AccessToken)
			if err == nil {
				c := *acc
				c.Credential = cred
				refreshed = &c
				continue
			}
			s.log.Warn("refresh OAuth token", "request_id", x.rid, "account_id", acc.ID, "err", err)
			last.reason = "the provider rejected the access token and refreshing it failed: " + err.Error()
			refreshed = acc
		}
		s.penalize(acc, &last)
		areq.Candidates = slices.DeleteFunc(areq.Candidates, func(c limit.Candidate) bool { return c.ID == acc.ID })
		if attempt >= maxAttempts || time.Since(x.start) > failoverWindow || len(areq.Candidates) == 0 {
			break
		}
		if err := s.cfg.Gate.Failover(x.r.Context(), &lease, areq); err != nil {
			break
		}
		s.log.Info("failover", "request_id", x.rid, "from_account", acc.ID, "to_account", lease.AccountID, "class", last.class)
	}
	// No account could serve: the client gets the last upstream answer as it was.
	x.deliver(&last)
	x.completeAfterResponse(lease, 0, last, "")
	return last.status
}

func accountByID(accs []*schedule.Account, id int64) *schedule.Account {
	for _, a := range accs {
		if a.ID == id {
			return a
		}
	}
	return accs[0] // unreachable: the gate only returns candidates it was given
}

// attempt sends the request to one account. A response another account might improve
// (connect error, 5xx, 529, 429, 401, 403) is held back uncommitted; anything else is
// relayed to the client as it arrives.
func (x *exchange) attempt(acc *schedule.Account, body []byte, upstreamModel string) outcome {
	s := x.s
	o := outcome{acc: acc}
	// The upstream exchange outlives the client: if the client goes away mid-stream,
	// Tollgate reads the upstream to its end so the bill matches what the provider
	// charges (README, "Client disconnects"). StreamLimit bounds it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(x.r.Context()), s.cfg.StreamLimit)
	defer cancel()
	// An upstream that stops making progress is cut short (stall.go). A non-streamed
	// answer's headers come with the whole answer, which can take minutes: it has
	// ResponseTimeout to come, and then is read without an idle limit.
	headerTimeout, idleTimeout := s.cfg.HeaderTimeout, s.cfg.IdleTimeout
	if !x.clientStream {
		headerTimeout, idleTimeout = s.cfg.ResponseTimeout, 0
	}
	x.guard = nil
	if headerTimeout > 0 || idleTimeout > 0 {
		x.guard = newStallGuard(cancel, headerTimeout)
		defer x.guard.stop()
	}
	target := joinURL(acc.BaseURL, x.r.URL.Path, x.r.URL.RawQuery)
	if x.p.upstreamURL != nil {
		target = x.p.upstreamURL(acc, x.r, upstreamModel)
	}
	up, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return x.tollgateFailure(o, "bad_upstream_url", "the account's base URL is invalid")
	}
	up.Header = upstreamRequestHeader(x.r.Header)
	x.p.setCredential(up.Header, acc)
	up.ContentLength = int64(len(body))

	s.metrics.activeStreams.Inc()
	s.inflight.Add(1)
	defer func() {
		s.metrics.activeStreams.Dec()
		s.inflight.Add(-1)
	}()
	resp, err := s.transportFor(acc).RoundTrip(up)
	if err != nil {
		if localExhaustion(err) {
			// Out of file descriptors or buffers here: not the account's fault, and no
			// other account would fare better.
			s.log.Error("proxy out of local resources", "request_id", x.rid, "err", err)
			o.local = true
			return x.tollgateFailure(o, "proxy_overloaded", "the proxy is out of connections")
		}
		if x.guard != nil && x.guard.stalled() == stalledHeaders {
			s.metrics.upstream.WithLabelValues(acc.Name, "timeout").Inc()
			s.log.Warn("upstream sent no response in time", "request_id", x.rid, "account_id", acc.ID, "timeout", headerTimeout)
			o = x.tollgateFailure(o, "upstream_timeout", "no response within "+headerTimeout.String())
			o.status = http.StatusGatewayTimeout
			return o
		}
		s.metrics.upstream.WithLabelValues(acc.Name, "connect_error").Inc()
		s.log.Warn("upstream unreachable", "request_id", x.rid, "account_id", acc.ID, "err", err)
		return x.tollgateFailure(o, "connect_error", "connection failed")
	}
	defer resp.Body.Close()
	var respBody io.Reader = resp.Body
	if x.guard != nil {
		respBody = x.guard.watch(resp.Body, idleTimeout)
	}
	o.ttfb = time.Since(x.start)
	o.status = resp.StatusCode
	o.upstreamID = resp.Header.Get("Request-Id")
	s.metrics.ttfb.WithLabelValues(x.p.endpoint).Observe(o.ttfb.Seconds())
	s.metrics.upstream.WithLabelValues(acc.Name, strconv.Itoa(resp.StatusCode)).Inc()
	s.quotas.observe(acc.ID, resp.Header)

	if class := failoverClass(resp.StatusCode); class != "" {
		o.class = class
		o.body, _ = io.ReadAll(io.LimitReader(respBody, maxErrorBody))
		o.header = resp.Header.Clone()
		classify(&o, resp.Header, time.Now())
		return o
	}

	o.committed = true
	copyResponseHeader(x.w.Header(), resp.Header)
	sse := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	if resp.StatusCode == http.StatusOK && (sse || x.clientStream && x.p.jsonStream) {
		o.stream = true
		x.w.Header().Set("Cache-Control", "no-cache")
		x.w.WriteHeader(resp.StatusCode)
		x.pipeStream(&o, respBody, !sse)
		if o.class == "upstream_stalled" {
			s.metrics.upstream.WithLabelValues(acc.Name, "stalled").Inc()
			s.log.Warn("upstream stream stalled; cut", "request_id", x.rid, "account_id", acc.ID, "idle", s.cfg.IdleTimeout)
		}
		return o
	}
	b, err := io.ReadAll(io.LimitReader(respBody, maxResponseBody))
	if err != nil {
		o.class = "upstream_cut"
	}
	if resp.StatusCode >= 400 {
		o.class = "upstream_" + strconv.Itoa(resp.StatusCode)
	} else {
		o.usage, o.sawUsage = x.p.bodyUsage(b)
	}
	// Journaled before the client gets it: from here a proxy killed before the
	// completion reaches Redis leaves the bill to the next process.
	x.prepareBill(&o, x.attemptNo, upstreamModel)
	x.w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	x.w.WriteHeader(resp.StatusCode)
	x.w.Write(b) //nolint:errcheck // the client may be gone; billing goes on
	return o
}

// tollgateFailure is an attempt that got no upstream answer at all; if it is the last,
// the client gets Tollgate's own 502.
func (x *exchange) tollgateFailure(o outcome, class, reason string) outcome {
	o.class, o.reason, o.status = class, reason, http.StatusBadGateway
	return o
}

// readerPool recycles the stream readers: a fresh buffer per stream was most of what the
// proxy allocated under streaming load. 4 KiB holds any ordinary SSE line; longer lines
// (a Responses API response.completed carrying the whole answer) pass through in pieces
// and the taps assemble them.
var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}

// pipeStream copies lines to the client as they arrive and feeds each line to the usage
// tap. Whole events (SSE events; lines of a streamed JSON body) are flushed as soon as
// the next read could wait for the upstream: an event never waits for a later one, and
// events that arrived together leave in one write instead of a write each.
func (x *exchange) pipeStream(o *outcome, body io.Reader, flushLines bool) {
	flusher, _ := x.w.(http.Flusher)
	t := x.p.newTap()
	early, _ := t.(earlyUsage)
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(body)
	defer func() {
		br.Reset(nil)
		readerPool.Put(br)
	}()
	clientGone := false
	partialBefore := false
	pending := false       // whole events written to the client but not flushed yet
	var due *billing.Usage // usage to checkpoint once what carried it is on its way
	for {
		if pending && !lineBuffered(br) {
			// The next read may wait for the upstream: everything that has arrived goes
			// out now. Events that arrived together leave in one write; none waits for a
			// later one.
			flusher.Flush()
			pending = false
		}
		if due != nil {
			x.checkpoint(o, *due)
			due = nil
		}
		line, err := br.ReadSlice('\n')
		partial := errors.Is(err, bufio.ErrBufferFull)
		if len(line) > 0 {
			t.Line(line, partial)
			if early != nil && x.ckpt == nil && due == nil {
				if u, ok := early.UsageSoFar(); ok && !u.Zero() {
					due = &u
				}
			}
			out := line
			if x.filter != nil && !partial && !partialBefore {
				out = x.filter(line) // filters see whole lines only
			}
			if !clientGone && out != nil {
				if _, werr := x.w.Write(out); werr != nil {
					clientGone = true
				} else if flusher != nil && (flushLines || len(out) == 1 || (len(out) == 2 && out[0] == '\r')) {
					pending = true // a blank line ends an event
				}
			}
		}
		partialBefore = partial
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			t.Line(nil, false) // end of stream: complete a pending line
			if !errors.Is(err, io.EOF) {
				o.class = "upstream_cut"
				if x.guard != nil && x.guard.stalled() == stalledIdle {
					o.class = "upstream_stalled" // cut by the stall guard
				}
			} else if !t.Finished() {
				o.class = "upstream_incomplete"
			}
			break
		}
	}
	if (o.class == "upstream_cut" || o.class == "upstream_stalled") && !clientGone && !flushLines && x.p.streamError != nil {
		x.endBrokenStream(o.class)
	}
	if flusher != nil && !clientGone {
		flusher.Flush()
	}
	if et := t.ErrorType(); et != "" {
		o.class = "stream_error:" + et
	}
	if clientGone && o.class == "" {
		o.class = "client_disconnected"
	}
	o.usage, o.sawUsage = t.Usage()
}

// endBrokenStream ends an SSE stream the upstream broke off, or that stalled, with an
// error event in the protocol's shape (stream_errors.go). The blank lines first end
// whatever event the upstream left unfinished, so the client's parser takes it apart
// from the error (an event cut in the middle of a line is malformed, which the client
// rejects as an error too).
func (x *exchange) endBrokenStream(class string) {
	typ, msg := errUpstreamCut, "Tollgate: the upstream connection broke off in the middle of this answer; it is incomplete"
	if class == "upstream_stalled" {
		typ, msg = errUpstreamStalled, "Tollgate: the upstream sent nothing for "+x.s.cfg.IdleTimeout.String()+"; this answer is incomplete"
	}
	x.w.Write(x.p.streamError([]byte("\n\n"), typ, msg, x.rid)) //nolint:errcheck // the client went away
}

// checkpoint journals the usage a stream has reported so far (Anthropic's message_start:
// input and cache tokens, usually most of the price), off the stream's path. If this
// proxy dies before the stream completes, another proxy finds the lease expired and bills
// the checkpoint (Server.sweepOrphans), marked proxy_lost; the request id keeps it to one
// bill. One checkpoint per stream: the next usage comes with the end of the stream,
// followed at once by the completion.
func (x *exchange) checkpoint(o *outcome, u billing.Usage) {
	x.ckpt = make(chan struct{})
	probe := *o
	probe.usage, probe.sawUsage, probe.class = u, true, "proxy_lost"
	_, payload, _, ok := x.usageEvent(&probe, x.attemptNo, x.upstreamModel)
	x.ckptSlot = -1
	if !ok {
		close(x.ckpt)
		return
	}
	// Journaled here too: a checkpoint that had not reached Redis when this proxy died is
	// delivered by the next one.
	x.ckptSlot = x.journal(payload)
	lease := *x.lease
	// Its own goroutine, not a completion worker: the completion waits for it on a
	// worker, and checkpoints queued behind waiting completions would never run.
	go func() {
		defer close(x.ckpt)
		if _, err := x.s.cfg.Gate.Checkpoint(context.Background(), lease, payload); err != nil {
			x.s.log.Warn("checkpoint stream usage", "request_id", x.rid, "err", err)
		}
	}()
}

// lineBuffered reports whether br holds a whole line, so reading it needs no I/O.
func lineBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.IndexByte(b, '\n') >= 0
}

// deliver sends an uncommitted failure to the client unchanged, or, when there was no
// upstream answer, Tollgate's own with the status tollgateFailure gave it (502; 504 when
// the upstream did not answer in time).
func (x *exchange) deliver(o *outcome) {
	if o.header == nil {
		typ, msg := errUpstreamFailed, "Tollgate could not reach an upstream provider ("+o.reason+")"
		if o.status == http.StatusGatewayTimeout {
			typ, msg = errUpstreamTimeout, "Tollgate: the upstream provider did not answer in time ("+o.reason+")"
		}
		x.p.writeError(x.w, o.status, typ, msg, x.rid)
		return
	}
	copyResponseHeader(x.w.Header(), o.header)
	x.w.Header().Set("Content-Length", strconv.Itoa(len(o.body)))
	x.w.WriteHeader(o.status)
	x.w.Write(o.body) //nolint:errcheck
}

// completeAfterResponse completes the attempt without making the client wait for the
// Redis round trip. Graceful shutdown waits for the completions (Server.WaitCompletions).
//
// Under load a completion worker runs it, so that the handler returns at once and its
// connection can take the client's next request. When no other exchange is in flight, a
// whole (non-streamed) response is flushed and its completion starts lightCompletionDelay
// later, or when the same user's next request is about to be admitted, whichever comes
// first (Server.settleDeferred): run at once, its Redis round trip (this process and Redis
// woken on a small machine's cores) competed with the client reading the answer. A stream
// is always handed off: its end (the last chunk) is only written once the handler returns.
func (x *exchange) completeAfterResponse(lease limit.Lease, attempt int, o outcome, upstreamModel string) {
	x.completing = true // the lease is renewed until the completion has run
	x.prepareBill(&o, attempt, upstreamModel)
	x.s.completions.Add(1)
	complete := func() {
		defer x.s.completions.Done()
		x.complete(lease, attempt, &o)
	}
	if f, ok := x.w.(http.Flusher); ok && !o.stream && x.s.inflight.Load() == 0 {
		arm := x.s.deferCompletion(x.key.UserID, complete)
		f.Flush()
		arm()
		return
	}
	x.s.after(complete)
}

// lightCompletionDelay is how long a completion at light load waits after its answer was
// flushed: long enough for the client to have read it, short against the gap to a light
// client's next request (whose admission that completion reserves). Measured with the
// bench's added p50 at 200 req/s in 14 alternated pairs of short runs: completing at once
// +0.24–0.61 ms (median +0.39), waiting 300 µs +0.24–0.42 ms (median +0.33), lower in 13
// pairs; 150 µs and 1 ms did no better than at once.
const lightCompletionDelay = 300 * time.Microsecond

// complete releases the lease and bills what the attempt consumed, in one Redis call;
// if Redis fails, the event goes straight to PostgreSQL so it is never lost.
func (x *exchange) complete(lease limit.Lease, attempt int, o *outcome) {
	s := x.s
	defer s.cfg.Gate.Untrack(lease.RequestID)
	// A clean answer: if more requests like it are coming, the completion admits the
	// next one ahead (limit/reserve.go).
	lease.Again = attempt > 0 && o.class == "" && o.status < 400
	ev, payload, billed := o.bill.ev, o.bill.payload, o.bill.nano
	// Once a store has the event its journal slot is free; a failure everywhere leaves
	// it pending for the next process to deliver.
	delivered := func() { s.cfg.Journal.Done(o.bill.slot) }
	if x.ckpt != nil {
		// Journaled even if the checkpoint reported failure or was not kept: the script
		// may have run all the same, and a journaled completion bills unless a sweep has
		// marked the request, so it is right either way.
		<-x.ckpt
		lease.Journaled = true
	}
	err := s.cfg.Gate.Complete(context.Background(), lease, usage.StreamKey(s.cfg.Prefix), payload, billed)
	if err == nil {
		delivered()
		if payload != nil {
			s.recent.add(payload) // until Redis has surely kept it (recent.go)
		}
		return
	}
	if errors.Is(err, limit.ErrSwept) {
		delivered()
		// This proxy lost Redis for longer than the lease TTL and another one billed the
		// checkpoint meanwhile; the request id allows one bill.
		s.log.Warn("stream billed from its checkpoint while it ran (leases were not renewed in time)", "request_id", x.rid)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // for the fallbacks
	defer cancel()
	if payload == nil {
		s.log.Warn("release leases (they expire by themselves)", "request_id", x.rid, "err", err)
		return
	}
	if !errors.Is(err, limit.ErrLocal) {
		// (Admitted without Redis, REDIS_OUTAGE=serve: recording directly is the plan.)
		s.metrics.recordFailed.Inc()
		s.log.Warn("usage stream unavailable; recording directly", "request_id", x.rid, "err", err)
	}
	if s.cfg.Fallback != nil {
		if err = s.cfg.Fallback(ctx, ev); err == nil {
			delivered()
			return
		}
	}
	if s.cfg.Spool != nil {
		if err = s.cfg.Spool.Write(ev); err == nil {
			delivered()
			s.log.Warn("usage event spooled to disk; it is delivered when Redis or PostgreSQL answers", "request_id", x.rid)
			return
		}
	}
	if o.bill.slot >= 0 {
		// Left pending in the journal: the next proxy on this directory delivers it once
		// this one has exited.
		s.log.Error("usage event not recorded yet; kept in the journal for the next proxy on this spool directory", "request_id", x.rid, "err", err, "event", string(payload))
		return
	}
	// Last resort: the event in the log is enough to bill it by hand.
	s.log.Error("usage event NOT recorded", "request_id", x.rid, "err", err, "event", string(payload))
}

// prepareBill prices what the attempt consumed and journals the event, once per outcome.
func (x *exchange) prepareBill(o *outcome, attempt int, upstreamModel string) {
	if o.billReady {
		return
	}
	o.billReady = true
	o.bill.ev, o.bill.payload, o.bill.nano, _ = x.usageEvent(o, attempt, upstreamModel)
	o.bill.slot = -1
	if o.bill.payload != nil {
		o.bill.slot = x.journal(o.bill.payload)
	}
	if x.ckpt != nil {
		// The final event supersedes the checkpoint, as the completion script does in
		// Redis (a replay that finds both keeps the later).
		x.s.cfg.Journal.Done(x.ckptSlot)
	}
}

// journal puts an event in the journal and returns its slot (-1 if not journaled).
func (x *exchange) journal(payload []byte) int32 {
	if x.s.cfg.Journal == nil {
		return -1
	}
	slot := x.s.cfg.Journal.Put(payload)
	if slot < 0 {
		x.s.metrics.unjournaled.Inc()
	}
	return slot
}

// usageEvent prices what the attempt consumed; ok is false when there is nothing to bill.
func (x *exchange) usageEvent(o *outcome, attempt int, upstreamModel string) (ev usage.Event, payload []byte, billed int64, ok bool) {
	s := x.s
	if !x.p.billable || !o.sawUsage || o.usage.Zero() {
		return ev, nil, 0, false
	}
	done := time.Now()
	q, err := s.cfg.Pricing.Quote(x.key.GroupID, x.p.provider, upstreamModel, o.usage, x.start)
	if err != nil {
		// Checked before forwarding; only a catalogue edit in between gets here.
		s.log.Error("price served request", "request_id", x.rid, "model", upstreamModel, "err", err)
		return ev, nil, 0, false
	}
	ev = usage.Event{
		RequestID: x.rid, Time: done, UserID: x.key.UserID, KeyID: x.key.KeyID, GroupID: x.key.GroupID,
		AccountID: o.acc.ID, Provider: x.p.provider, Endpoint: x.p.endpoint,
		ModelRequested: x.model, ModelUpstream: upstreamModel, Usage: o.usage,
		OfficialNano: q.OfficialNano, BilledNano: q.BilledNano, FactorNum: q.Factor.Num, FactorDen: q.Factor.Den,
		PriceID: q.PriceID, FXRateMicro: q.FXRateMicro, Status: o.status, Stream: o.stream,
		TTFBMillis: int(o.ttfb.Milliseconds()), DurationMillis: int(done.Sub(x.start).Milliseconds()),
		ClientIP: x.clientIP.String(), UserAgent: truncate(x.r.UserAgent(), 256), ErrorClass: o.class, Attempt: attempt,
	}
	return ev, ev.AppendJSON(make([]byte, 0, 640)), q.BilledNano, true
}

func joinURL(base, path, rawQuery string) string {
	u := strings.TrimRight(base, "/") + path
	if rawQuery != "" {
		u += "?" + rawQuery
	}
	return u
}

func remoteIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// maxModelName bounds a model name; the longest real ones (dated, fine-tuned, Bedrock
// style) are well under 100 bytes.
const maxModelName = 256

// badModelName says what is wrong with a model name that no provider uses and that
// would end up in logs, usage events and the console as given: control characters,
// spaces or more than maxModelName bytes. "" if the name is acceptable.
func badModelName(m string) string {
	if len(m) > maxModelName {
		return "the model name is longer than " + strconv.Itoa(maxModelName) + " bytes"
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; c <= ' ' || c == 0x7f {
			return "the model name " + strconv.Quote(m) + " contains a space or a control character"
		}
	}
	return ""
}
