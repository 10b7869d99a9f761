package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/fakellm"
	"github.com/tollgate/tollgate/internal/seed"
	"github.com/tollgate/tollgate/internal/testenv"
)

// TestRedisOutage: without Redis the proxy refuses with a clear 503 in the protocol's
// shape (no unlimited mode), a stream that was already running is still billed (straight
// to PostgreSQL), and service comes back by itself when Redis does. A proxy, a worker and
// a web app started during the outage come up, wait, and serve once it is over. Redis keeps its data
// (AOF) across the outage, so the balance snapshot it had returns with it: the proxy
// resets it for the usage it stored meanwhile.
func TestRedisOutage(t *testing.T) {
	rs := testenv.DurableRedisServer(t)
	s := newStack(t, func(su *setup) { su.redis = rs })
	if status, _ := s.post(t, s.seeded.DemoKey, smallBody); status != 200 {
		t.Fatalf("before the outage: %d", status)
	}
	s.ingest(1)
	// A worker process runs throughout and must ride the outage out.
	workerExited := exited(s.startWorker(t))

	// A stream admitted before Redis goes away completes, and is billed through the fallback.
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior { return fakellm.Behavior{EventDelay: 60 * time.Millisecond} })
	body := `{"model":"` + model + `","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"one two three four five six seven"}]}`
	req, _ := http.NewRequest(http.MethodPost, s.proxyURL+"/v1/messages", strings.NewReader(body))
	req.Header.Set("X-Api-Key", s.seeded.DemoKey)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	br.ReadString('\n')
	rs.Stop()
	rest, _ := io.ReadAll(br)
	resp.Body.Close()
	if !strings.Contains(string(rest), "message_stop") {
		t.Fatalf("the running stream broke when Redis stopped:\n%s", rest)
	}
	s.fake.SetScript(nil)
	// Completion runs just after the response; with Redis gone it falls back to PostgreSQL.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var n int
		if err := s.pool.QueryRow(context.Background(), "SELECT count(*) FROM usage_events").Scan(&n); err == nil && n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stream finished during the outage was not recorded directly in PostgreSQL")
		}
	}
	// Its user's balance snapshot and spend counters wait for Redis to be reset.
	for deadline := time.Now().Add(5 * time.Second); s.metric(t, "tollgate_counter_resets_pending") != 4; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%v counter resets pending, want the stored event's 4", s.metric(t, "tollgate_counter_resets_pending"))
		}
	}

	start := time.Now()
	s.checkUnavailable(t, s.proxyURL, "during the outage")
	if took := time.Since(start); took > 15*time.Second {
		t.Fatalf("the three refusals took %s", took)
	}
	// A refused connection fails at once: with go-redis's default of five dials 100 ms
	// apart, each refusal waited about half a second (three in 2 s).
	refused := 0
	for start := time.Now(); time.Since(start) < 2*time.Second; refused++ {
		if status, e := s.post(t, s.seeded.DemoKey, smallBody); status != 503 || e.Error.Type != "tollgate_unavailable" {
			t.Fatalf("during the outage: %d %+v", status, e)
		}
	}
	if refused < 20 {
		t.Fatalf("%d refusals in 2 s with Redis stopped", refused)
	}
	t.Logf("%d refusals in 2 s with Redis stopped", refused)

	// Processes started while Redis is away come up and wait for it: a proxy is alive,
	// not ready, and refuses each protocol in its shape; a worker and a web app run.
	lateURL, lateProxy := s.startProxyDuringOutage(t)
	lateWorker := exited(s.startWorker(t))
	lateWeb, lateWebCmd := s.startWebProcess(t)
	lateWebExited := exited(lateWebCmd)
	waitUp(t, lateWeb.url+"/healthz", "web app started during the outage")
	stillRunning(t, map[string]<-chan error{"proxy": lateProxy, "worker": lateWorker, "web app": lateWebExited})

	rs.Start()
	deadline := time.Now().Add(15 * time.Second)
	for {
		status, _ := s.post(t, s.seeded.DemoKey, smallBody)
		if status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery after Redis returned: %d", status)
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.checkSnapshotHonest(t, s.seeded.DemoUserID)
	// Resets are retried every PROXY_SPOOL_INTERVAL (200 ms here); one asked for by a
	// completion that failed just as Redis came back (still loading its file) waits for
	// the next round.
	for deadline := time.Now().Add(2 * time.Second); s.metric(t, "tollgate_counter_resets_pending") != 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%v counter resets still pending 2 s after Redis returned", s.metric(t, "tollgate_counter_resets_pending"))
		}
	}
	// The worker process is still up and ingests what is served now, by itself.
	rows := s.usageCount(t)
	if status, _ := s.post(t, s.seeded.DemoKey, smallBody); status != 200 {
		t.Fatalf("after the outage: %d", status)
	}
	s.waitIngestedBy(t, workerExited, rows+1, 15*time.Second)

	// The processes started during the outage serve once it is over: the proxy's answer
	// is ingested and billed like any other; the web app signs users in.
	waitUp(t, lateURL+"/readyz", "proxy started during the outage")
	waitUp(t, lateWeb.url+"/readyz", "web app started during the outage")
	if status, page := lateWeb.signIn(t); status != http.StatusSeeOther {
		t.Fatalf("sign-in on the web app started during the outage: %d\n%s", status, page)
	}
	rows = s.usageCount(t)
	if resp, b := rawPost(t, lateURL, s.seeded.DemoKey, smallBody, nil); resp.StatusCode != 200 {
		t.Fatalf("the proxy started during the outage, once it ended: %d %s", resp.StatusCode, b)
	}
	s.waitIngestedBy(t, workerExited, rows+1, 15*time.Second)
	s.checkSnapshotHonest(t, s.seeded.DemoUserID)
}

// TestHungRedisRefusesFast: when Redis hangs (its process frozen: connections open,
// nothing answers, as with a network that drops packets), the first request waits out the
// client's timeouts, and the following ones get their 503 at once instead of each waiting
// as long (limit.Breaker on the proxy's Redis client); service resumes by itself once Redis answers, and what
// was served is billed.
func TestHungRedisRefusesFast(t *testing.T) {
	rs := testenv.RedisServer(t)
	s := newStack(t, func(su *setup) { su.redis = rs })
	if status, _ := s.post(t, s.seeded.DemoKey, smallBody); status != 200 {
		t.Fatalf("before Redis hung: %d", status)
	}
	rs.Freeze()
	start := time.Now()
	if status, e := s.post(t, s.seeded.DemoKey, smallBody); status != 503 || e.Error.Type != "tollgate_unavailable" {
		t.Fatalf("first request to a hung Redis: %d %+v", status, e)
	}
	first := time.Since(start)
	var fast, refused int
	for start := time.Now(); time.Since(start) < 3*time.Second; {
		t0 := time.Now()
		status, e := s.post(t, s.seeded.DemoKey, smallBody)
		if status != 503 || e.Error.Type != "tollgate_unavailable" {
			t.Fatalf("request to a hung Redis: %d %+v", status, e)
		}
		refused++
		if time.Since(t0) < 300*time.Millisecond {
			fast++
		}
	}
	t.Logf("first refusal after %s; then %d refusals in 3 s, %d of them under 300 ms", first.Round(time.Millisecond), refused, fast)
	// Without the breaker each refusal waits for the read timeout (2 s): two at most.
	if fast < 10 {
		t.Fatalf("%d of %d refusals in 3 s came under 300 ms", fast, refused)
	}
	rs.Thaw()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		status, _ := s.post(t, s.seeded.DemoKey, smallBody)
		if status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery 10 s after Redis answered again: %d", status)
		}
	}
	s.ingest(2)
	s.checkSnapshotHonest(t, s.seeded.DemoUserID)
}

// waitIngestedBy waits until usage_events holds n rows, which only the worker process
// whose exit workerExited reports stores (failing if it exits first, or if more appear).
// A failed count (a database coming back) is retried.
func (s *stack) waitIngestedBy(t *testing.T, workerExited <-chan error, n int, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-workerExited:
			t.Fatalf("the worker exited during or after the outage: %v", err)
		default:
		}
		var got int
		err := s.pool.QueryRow(context.Background(), "SELECT count(*) FROM usage_events").Scan(&got)
		switch {
		case err == nil && got == n:
			return
		case got > n:
			t.Fatalf("usage_events has %d rows, want %d", got, n)
		case time.Now().After(deadline):
			t.Fatalf("the worker stored %d usage events in %s, want %d (last error: %v)", got, within, n, err)
		}
	}
}

// TestPostgresOutage: with PostgreSQL down for 30 s under steady load (four clients,
// streams and plain requests), known keys keep being served (caches and Redis carry the
// hot path), nothing is lost, and a cmd/worker process that runs throughout catches the
// ledger up by itself when it returns. The web app, a cmd/web process on the same
// database, answers a clear error page meanwhile and signs users in again once the
// database is back.
func TestPostgresOutage(t *testing.T) {
	const outage = 30 * time.Second
	pg := testenv.Postgres(t)
	s := newStack(t, func(su *setup) { su.pg = pg })
	web := s.startWeb(t)
	if status, page := web.signIn(t); status != http.StatusSeeOther {
		t.Fatalf("sign-in before the outage: %d\n%s", status, page)
	}
	// A worker process ingests throughout: it must ride out the outage and catch up by
	// itself, and says meanwhile how many events wait (tollgate_usage_backlog).
	workerAddr := freeAddr(t)
	workerExited := exited(s.startProcess(t, "worker", "WORKER_HEALTH_ADDR="+workerAddr, "USAGE_CLAIM_IDLE=1s"))
	waitUp(t, "http://"+workerAddr+"/healthz", "worker")
	backlog := func() float64 { return metricAt(t, "http://"+workerAddr, "tollgate_usage_backlog") }
	before := s.balance(s.seeded.DemoUserID)
	seq := s.fake.LastSeq()
	if status, _ := s.post(t, s.seeded.DemoKey, smallBody); status != 200 {
		t.Fatalf("before the outage: %d", status)
	}
	stream := `{"model":"` + model + `","max_tokens":32,"stream":true,"messages":[{"role":"user","content":"still here"}]}`

	pg.Stop()
	down := time.Now()
	var during atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; time.Since(down) < outage; i++ {
				body := smallBody
				if (i+w)%2 == 1 {
					body = stream
				}
				resp, b := rawPost(t, s.proxyURL, s.seeded.DemoKey, body, nil)
				if resp.StatusCode != 200 || (body == stream && !strings.Contains(string(b), "message_stop")) {
					t.Errorf("request during the outage: %d %s", resp.StatusCode, b)
					return
				}
				during.Add(1)
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
	// The proxy stays ready: a load balancer must keep sending it the traffic its caches
	// carry.
	if resp, err := httpClient.Get(s.proxyURL + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/readyz of the running proxy during the outage: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// A key the proxy has never seen cannot be checked: a clear 503, not a 401.
	status, e := s.post(t, "tg-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB", smallBody)
	if status != 503 || e.Error.Type != "tollgate_unavailable" {
		t.Fatalf("unknown key during the outage: %d %+v", status, e)
	}
	// The web app: a page that says what is going on, when to retry, and nothing of
	// its internals.
	status, page := web.signIn(t)
	if status != http.StatusServiceUnavailable || !strings.Contains(page, "Temporarily unavailable") || !strings.Contains(page, "Request ID:") {
		t.Fatalf("sign-in during the outage: %d\n%s", status, page)
	}
	pgURL, _ := url.Parse(pg.URL)
	for _, leak := range []string{"dial tcp", "connect:", "goroutine", "pgx", pgURL.Host} {
		if strings.Contains(page, leak) {
			t.Fatalf("the error page shows %q:\n%s", leak, page)
		}
	}

	// Processes started while the database is away wait for it rather than exit. A
	// proxy answers meanwhile: alive on /healthz, 503 on /readyz, and each protocol's
	// 503 refusal; a web app its 503 page; a worker stays up.
	lateURL, lateProxy := s.startProxyDuringOutage(t)
	lateWorkerAddr := freeAddr(t)
	lateWorker := exited(s.startProcess(t, "worker", "WORKER_HEALTH_ADDR="+lateWorkerAddr, "USAGE_CLAIM_IDLE=1s"))
	lateWeb, lateWebCmd := s.startWebProcess(t)
	lateWebExited := exited(lateWebCmd)
	waitUp(t, lateWeb.url+"/healthz", "web app started during the outage")
	if status, page := lateWeb.signIn(t); status != http.StatusServiceUnavailable || !strings.Contains(page, "Temporarily unavailable") {
		t.Fatalf("sign-in on a web app started during the outage: %d\n%s", status, page)
	}

	wg.Wait()
	if t.Failed() {
		return
	}
	stillRunning(t, map[string]<-chan error{"proxy": lateProxy, "worker": lateWorker, "web app": lateWebExited})
	// What was served waits in Redis's stream, and the worker says how much.
	if n := backlog(); n < float64(during.Load())/2 || n > float64(during.Load())+2 {
		t.Fatalf("tollgate_usage_backlog %v with %d requests served during the outage", n, during.Load())
	}
	// The proxy cannot read the recorded cache invalidations, and says so.
	if n := s.metric(t, "tollgate_invalidation_feed_failing"); n != 1 {
		t.Fatalf("tollgate_invalidation_feed_failing %v during the outage", n)
	}
	pg.Start()
	t.Logf("%d requests served during the %s outage", during.Load(), outage)
	// The web apps recover by themselves, the one started during the outage included.
	for _, w := range []webApp{web, lateWeb} {
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			status, page := w.signIn(t)
			if status == http.StatusSeeOther {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("sign-in 15 s after the database returned: %d\n%s", status, page)
			}
		}
	}
	// The proxy and the worker started during the outage come up once it ends (their
	// pause between attempts is at most 5 s); the proxy then serves the demo key.
	waitUp(t, lateURL+"/readyz", "proxy started during the outage")
	waitUp(t, "http://"+lateWorkerAddr+"/healthz", "worker started during the outage")
	if resp, b := rawPost(t, lateURL, s.seeded.DemoKey, smallBody, nil); resp.StatusCode != 200 {
		t.Fatalf("the proxy started during the outage, once it ended: %d %s", resp.StatusCode, b)
	}

	// The worker processes, still running, store every request served during the outage
	// (and the one just served).
	s.waitIngestedBy(t, workerExited, int(during.Load())+2, 30*time.Second)
	for deadline := time.Now().Add(10 * time.Second); backlog() != 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("tollgate_usage_backlog %v after everything was stored", backlog())
		}
	}
	for deadline := time.Now().Add(10 * time.Second); s.metric(t, "tollgate_invalidation_feed_failing") != 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("tollgate_invalidation_feed_failing still 1 after the database returned")
		}
	}
	var wantNano int64
	for _, e := range s.fake.ServedSince(seq) {
		wantNano += s.expectedBilled(e.Usage)
	}
	if got := s.balance(s.seeded.DemoUserID); got != before-wantNano {
		t.Fatalf("balance %d, want %d", got, before-wantNano)
	}
}

// TestUsageSpooledWhenRedisAndPostgresAreDown: a stream that finishes while both stores
// are down is written to the proxy's disk spool and billed once they return; Redis keeps
// its data (AOF), and the balance snapshot it brings back is reset for that usage.
func TestUsageSpooledWhenRedisAndPostgresAreDown(t *testing.T) {
	rs, pg := testenv.DurableRedisServer(t), testenv.Postgres(t)
	s := newStack(t, func(su *setup) { su.redis, su.pg = rs, pg })
	before := s.balance(s.seeded.DemoUserID)
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior { return fakellm.Behavior{EventDelay: 50 * time.Millisecond} })
	body := `{"model":"` + model + `","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"one two three four five six seven eight"}]}`
	seq := s.fake.LastSeq()
	req, _ := http.NewRequest(http.MethodPost, s.proxyURL+"/v1/messages", strings.NewReader(body))
	req.Header.Set("X-Api-Key", s.seeded.DemoKey)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	br.ReadString('\n')
	rs.Stop()
	pg.Stop()
	if rest, _ := io.ReadAll(br); !strings.Contains(string(rest), "message_stop") {
		t.Fatalf("stream broken:\n%s", rest)
	}
	resp.Body.Close()
	// The completion (after the response) fails over Redis and PostgreSQL to the spool;
	// the spool loop tries and fails to deliver meanwhile.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if files, _ := filepath.Glob(filepath.Join(s.spoolDir, "usage-*.jsonl")); len(files) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no spool file while both stores are down")
		}
	}
	if n := s.metric(t, "tollgate_usage_spool_bytes"); n <= 0 {
		t.Fatalf("tollgate_usage_spool_bytes %v with an event spooled", n)
	}
	time.Sleep(500 * time.Millisecond)
	rs.Start()
	pg.Start()
	s.ingest(1)
	for deadline := time.Now().Add(10 * time.Second); s.metric(t, "tollgate_usage_spool_bytes") != 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the spool still holds bytes after its event was stored")
		}
	}
	served := s.fake.ServedSince(seq)
	if got, want := s.balance(s.seeded.DemoUserID), before-s.expectedBilled(served[0].Usage); got != want {
		t.Fatalf("balance %d, want %d", got, want)
	}
	s.checkSnapshotHonest(t, s.seeded.DemoUserID)
}

// webApp is a cmd/web process on a stack's stores.
type webApp struct{ url string }

// startWeb runs cmd/web as its own process on the stack's stores and waits until it is
// ready.
func (s *stack) startWeb(t *testing.T) webApp {
	t.Helper()
	w, _ := s.startWebProcess(t)
	waitUp(t, w.url+"/readyz", "web")
	return w
}

// startWebProcess runs cmd/web as its own process on the stack's stores.
func (s *stack) startWebProcess(t *testing.T) (webApp, *exec.Cmd) {
	t.Helper()
	addr := freeAddr(t)
	cmd := s.startProcess(t, "web", "WEB_ADDR="+addr, "BASE_URL=http://"+addr, "PROXY_PUBLIC_URL="+s.proxyURL)
	return webApp{url: "http://" + addr}, cmd
}

// signIn posts the demo user's credentials to /login and returns the status (303 when
// signed in) and the page.
func (w webApp) signIn(t *testing.T) (int, string) {
	t.Helper()
	resp := w.login(t, nil)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// session signs the demo user in and returns a client that carries the session and
// follows no redirect.
func (w webApp) session(t *testing.T) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	resp := w.login(t, jar)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: %d", resp.StatusCode)
	}
	return &http.Client{Jar: jar, Timeout: 20 * time.Second, CheckRedirect: noRedirect}
}

// login posts the demo user's credentials to /login with a client keeping its cookies
// in jar (nil: none), following no redirect.
func (w webApp) login(t *testing.T, jar http.CookieJar) *http.Response {
	t.Helper()
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second, CheckRedirect: noRedirect}
	resp, err := c.PostForm(w.url+"/login", url.Values{"email": {seed.DemoEmail}, "password": {seed.DemoPassword}})
	if err != nil {
		t.Fatalf("sign in: %v", err)
	}
	return resp
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// checkUnavailable sends the demo key's request on each protocol (Anthropic, OpenAI Chat
// Completions, Gemini) to the proxy at base and requires the 503 tollgate_unavailable
// refusal in that protocol's own shape, with a message that says Tollgate refused.
func (s *stack) checkUnavailable(t *testing.T, base, when string) {
	t.Helper()
	send := func(path, body string, hdr ...string) (*http.Response, []byte) {
		req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, b := send("/v1/messages", smallBody, "X-Api-Key", s.seeded.DemoKey, "Anthropic-Version", "2023-06-01")
	var ae struct {
		Type  string
		Error struct{ Type, Message string }
	}
	if json.Unmarshal(b, &ae) != nil || resp.StatusCode != 503 || ae.Type != "error" || ae.Error.Type != "tollgate_unavailable" || !strings.HasPrefix(ae.Error.Message, "Tollgate") {
		t.Fatalf("Anthropic request %s: %d %s", when, resp.StatusCode, b)
	}
	resp, b = send("/v1/chat/completions", `{"model":"`+gptModel+`","messages":[{"role":"user","content":"hi"}]}`, "Authorization", "Bearer "+s.seeded.DemoKey)
	var oe struct {
		Error struct{ Message, Type, Code string } `json:"error"`
	}
	if json.Unmarshal(b, &oe) != nil || resp.StatusCode != 503 || oe.Error.Type != "tollgate_unavailable" || !strings.HasPrefix(oe.Error.Message, "Tollgate") {
		t.Fatalf("OpenAI request %s: %d %s", when, resp.StatusCode, b)
	}
	resp, b = send("/v1beta/models/"+geminiModel+":generateContent", `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`, "X-Goog-Api-Key", s.seeded.DemoKey)
	var ge struct {
		Error struct {
			Code    int
			Message string
			Status  string
			Details []struct{ Reason string }
		} `json:"error"`
	}
	if json.Unmarshal(b, &ge) != nil || resp.StatusCode != 503 || ge.Error.Code != 503 || ge.Error.Status != "UNAVAILABLE" ||
		len(ge.Error.Details) != 1 || ge.Error.Details[0].Reason != "tollgate_unavailable" || !strings.HasPrefix(ge.Error.Message, "Tollgate") {
		t.Fatalf("Gemini request %s: %d %s", when, resp.StatusCode, b)
	}
}

// startProxyDuringOutage starts a proxy process while a store is away and checks that it
// is alive (/healthz), not ready (/readyz 503), and refuses each protocol in its shape. It
// returns the proxy's URL and its exit (exited).
func (s *stack) startProxyDuringOutage(t *testing.T) (string, <-chan error) {
	t.Helper()
	addr := freeAddr(t)
	exit := exited(s.startProcess(t, "proxy", "PROXY_ADDR="+addr, "PROXY_SPOOL_DIR="+t.TempDir()))
	url := "http://" + addr
	waitUp(t, url+"/healthz", "proxy started during the outage")
	resp, err := httpClient.Get(url + "/readyz")
	if err != nil || resp.StatusCode != 503 {
		t.Fatalf("/readyz of a proxy started during the outage: %v %v", resp, err)
	}
	resp.Body.Close()
	s.checkUnavailable(t, url, "to a proxy started during the outage")
	return url, exit
}

// stillRunning fails the test if one of the processes (named, with their exits) has
// exited.
func stillRunning(t *testing.T, procs map[string]<-chan error) {
	t.Helper()
	for what, c := range procs {
		select {
		case err := <-c:
			t.Fatalf("the %s started during the outage exited: %v", what, err)
		default:
		}
	}
}
