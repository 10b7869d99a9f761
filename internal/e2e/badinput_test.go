package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// The proxy's read timeouts as newStack configures them (config.Proxy).
const (
	stackReadHeaderTimeout = time.Second
	stackReadTimeout       = 2 * time.Second
	// hangUpSlack is how much later than its timeout the proxy may hang up on a slow
	// client: generous, for a loaded machine; a proxy that never hangs up fails anyway.
	hangUpSlack = 4 * time.Second
)

// TestBadInput: malformed and slow requests get clear errors, cost bounded resources
// (a slow client holds a connection no longer than the read timeouts) and never reach
// an upstream.
func TestBadInput(t *testing.T) {
	s := newStack(t)
	seq := s.fake.LastSeq()

	t.Run("invalid UTF-8", func(t *testing.T) {
		status, e := s.post(t, s.seeded.DemoKey, "{\"model\":\""+model+"\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}")
		if status != 400 || e.Type != "error" || e.Error.Type != "tollgate_invalid_request" || !strings.Contains(e.Error.Message, "UTF-8") {
			t.Fatalf("%d %+v", status, e)
		}
	})

	// A huge declared length is refused before a byte of the body is read or buffered.
	t.Run("declared oversized body", func(t *testing.T) {
		conn := s.dial(t)
		fmt.Fprintf(conn, "POST /v1/messages HTTP/1.1\r\nHost: x\r\nX-Api-Key: %s\r\nContent-Length: %d\r\n\r\n{", s.seeded.DemoKey, int64(1)<<40)
		resp, body := readResponse(t, conn)
		if e := anthropicRefusal(t, body); resp.StatusCode != 413 || e.Error.Type != "tollgate_request_too_large" {
			t.Fatalf("status %d %s", resp.StatusCode, body)
		}
	})

	// Each protocol's routes refuse the same bad bodies in their own error shape, with
	// Tollgate's type where that shape keeps one.
	t.Run("every protocol's shape", func(t *testing.T) {
		type refusal struct{ typ, message string }
		anthropic := func(t *testing.T, status int, body string) refusal {
			e := anthropicRefusal(t, body)
			return refusal{e.Error.Type, e.Error.Message}
		}
		openAI := func(t *testing.T, status int, body string) refusal {
			var e struct {
				Error struct{ Message, Type, Code string } `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Type != e.Error.Code || !strings.HasPrefix(e.Error.Message, "Tollgate") {
				t.Fatalf("not a Tollgate refusal in OpenAI's shape: %q", body)
			}
			return refusal{e.Error.Type, e.Error.Message}
		}
		gemini := func(t *testing.T, status int, body string) refusal {
			e := decodeGeminiRefusal(t, status, body)
			return refusal{e.Error.Details[0].Reason, e.Error.Message}
		}
		for _, route := range []struct {
			name, path, auth string
			decode           func(*testing.T, int, string) refusal
		}{
			{"anthropic messages", "/v1/messages", "X-Api-Key: ", anthropic},
			{"openai chat", "/v1/chat/completions", "Authorization: Bearer ", openAI},
			{"openai responses", "/v1/responses", "Authorization: Bearer ", openAI},
			{"gemini", "/v1beta/models/" + geminiModel + ":generateContent", "X-Goog-Api-Key: ", gemini},
		} {
			for _, c := range []struct {
				name, body    string
				contentLength int64 // 0: the body's length
				status        int
				typ, says     string
			}{
				{"invalid JSON", `{"model":"x","messages":[`, 0, 400, "tollgate_invalid_request", "JSON"},
				{"invalid UTF-8", "{\"model\":\"" + model + "\",\"input\":\"\xff\xfe\"}", 0, 400, "tollgate_invalid_request", "UTF-8"},
				{"declared oversized", "{", 1 << 40, 413, "tollgate_request_too_large", "MiB"},
			} {
				t.Run(route.name+"/"+c.name, func(t *testing.T) {
					conn := s.dial(t)
					n := c.contentLength
					if n == 0 {
						n = int64(len(c.body))
					}
					fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\n%s%s\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
						route.path, route.auth, s.seeded.DemoKey, n, c.body)
					resp, body := readResponse(t, conn)
					r := route.decode(t, resp.StatusCode, body)
					if resp.StatusCode != c.status || r.typ != c.typ || !strings.Contains(r.message, c.says) {
						t.Fatalf("%d %s, want %d %s mentioning %q", resp.StatusCode, body, c.status, c.typ, c.says)
					}
				})
			}
		}
	})

	// The header is trickled a byte at a time; the proxy must hang up at its header
	// timeout, not when the client stops.
	t.Run("slowloris headers", func(t *testing.T) {
		conn := s.dial(t)
		start := time.Now()
		if _, err := io.WriteString(conn, "POST /v1/messages HTTP/1.1\r\nHost: x\r\n"); err != nil {
			t.Fatal(err)
		}
		answer, took := trickleUntilHangUp(t, conn, start, "X-Slow: ", stackReadHeaderTimeout+hangUpSlack)
		if answer != "" && !strings.HasPrefix(answer, "HTTP/1.1 4") {
			t.Fatalf("answered %q", answer)
		}
		t.Logf("hung up after %s", took.Round(time.Millisecond))
	})

	// A body that stops arriving is cut at the read timeout (with Tollgate's 400 when
	// the answer can still be written).
	t.Run("stalled body", func(t *testing.T) {
		conn := s.dial(t)
		start := time.Now()
		fmt.Fprintf(conn, "POST /v1/messages HTTP/1.1\r\nHost: x\r\nX-Api-Key: %s\r\nContent-Length: 100000\r\n\r\n{", s.seeded.DemoKey)
		answer, took := trickleUntilHangUp(t, conn, start, "", stackReadTimeout+hangUpSlack)
		checkBodyTimeoutAnswer(t, answer)
		t.Logf("hung up after %s", took.Round(time.Millisecond))
	})

	// A body that keeps arriving, too slowly to ever complete, is cut at the same read
	// timeout: each byte does not buy the client more time.
	t.Run("trickled body", func(t *testing.T) {
		conn := s.dial(t)
		start := time.Now()
		fmt.Fprintf(conn, "POST /v1/messages HTTP/1.1\r\nHost: x\r\nX-Api-Key: %s\r\nContent-Length: 100000\r\n\r\n{", s.seeded.DemoKey)
		answer, took := trickleUntilHangUp(t, conn, start, `"messages":[{"role":"user","content":"`+strings.Repeat("a", 200), stackReadTimeout+hangUpSlack)
		checkBodyTimeoutAnswer(t, answer)
		t.Logf("hung up after %s", took.Round(time.Millisecond))
	})

	if n := len(s.fake.ServedSince(seq)); n != 0 {
		t.Fatalf("bad input reached the upstream %d times", n)
	}
}

// dial opens a raw connection to the proxy, closed when the test ends.
func (s *stack) dial(t *testing.T) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.proxyURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// trickleUntilHangUp writes trickle one byte every 250 ms (nothing if it is empty) until
// the proxy hangs up, and returns what the proxy sent before it did and how long after
// start that was. It fails the test if the proxy still holds the connection after
// within; a write that fails because the proxy hung up ends the trickle, the time check
// still applies.
func trickleUntilHangUp(t *testing.T, conn net.Conn, start time.Time, trickle string, within time.Duration) (answer string, took time.Duration) {
	t.Helper()
	type result struct {
		answer string
		at     time.Time
	}
	closed := make(chan result, 1)
	go func() {
		b, _ := io.ReadAll(conn) // EOF or reset: either way the proxy hung up
		closed <- result{string(b), time.Now()}
	}()
	giveUp := time.After(3 * within) // fail clearly rather than hang
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	writing := trickle != ""
	for i := 0; ; i++ {
		select {
		case r := <-closed:
			took = r.at.Sub(start)
			if took > within {
				t.Fatalf("the proxy held a slow connection for %s, want at most %s", took, within)
			}
			return r.answer, took
		case <-giveUp:
			t.Fatalf("the proxy still held a slow connection after %s", time.Since(start))
		case <-tick.C:
			if writing {
				if _, err := conn.Write([]byte{trickle[i%len(trickle)]}); err != nil {
					writing = false // the proxy hung up: its read side reports when
				}
			}
		}
	}
}

// checkBodyTimeoutAnswer accepts a proxy that hung up on a body that did not arrive in
// time silently or with Tollgate's 400 in Anthropic's shape.
func checkBodyTimeoutAnswer(t *testing.T, answer string) {
	t.Helper()
	if answer == "" {
		return
	}
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(answer)), nil)
	if err != nil {
		t.Fatalf("answer %q: %v", answer, err)
	}
	body, _ := io.ReadAll(resp.Body)
	e := anthropicRefusal(t, string(body))
	if resp.StatusCode != 400 || e.Error.Type != "tollgate_invalid_request" || !strings.Contains(e.Error.Message, "request body") {
		t.Fatalf("status %d %s", resp.StatusCode, body)
	}
}

// readResponse reads one response (and its body) from a raw connection.
func readResponse(t *testing.T, conn net.Conn) (*http.Response, string) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// readResponses reads every response the proxy sends on a raw connection until it
// closes it (send Connection: close on the last request).
func readResponses(t *testing.T, conn net.Conn) (resps []*http.Response, bodies []string) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	br := bufio.NewReader(conn)
	for {
		resp, err := http.ReadResponse(br, nil)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return resps, bodies
		}
		if err != nil {
			t.Fatalf("after %d responses: %v", len(resps), err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resps, bodies = append(resps, resp), append(bodies, string(body))
	}
}

// anthropicRefusal decodes Tollgate's own refusal in Anthropic's error shape, failing
// the test if body is not one.
func anthropicRefusal(t *testing.T, body string) anthropicErrorBody {
	t.Helper()
	var e anthropicErrorBody
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Type != "error" ||
		!strings.HasPrefix(e.Error.Type, "tollgate_") || !strings.HasPrefix(e.Error.Message, "Tollgate") {
		t.Fatalf("not a Tollgate refusal in Anthropic's shape: %q", body)
	}
	return e
}

// geminiRefusal is Google's error shape with Tollgate's type in an ErrorInfo detail.
type geminiRefusal struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []struct {
			Reason string `json:"reason"`
			Domain string `json:"domain"`
		} `json:"details"`
	} `json:"error"`
}

// decodeGeminiRefusal decodes Tollgate's own refusal in Google's error shape, failing
// the test if body is not one.
func decodeGeminiRefusal(t *testing.T, status int, body string) geminiRefusal {
	t.Helper()
	var e geminiRefusal
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Code != status || e.Error.Status == "" ||
		!strings.HasPrefix(e.Error.Message, "Tollgate") || len(e.Error.Details) != 1 || e.Error.Details[0].Domain != "tollgate" {
		t.Fatalf("not a Tollgate refusal in Google's shape: %d %q", status, body)
	}
	return e
}

// wireRequest is one request as it reached the upstream, with what fakellm's served
// log does not keep: the request target as sent, the Host and the framing.
type wireRequest struct {
	URI              string
	Host             string
	ContentLength    int64
	TransferEncoding []string
	Header           http.Header
	Body             string
}

// wireLog records every request that reaches the upstream, whatever its path.
type wireLog struct {
	mu   sync.Mutex
	reqs []wireRequest
}

func (l *wireLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		l.mu.Lock()
		l.reqs = append(l.reqs, wireRequest{URI: r.RequestURI, Host: r.Host, ContentLength: r.ContentLength,
			TransferEncoding: r.TransferEncoding, Header: r.Header.Clone(), Body: string(body)})
		l.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

// mark returns a position in the log for since.
func (l *wireLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.reqs)
}

// since returns the requests recorded after mark.
func (l *wireLog) since(mark int) []wireRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]wireRequest(nil), l.reqs[mark:]...)
}

// TestBadInputHeaderInjection: what a client sends cannot add, replace or smuggle
// anything into the upstream request beyond its own body and the headers Tollgate
// passes through: not the credential, the upstream host, the path, a second request or
// an extra header. Attempts net/http refuses get its plain 4xx/5xx; attempts that reach
// Tollgate are refused in the protocol's error shape or served with the upstream request
// intact.
func TestBadInputHeaderInjection(t *testing.T) {
	wire := &wireLog{}
	s := newStack(t, func(su *setup) { su.upstream = wire.wrap })
	fakeHost := strings.TrimPrefix(s.fakeURL, "http://")
	const operatorKey = "sk-ant-fakellm-demo" // the demo account's credential (seed)

	// served checks that exactly one request reached the upstream since mark, with the
	// operator's credential and the upstream's own Host, and returns it.
	served := func(t *testing.T, mark int) wireRequest {
		t.Helper()
		got := wire.since(mark)
		if len(got) != 1 {
			t.Fatalf("%d requests reached the upstream, want 1: %+v", len(got), got)
		}
		up := got[0]
		if up.Host != fakeHost {
			t.Errorf("upstream Host %q, want %q", up.Host, fakeHost)
		}
		return up
	}
	notServed := func(t *testing.T, mark int) {
		t.Helper()
		if got := wire.since(mark); len(got) != 0 {
			t.Fatalf("refused input reached the upstream: %+v", got)
		}
	}

	// net/http refuses these before any Tollgate code runs; they are here so that a
	// change of server (or of its options) that let them through would show.
	t.Run("malformed framing refused by the HTTP server", func(t *testing.T) {
		for _, c := range []struct {
			name, head string
			status     int
		}{
			{"bare CR in a header", "X-Evil: a\rInjected: b\r\nContent-Length: 2\r\n", 400},
			{"NUL in a header", "Anthropic-Beta: a\x00b\r\nContent-Length: 2\r\n", 400},
			{"two different Content-Lengths", "Content-Length: 2\r\nContent-Length: 40\r\n", 400},
			{"obfuscated Transfer-Encoding", "Transfer-Encoding: xchunked\r\nContent-Length: 2\r\n", 501},
			{"two Transfer-Encodings", "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", 501},
		} {
			t.Run(c.name, func(t *testing.T) {
				mark := wire.mark()
				conn := s.dial(t)
				fmt.Fprintf(conn, "POST /v1/messages HTTP/1.1\r\nHost: x\r\nX-Api-Key: %s\r\n%s\r\n{}", s.seeded.DemoKey, c.head)
				resp, body := readResponse(t, conn)
				if resp.StatusCode != c.status || !resp.Close || body == "" {
					t.Fatalf("status %d close %v body %q, want %d and a hang-up", resp.StatusCode, resp.Close, body, c.status)
				}
				notServed(t, mark)
			})
		}
	})

	// Content-Length and Transfer-Encoding together: the chunked framing wins (RFC 9112
	// §6.3), and the upstream gets the decoded body under a Content-Length of Tollgate's
	// own. The bytes after the last chunk are a second request on the connection, which
	// Tollgate answers itself (it has no key): they never reach the upstream.
	t.Run("Content-Length with Transfer-Encoding", func(t *testing.T) {
		mark := wire.mark()
		conn := s.dial(t)
		smuggled := "POST /v1/messages HTTP/1.1\r\nHost: x\r\nX-Smuggled: yes\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"
		fmt.Fprintf(conn, "POST /v1/messages HTTP/1.1\r\nHost: x\r\nX-Api-Key: %s\r\nAnthropic-Version: 2023-06-01\r\n"+
			"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n%s",
			s.seeded.DemoKey, len(smallBody), smallBody, smuggled)
		resps, bodies := readResponses(t, conn)
		if len(resps) != 2 || resps[0].StatusCode != 200 {
			t.Fatalf("%d responses %q, want the request's 200 and the smuggled one's 401", len(resps), bodies)
		}
		if e := anthropicRefusal(t, bodies[1]); resps[1].StatusCode != 401 || e.Error.Type != "tollgate_authentication_error" {
			t.Fatalf("smuggled request answered %d %s", resps[1].StatusCode, bodies[1])
		}
		up := served(t, mark)
		if up.Body != smallBody || up.ContentLength != int64(len(smallBody)) || len(up.TransferEncoding) != 0 ||
			up.Header.Get("X-Smuggled") != "" || up.Header.Get("X-Api-Key") != operatorKey {
			t.Fatalf("upstream got %+v", up)
		}
	})

	// Connection may name headers to drop as hop-by-hop; naming the credential must not
	// leave the upstream request without the operator's (or with the client's). The
	// client's credentials, Host and forwarding headers never reach the upstream.
	t.Run("client credentials, Host and forwarding headers", func(t *testing.T) {
		mark := wire.mark()
		req, _ := http.NewRequest(http.MethodPost, s.proxyURL+"/v1/messages", strings.NewReader(smallBody))
		req.Host = "169.254.169.254"
		req.Header.Set("X-Api-Key", s.seeded.DemoKey)
		req.Header.Set("Connection", "X-Api-Key, X-Hop")
		req.Header.Set("X-Hop", "per-connection")
		req.Header.Set("Anthropic-Version", "2023-06-01")
		req.Header.Set("Authorization", "Bearer sk-ant-client-own")
		req.Header.Set("X-Goog-Api-Key", "client-google-key")
		req.Header.Set("Proxy-Authorization", "Basic Y2xpZW50OnNlY3JldA==")
		req.Header.Set("Forwarded", "for=6.6.6.6;host=evil.example")
		req.Header.Set("X-Forwarded-For", "6.6.6.6")
		req.Header.Set("X-Forwarded-Host", "evil.example")
		req.Header.Set("X-Real-Ip", "6.6.6.6")
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		up := served(t, mark)
		if v := up.Header.Values("X-Api-Key"); len(v) != 1 || v[0] != operatorKey {
			t.Errorf("upstream x-api-key %q, want only the operator's", v)
		}
		for _, h := range []string{"X-Hop", "Authorization", "X-Goog-Api-Key", "Proxy-Authorization", "Forwarded",
			"X-Forwarded-For", "X-Forwarded-Host", "X-Real-Ip", "Connection"} {
			if v := up.Header.Get(h); v != "" {
				t.Errorf("upstream received the client's %s: %q", h, v)
			}
		}
	})

	// An absolute request target names a host; Tollgate's upstream stays its account's.
	t.Run("absolute-form request target", func(t *testing.T) {
		mark := wire.mark()
		conn := s.dial(t)
		fmt.Fprintf(conn, "POST http://169.254.169.254/v1/messages HTTP/1.1\r\nHost: 169.254.169.254\r\nX-Api-Key: %s\r\n"+
			"Anthropic-Version: 2023-06-01\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", s.seeded.DemoKey, len(smallBody), smallBody)
		resp, body := readResponse(t, conn)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d %s", resp.StatusCode, body)
		}
		if up := served(t, mark); up.URI != "/v1/messages" {
			t.Fatalf("upstream request target %q", up.URI)
		}
	})

	// anthropic-beta passes through as the client sent it: a list with empty items,
	// spaces and bytes beyond ASCII arrives as one header value, splitting into nothing.
	t.Run("odd anthropic-beta list", func(t *testing.T) {
		mark := wire.mark()
		beta := "claude-code-20250219, ,,x\tz,\xff\xfeInjected: yes,context-1m-2025-08-07"
		conn := s.dial(t)
		fmt.Fprintf(conn, "POST /v1/messages HTTP/1.1\r\nHost: x\r\nX-Api-Key: %s\r\nAnthropic-Version: 2023-06-01\r\n"+
			"Anthropic-Beta: %s\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", s.seeded.DemoKey, beta, len(smallBody), smallBody)
		resp, body := readResponse(t, conn)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d %s", resp.StatusCode, body)
		}
		up := served(t, mark)
		if v := up.Header.Values("Anthropic-Beta"); len(v) != 1 || v[0] != beta {
			t.Fatalf("upstream anthropic-beta %q, want %q", v, beta)
		}
		if v := up.Header.Get("Injected"); v != "" {
			t.Fatalf("upstream received an injected header: %q", v)
		}
	})

	// A model name with CR LF (or any control character or space) is refused before
	// anything else, even with every model priced, and the name is quoted in the message.
	t.Run("CR LF in the model", func(t *testing.T) {
		s.priceEveryModel(t)
		// The proxy has the fallback price once a model priced by nothing else is served.
		waitStatus(t, s, `{"model":"claude-of-no-price","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`, 200, "")
		mark := wire.mark()
		crlf := `{"model":"` + model + `\r\nX-Injected: yes","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`
		status, e := s.post(t, s.seeded.DemoKey, crlf)
		if status != 400 || e.Type != "error" || e.Error.Type != "tollgate_invalid_request" || !strings.Contains(e.Error.Message, `\r\nX-Injected: yes"`) {
			t.Fatalf("%d %+v", status, e)
		}
		notServed(t, mark)
	})

	// Gemini's model travels in the path. A model with a slash, a percent sign, dot
	// segments or a control character is refused in Google's shape; one with a query or
	// fragment character is served as one escaped path segment, so the upstream request
	// keeps Tollgate's path and query. Every model is priced by now, so nothing is refused
	// for its price.
	t.Run("Gemini model in the path", func(t *testing.T) {
		body := `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`
		noRedirect := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		for _, c := range []struct {
			name, target string // target is the escaped path after /v1beta/models/
			model        string // the model Tollgate reads; "" when the request is refused
			status       int
		}{
			{"escaped slashes", "gemini-2.5-flash%2F..%2F..%2Fv1%2Fmessages:generateContent", "", 400},
			{"escaped dot segments only", "..%2F..%2F_fakellm%2Freset:generateContent", "", 400},
			{"escaped dot segment", "..:generateContent", "", 400},
			{"escaped percent", "gemini-2.5-flash%252F:generateContent", "", 400},
			{"escaped query", "gemini-2.5-flash%3Fkey=stolen%26alt=sse:generateContent", "gemini-2.5-flash?key=stolen&alt=sse", 200},
			{"escaped fragment", "gemini-2.5-flash%23frag:generateContent", "gemini-2.5-flash#frag", 200},
			{"escaped CR LF", "gemini-2.5-flash%0d%0aX-Injected%20yes:generateContent", "", 400},
			{"escaped action", "gemini-2.5-flash%3AcountTokens:generateContent", "", 404},
			{"literal query", "gemini-2.5-flash?x=1:generateContent", "", 404},
			{"literal dot segments", "../../v1/messages:generateContent", "", http.StatusTemporaryRedirect},
		} {
			t.Run(c.name, func(t *testing.T) {
				mark := wire.mark()
				req, err := http.NewRequest(http.MethodPost, s.proxyURL+"/v1beta/models/"+c.target, strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("X-Goog-Api-Key", s.seeded.DemoKey)
				resp, err := noRedirect.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != c.status {
					t.Fatalf("status %d %s, want %d", resp.StatusCode, b, c.status)
				}
				switch {
				case c.status == http.StatusTemporaryRedirect: // the route table cleans the path before routing
					if loc := resp.Header.Get("Location"); loc != "/v1/messages:generateContent" {
						t.Fatalf("redirected to %q", loc)
					}
					notServed(t, mark)
				case c.model == "":
					decodeGeminiRefusal(t, resp.StatusCode, string(b))
					notServed(t, mark)
				default:
					up := served(t, mark)
					if want := "/v1beta/models/" + url.PathEscape(c.model) + ":generateContent"; up.URI != want {
						t.Fatalf("upstream request target %q, want %q", up.URI, want)
					}
					if up.Header.Get("X-Goog-Api-Key") != "gemini-fakellm-demo" || up.Header.Get("X-Injected") != "" {
						t.Fatalf("upstream headers %v", up.Header)
					}
				}
			})
		}
	})

	// Nothing any case sent put a line break into what the upstream received.
	for _, up := range wire.since(0) {
		for k, vs := range up.Header {
			for _, v := range vs {
				if strings.ContainsAny(k+v+up.URI, "\r\n") {
					t.Errorf("line break reached the upstream: %s: %q (%s)", k, v, up.URI)
				}
			}
		}
	}
}

// priceEveryModel adds the fallback price rule (an empty prefix pattern) for Anthropic
// and Gemini, so that any model name is served.
func (s *stack) priceEveryModel(t *testing.T) {
	t.Helper()
	s.exec(t, `INSERT INTO prices (provider, pattern, match, effective_from, input_pico, output_pico, cache_write_5m_pico,
		cache_write_1h_pico, cache_read_pico, note) VALUES
		('anthropic', '', 'prefix', now() - interval '1 minute', 5000000, 25000000, 6250000, 10000000, 500000, 'fallback'),
		('gemini', '', 'prefix', now() - interval '1 minute', 300000, 2500000, 300000, 300000, 30000, 'fallback')`)
	s.publish("prices:")
}
