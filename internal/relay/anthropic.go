package relay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/apikey"
	"github.com/tollgate/tollgate/internal/billing"
	"github.com/tollgate/tollgate/internal/limit"
	"github.com/tollgate/tollgate/internal/schedule"
	"github.com/tollgate/tollgate/internal/usage"
)

const providerAnthropic = "anthropic"

// maxResponseBytes bounds a non-streaming response held in memory to read its usage.
const maxResponseBytes = 64 << 20

// anthropicMessages serves POST /v1/messages.
func (s *Server) anthropicMessages(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rid := newRequestID()
	w.Header().Set("X-Tollgate-Request-Id", rid)
	code := s.serveAnthropic(w, r, rid, start)
	s.metrics.requests.WithLabelValues("messages", strconv.Itoa(code)).Inc()
	s.metrics.duration.WithLabelValues("messages").Observe(time.Since(start).Seconds())
}

// serveAnthropic runs one request and returns the status the client got.
func (s *Server) serveAnthropic(w http.ResponseWriter, r *http.Request, rid string, start time.Time) int {
	fail := func(status int, typ, msg string) int {
		anthropicError(w, status, typ, msg, rid)
		return status
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
	if err != nil {
		s.log.Error("look up API key", "request_id", rid, "err", err)
		return fail(http.StatusServiceUnavailable, errUnavailable, "Tollgate: cannot verify API keys right now; retry shortly")
	}
	clientIP := remoteIP(r)
	if why := key.Refusal(start, clientIP); why != "" {
		status := http.StatusForbidden
		if key.Status == "revoked" || (key.ExpiresAt != nil && !start.Before(*key.ExpiresAt)) {
			status = http.StatusUnauthorized
		}
		return fail(status, errAuthentication, "Tollgate: "+why)
	}

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
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
	if req.Model == "" {
		return fail(http.StatusBadRequest, errInvalidRequest, "Tollgate: model is required")
	}
	if !key.AllowsModel(req.Model) {
		return fail(http.StatusForbidden, errPermission, "Tollgate: this API key may not use model "+strconv.Quote(req.Model))
	}

	acc, err := s.cfg.Accounts.Pick(key.GroupID, providerAnthropic, req.Model, nil)
	if err != nil {
		return fail(http.StatusServiceUnavailable, errNoUpstream,
			"Tollgate has no upstream account available for model "+strconv.Quote(req.Model)+" right now")
	}
	upstreamModel := acc.UpstreamModel(req.Model)
	if upstreamModel != req.Model {
		body = req.withModel(body, upstreamModel)
	}
	if err := s.cfg.Pricing.Priced(providerAnthropic, upstreamModel, start); err != nil {
		return fail(http.StatusBadRequest, errUnpricedModel,
			"Tollgate: model "+strconv.Quote(upstreamModel)+" has no price configured, so it cannot be billed; ask the operator to add one")
	}

	ticket := limit.Ticket{UserID: key.UserID, KeyID: key.KeyID, AccountID: acc.ID}
	if err := s.cfg.Gate.Admit(r.Context(), ticket); err != nil {
		var refusal *limit.Refusal
		if errors.As(err, &refusal) {
			return fail(refusal.Status, refusal.Type, refusal.Message)
		}
		s.log.Error("admission", "request_id", rid, "err", err)
		return fail(http.StatusServiceUnavailable, errUnavailable, "Tollgate cannot check limits right now; retry shortly")
	}

	x := &exchange{s: s, w: w, r: r, rid: rid, start: start, key: key, acc: acc, ticket: ticket,
		model: req.Model, upstreamModel: upstreamModel, clientIP: clientIP}
	return x.forwardAnthropic(body)
}

// exchange is one upstream attempt and what it observed.
type exchange struct {
	s             *Server
	w             http.ResponseWriter
	r             *http.Request
	rid           string
	start         time.Time
	key           apikey.Info
	acc           *schedule.Account
	ticket        limit.Ticket
	model         string
	upstreamModel string
	clientIP      netip.Addr

	ttfb       time.Duration
	stream     bool
	usage      billing.Usage
	sawUsage   bool
	errorClass string
	status     int
}

func (x *exchange) forwardAnthropic(body []byte) int {
	s := x.s
	// The upstream exchange outlives the client: if the client goes away mid-stream,
	// Tollgate reads the upstream to its end so the bill matches what the provider
	// charges (see README, "Client disconnects"). StreamLimit bounds it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(x.r.Context()), s.cfg.StreamLimit)
	defer cancel()
	up, err := http.NewRequestWithContext(ctx, http.MethodPost, joinURL(x.acc.BaseURL, x.r.URL.Path, x.r.URL.RawQuery), bytes.NewReader(body))
	if err != nil {
		anthropicError(x.w, http.StatusBadGateway, errUpstreamFailed, "Tollgate: bad upstream URL for account "+x.acc.Name, x.rid)
		return http.StatusBadGateway
	}
	up.Header = upstreamRequestHeader(x.r.Header)
	setAnthropicCredential(up.Header, x.acc)
	up.ContentLength = int64(len(body))

	s.metrics.activeStreams.Inc()
	defer s.metrics.activeStreams.Dec()
	resp, err := s.cfg.Transport.RoundTrip(up)
	if err != nil {
		s.log.Warn("upstream unreachable", "request_id", x.rid, "account_id", x.acc.ID, "err", err)
		s.metrics.upstream.WithLabelValues(x.acc.Name, "connect_error").Inc()
		anthropicError(x.w, http.StatusBadGateway, errUpstreamFailed, "Tollgate could not reach the upstream provider", x.rid)
		return http.StatusBadGateway
	}
	defer resp.Body.Close()
	x.ttfb = time.Since(x.start)
	x.status = resp.StatusCode
	s.metrics.ttfb.WithLabelValues("messages").Observe(x.ttfb.Seconds())
	s.metrics.upstream.WithLabelValues(x.acc.Name, strconv.Itoa(resp.StatusCode)).Inc()

	copyResponseHeader(x.w.Header(), resp.Header)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") && resp.StatusCode == http.StatusOK {
		x.stream = true
		x.w.Header().Set("Cache-Control", "no-cache")
		x.w.WriteHeader(resp.StatusCode)
		x.pipeAnthropicStream(resp.Body)
	} else {
		x.relayAnthropicBody(resp)
	}
	x.record()
	return resp.StatusCode
}

// pipeAnthropicStream copies SSE lines to the client as they arrive, flushing at the end
// of each event, and feeds each line to the usage tap.
func (x *exchange) pipeAnthropicStream(body io.Reader) {
	flusher, _ := x.w.(http.Flusher)
	var tap anthropicTap
	br := bufio.NewReaderSize(body, 32<<10)
	clientGone := false
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			tap.Line(line, errors.Is(err, bufio.ErrBufferFull))
			if !clientGone {
				if _, werr := x.w.Write(line); werr != nil {
					clientGone = true
				} else if (len(line) == 1 || (len(line) == 2 && line[0] == '\r')) && flusher != nil {
					flusher.Flush() // a blank line ends an event
				}
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				x.errorClass = "upstream_cut"
			} else if !tap.stopped && tap.errorType == "" {
				x.errorClass = "upstream_incomplete"
			}
			break
		}
	}
	if flusher != nil && !clientGone {
		flusher.Flush()
	}
	if tap.errorType != "" {
		x.errorClass = "stream_error:" + tap.errorType
	}
	if clientGone && x.errorClass == "" {
		x.errorClass = "client_disconnected"
	}
	x.usage, x.sawUsage = tap.usage, tap.sawUsage
}

// relayAnthropicBody relays a non-streaming answer (or an upstream error) and reads its usage.
func (x *exchange) relayAnthropicBody(resp *http.Response) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		x.errorClass = "upstream_cut"
	}
	x.w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	x.w.WriteHeader(resp.StatusCode)
	x.w.Write(body) //nolint:errcheck // the client may be gone; billing goes on
	if resp.StatusCode >= 400 {
		x.errorClass = "upstream_" + strconv.Itoa(resp.StatusCode)
		return
	}
	x.usage, x.sawUsage = anthropicBodyUsage(body)
}

// record bills the attempt: one usage event per attempt that consumed tokens.
func (x *exchange) record() {
	if !x.sawUsage || x.usage.Zero() {
		return
	}
	s := x.s
	done := time.Now()
	q, err := s.cfg.Pricing.Quote(x.key.GroupID, providerAnthropic, x.upstreamModel, x.usage, x.start)
	if err != nil {
		// Checked before forwarding; only a catalogue edit in between gets here.
		s.log.Error("price served request", "request_id", x.rid, "model", x.upstreamModel, "err", err)
		return
	}
	ev := usage.Event{
		RequestID: x.rid, Time: done, UserID: x.key.UserID, KeyID: x.key.KeyID, GroupID: x.key.GroupID,
		AccountID: x.acc.ID, Provider: providerAnthropic, Endpoint: "messages",
		ModelRequested: x.model, ModelUpstream: x.upstreamModel, Usage: x.usage,
		OfficialNano: q.OfficialNano, BilledNano: q.BilledNano, FactorNum: q.Factor.Num, FactorDen: q.Factor.Den,
		PriceID: q.PriceID, Status: x.status, Stream: x.stream,
		TTFBMillis: int(x.ttfb.Milliseconds()), DurationMillis: int(done.Sub(x.start).Milliseconds()),
		ClientIP: x.clientIP.String(), UserAgent: truncate(x.r.UserAgent(), 256), ErrorClass: x.errorClass, Attempt: 1,
	}
	payload, _ := json.Marshal(ev)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(x.r.Context()), 5*time.Second)
	defer cancel()
	err = s.cfg.Gate.Complete(ctx, x.ticket, usage.StreamKey(s.cfg.Prefix), payload, q.BilledNano)
	if err == nil {
		return
	}
	s.metrics.recordFailed.Inc()
	s.log.Warn("usage stream unavailable; recording directly", "request_id", x.rid, "err", err)
	if s.cfg.Fallback != nil {
		if err = s.cfg.Fallback(ctx, ev); err == nil {
			return
		}
	}
	// Last resort: the event in the log is enough to bill it by hand.
	s.log.Error("usage event NOT recorded", "request_id", x.rid, "err", err, "event", string(payload))
}

// setAnthropicCredential puts the account's credential on the upstream request. API keys
// go in x-api-key; OAuth access tokens go in Authorization with the beta Anthropic
// requires for them, merged with the client's own betas.
func setAnthropicCredential(h http.Header, acc *schedule.Account) {
	if acc.Kind == "oauth" {
		h.Set("Authorization", "Bearer "+acc.Credential.AccessToken)
		h.Set("Anthropic-Beta", mergeBeta(h.Values("Anthropic-Beta"), "oauth-2025-04-20"))
		return
	}
	h.Set("X-Api-Key", acc.Credential.APIKey)
}

func mergeBeta(have []string, want string) string {
	var parts []string
	for _, v := range have {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				if p == want {
					return strings.Join(have, ",")
				}
				parts = append(parts, p)
			}
		}
	}
	return strings.Join(append(parts, want), ",")
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
