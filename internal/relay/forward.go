package relay

import (
	"net"
	"net/http"
	"strings"
	"time"
)

// hopHeaders are connection-level headers (RFC 9110 §7.6.1) never forwarded.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// droppedRequestHeaders are the client's credentials and what would reveal the client's
// address upstream, plus headers the transport sets itself.
var droppedRequestHeaders = []string{"Authorization", "X-Api-Key", "X-Goog-Api-Key", "Cookie",
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip",
	"Content-Length", "Accept-Encoding", "Host"}

// notForwarded is hopHeaders and droppedRequestHeaders as a set, for one pass over
// the client's headers (their names arrive canonical from net/http's server, as
// these are written; a name that is not canonical is none of them either).
var notForwarded = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range append(append([]string(nil), hopHeaders...), droppedRequestHeaders...) {
		m[http.CanonicalHeaderKey(k)] = true
	}
	return m
}()

// upstreamRequestHeader copies the client's headers for the upstream request: everything
// the client sent (anthropic-version, anthropic-beta, user agent, SDK headers…) except
// hop-by-hop headers, credentials and forwarding headers.
func upstreamRequestHeader(in http.Header) http.Header {
	out := make(http.Header, len(in))
	for k, v := range in {
		if !notForwarded[k] {
			out[k] = v
		}
	}
	for _, c := range in["Connection"] {
		for _, name := range strings.Split(c, ",") {
			out.Del(strings.TrimSpace(name))
		}
	}
	return out
}

// passedResponseHeaders is the allowlist of upstream response headers the client sees.
// Rate-limit windows, organisation ids and anything else about the operator's upstream
// account stay behind.
var passedResponseHeaders = []string{"Content-Type", "Request-Id", "X-Request-Id", "Retry-After", "X-Should-Retry"}

func copyResponseHeader(dst, src http.Header) {
	for _, k := range passedResponseHeaders {
		if v := src.Values(k); len(v) > 0 {
			dst[k] = v
		}
	}
}

// NewTransport returns the pooled upstream transport: keep-alive connections reused
// across requests, HTTP/2 when the upstream offers it, no transparent decompression (the
// usage taps read the bytes the client gets).
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil, // egress proxies are per account, not from the environment
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		// Small per-connection buffers: with thousands of open streams they add up (10,000
		// streams × 8 KiB is 80 MB), and SSE events are small.
		WriteBufferSize: 4 << 10,
		ReadBufferSize:  4 << 10,
	}
}
