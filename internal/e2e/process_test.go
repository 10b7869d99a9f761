package e2e

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/fakellm"
	"github.com/tollgate/tollgate/internal/limit"
	"github.com/tollgate/tollgate/internal/seed"
	"github.com/tollgate/tollgate/internal/usage"
)

var binaries struct {
	once sync.Once
	dir  string
	err  error
}

// binary builds cmd/<name> once per test run and returns its path.
func binary(t *testing.T, name string) string {
	t.Helper()
	binaries.once.Do(func() {
		binaries.dir, binaries.err = os.MkdirTemp("", "tollgate-e2e-bin")
		if binaries.err != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binaries.dir+"/", "../../cmd/proxy", "../../cmd/worker", "../../cmd/fakellm", "../../cmd/web")
		out, err := cmd.CombinedOutput()
		if err != nil {
			binaries.err = &buildError{string(out)}
		}
	})
	if binaries.err != nil {
		t.Fatalf("build binaries: %v", binaries.err)
	}
	return filepath.Join(binaries.dir, name)
}

type buildError struct{ out string }

func (e *buildError) Error() string { return e.out }

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startProcess runs cmd/<name> as its own process on the stack's stores, with env added
// to their settings; it is killed when the test ends.
func (s *stack) startProcess(t *testing.T, name string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(binary(t, name))
	cmd.Env = append(os.Environ(), "DATABASE_URL="+s.dbURL, "REDIS_URL="+s.redisURL, "REDIS_PREFIX="+s.prefix,
		"SECRET_KEY="+secretKey, "ENV=test", "LOG_LEVEL=warn")
	cmd.Env = append(cmd.Env, env...)
	if os.Getenv("TEST_LOG") != "" {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// One goroutine waits for the process (exec.Cmd.Wait may be called only once);
	// waitExit and exited read what it got.
	p := &process{done: make(chan struct{})}
	processes.Store(cmd, p)
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		processes.Delete(cmd)
	})
	return cmd
}

// process is the exit of a process startProcess started: done is closed once it has
// exited, err is what Wait returned.
type process struct {
	done chan struct{}
	err  error
}

var processes sync.Map // *exec.Cmd → *process

// waitExit waits until cmd (started by startProcess) has exited and returns what Wait
// returned.
func waitExit(cmd *exec.Cmd) error {
	v, _ := processes.Load(cmd)
	p := v.(*process)
	<-p.done
	return p.err
}

// waitUp waits until url answers 200.
func waitUp(t *testing.T, url, what string) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := httpClient.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s process did not become ready", what)
		}
	}
}

// startProxy runs cmd/proxy as its own process on the stack's stores.
func (s *stack) startProxy(t *testing.T, extraEnv ...string) (url string, cmd *exec.Cmd) {
	t.Helper()
	addr := freeAddr(t)
	// Its own journal and spool; extraEnv may share one.
	env := append([]string{"PROXY_ADDR=" + addr, "PROXY_SPOOL_DIR=" + t.TempDir()}, extraEnv...)
	cmd = s.startProcess(t, "proxy", env...)
	url = "http://" + addr
	waitUp(t, url+"/readyz", "proxy")
	return url, cmd
}

// TestKilledProxyLeaksNoLease kills a proxy process mid-stream; its concurrency lease
// expires within the lease TTL and the key's single slot becomes usable again.
func TestKilledProxyLeaksNoLease(t *testing.T) {
	const ttl = 2 * time.Second
	s := newStack(t, func(su *setup) { su.limits = limit.Options{LeaseTTL: ttl} })
	ctx := context.Background()
	if _, err := s.pool.Exec(ctx, "UPDATE api_keys SET concurrency = 1"); err != nil {
		t.Fatal(err)
	}
	url, cmd := s.startProxy(t, "LEASE_TTL="+ttl.String())
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior {
		if strings.Contains(r.LastUserText, "slow") {
			return fakellm.Behavior{EventDelay: 300 * time.Millisecond}
		}
		return fakellm.Behavior{}
	})

	body := `{"model":"` + model + `","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"a slow answer with many words in it"}]}`
	_, release := s.holdRequests(t, url, body, 1, true)
	defer release()
	leases := s.prefix + "conc:k:" + strconv.FormatInt(s.keyID(), 10)
	if n, _ := s.rdb.ZCard(ctx, leases).Result(); n != 1 {
		t.Fatalf("%d leases held mid-stream, want 1", n)
	}
	if n := s.leasesHeld(t); n < 2 {
		t.Fatalf("%d leases held mid-stream in all sets, want the key's and the account's at least", n)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	waitExit(cmd)

	// The in-process proxy shares the stores: its request waits for the dead lease to
	// expire, then is admitted.
	status, _ := s.post(t, s.seeded.DemoKey, smallBody)
	waited := time.Since(killed)
	if status != 200 {
		t.Fatalf("after the kill: status %d", status)
	}
	if waited > ttl+3*time.Second {
		t.Fatalf("the slot came back after %s, want within the lease TTL (%s) plus a wake-up", waited, ttl)
	}
	// Leases are released by the completion that runs just after the response: none is
	// left in any set, the user's and the account's included.
	s.waitNoLeases(t, s.leasesHeld, time.Now().Add(5*time.Second), "after the request finished")
}

func (s *stack) keyID() int64 {
	s.t.Helper()
	var id int64
	if err := s.pool.QueryRow(context.Background(), "SELECT id FROM api_keys WHERE user_id = $1 ORDER BY id LIMIT 1", s.seeded.DemoUserID).Scan(&id); err != nil {
		s.t.Fatal(err)
	}
	return id
}

// leasesHeld counts the concurrency leases in every user's, key's and account's lease
// set, expired ones included (they go when a later admission purges them).
func (s *stack) leasesHeld(t *testing.T) int64 { return s.countLeases(t, "-inf") }

// leasesLive counts the leases that have not expired: those that still count against a
// limit.
func (s *stack) leasesLive(t *testing.T) int64 {
	return s.countLeases(t, "("+strconv.FormatInt(time.Now().UnixMilli(), 10))
}

// countLeases counts the leases in every lease set whose expiry (their score, in ms) is
// above min.
func (s *stack) countLeases(t *testing.T, min string) int64 {
	t.Helper()
	ctx := context.Background()
	var n int64
	iter := s.rdb.Scan(ctx, 0, s.prefix+"conc:*", 100).Iterator()
	for iter.Next(ctx) {
		c, err := s.rdb.ZCount(ctx, iter.Val(), min, "+inf").Result()
		if err != nil {
			t.Fatal(err)
		}
		n += c
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitNoLeases waits until count (leasesHeld or leasesLive) finds no lease, and fails
// the test, saying when, if one is still there after deadline.
func (s *stack) waitNoLeases(t *testing.T, count func(*testing.T) int64, deadline time.Time, when string) {
	t.Helper()
	for {
		n := count(t)
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d leases left %s", n, when)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exited delivers cmd's exit (what Wait returns) once the process has ended.
func exited(cmd *exec.Cmd) <-chan error {
	c := make(chan error, 1)
	go func() { c <- waitExit(cmd) }()
	return c
}

// waitCheckpoints waits until n streams' checkpoints are in Redis's journal.
func (s *stack) waitCheckpoints(t *testing.T, n int64) {
	t.Helper()
	journal := s.prefix + "journal:ev"
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got, err := s.rdb.HLen(context.Background(), journal).Result()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d streams checkpointed (%v)", got, n, err)
		}
	}
}

// TestSigtermDrainsUnderLoad: on SIGTERM a proxy closes its listener at once, so a load
// balancer's next connection goes to another proxy, while the streams it is serving run
// to their end and are billed; then it exits cleanly.
func TestSigtermDrainsUnderLoad(t *testing.T) {
	const streams, others = 8, 10
	s := newStack(t)
	s.exec(t, "UPDATE groups SET default_concurrency = 0")
	urlA, cmdA := s.startProxy(t)
	urlB, _ := s.startProxy(t)
	addrA, addrB := strings.TrimPrefix(urlA, "http://"), strings.TrimPrefix(urlB, "http://")
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior {
		if strings.Contains(r.LastUserText, "slow") {
			return fakellm.Behavior{EventDelay: 200 * time.Millisecond}
		}
		return fakellm.Behavior{}
	})
	before := s.balance(s.seeded.DemoUserID)
	seq := s.lastServedSeq()

	// The load on A: streams whose first line has arrived when SIGTERM comes.
	body := `{"model":"` + model + `","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"a slow answer with quite a few words in it"}]}`
	var (
		started  sync.WaitGroup
		finished sync.WaitGroup
		done     atomic.Int32
		rids     = make([]string, streams)
		rests    = make([]string, streams)
		errs     = make([]error, streams)
	)
	started.Add(streams)
	for i := range streams {
		finished.Go(func() {
			defer done.Add(1)
			req, _ := http.NewRequest(http.MethodPost, urlA+"/v1/messages", strings.NewReader(body))
			req.Header.Set("X-Api-Key", s.seeded.DemoKey)
			req.Header.Set("Anthropic-Version", "2023-06-01")
			resp, err := httpClient.Do(req)
			if err != nil {
				errs[i] = err
				started.Done()
				return
			}
			defer resp.Body.Close()
			rids[i] = resp.Header.Get("X-Tollgate-Request-Id")
			br := bufio.NewReader(resp.Body)
			_, errs[i] = br.ReadString('\n')
			started.Done()
			if errs[i] != nil {
				return
			}
			rest, err := io.ReadAll(br)
			rests[i], errs[i] = string(rest), err
		})
	}
	started.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("stream %d did not start: %v", i, err)
		}
	}
	if err := cmdA.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// A refuses new connections while its streams are still running.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addrA, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the draining proxy still accepts connections 5 s after SIGTERM")
		}
	}
	if n := done.Load(); n == streams {
		t.Fatal("every stream ended before the listener closed: the test did not see a drain")
	}

	// A client balancing over both proxies, A first (as a load balancer whose health
	// check has not caught up yet), gets every answer from B.
	var dialed sync.Map
	lb := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			var err error
			for _, addr := range []string{addrA, addrB} {
				var c net.Conn
				if c, err = d.DialContext(ctx, network, addr); err == nil {
					dialed.Store(addr, true)
					return c, nil
				}
			}
			return nil, err
		},
	}}
	for range others {
		req, _ := http.NewRequest(http.MethodPost, "http://proxies/v1/messages", strings.NewReader(smallBody))
		req.Header.Set("X-Api-Key", s.seeded.DemoKey)
		req.Header.Set("Anthropic-Version", "2023-06-01")
		resp, err := lb.Do(req)
		if err != nil {
			t.Fatalf("a new request while A drains: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("a new request while A drains: %d %s", resp.StatusCode, b)
		}
	}
	if _, ok := dialed.Load(addrA); ok {
		t.Fatal("a new connection reached the draining proxy")
	}

	// Every stream A was serving ran to its end.
	finished.Wait()
	for i := range streams {
		if errs[i] != nil {
			t.Fatalf("stream %d broken by SIGTERM: %v", i, errs[i])
		}
		if !strings.Contains(rests[i], "event: message_stop") {
			t.Fatalf("stream %d did not finish:\n%s", i, rests[i])
		}
	}
	select {
	case err := <-exited(cmdA):
		if err != nil {
			t.Fatalf("proxy exited with %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("proxy did not exit after draining")
	}

	// The drained streams and B's answers are billed once each, as fakellm served them.
	served := s.waitServed(t, seq, streams+others)
	var want int64
	for _, e := range served {
		if !e.Complete {
			t.Fatalf("fakellm logged %s as cut", e.RequestID)
		}
		want += s.expectedBilled(e.Usage)
	}
	s.ingest(streams + others)
	rows, billed, _ := s.billedRows(t, rids)
	if rows != streams {
		t.Fatalf("%d of the %d drained streams billed", rows, streams)
	}
	if billed <= 0 {
		t.Fatalf("the drained streams billed %d nano", billed)
	}
	if moved := before - s.balance(s.seeded.DemoUserID); moved != want {
		t.Fatalf("wallet moved by %d nano; fakellm served %d requests worth %d", moved, len(served), want)
	}
	// No lease outlives the drain (B's unused reservations go back within
	// ADMISSION_RESERVE_IDLE, 2 s).
	s.waitNoLeases(t, s.leasesHeld, time.Now().Add(10*time.Second), "10 s after the drain")
}

// TestLimitsHoldAcrossTwoProxies: a key's concurrency limit is shared by every proxy.
func TestLimitsHoldAcrossTwoProxies(t *testing.T) {
	var fl inflight
	s := newStack(t, func(su *setup) { su.upstream = fl.wrap })
	const limitN = 3
	s.exec(t, "UPDATE api_keys SET concurrency = 3")
	second, _ := s.startProxy(t)
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior { return fakellm.Behavior{EventDelay: 20 * time.Millisecond} })
	body := `{"model":"` + model + `","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"one two three four five six"}]}`
	var wg sync.WaitGroup
	for i := range 12 {
		base := s.proxyURL
		if i%2 == 1 {
			base = second
		}
		wg.Go(func() {
			if resp, b := rawPost(t, base, s.seeded.DemoKey, body, nil); resp.StatusCode != 200 {
				t.Errorf("request %d: %d %s", i, resp.StatusCode, b)
			}
		})
	}
	wg.Wait()
	if p := fl.peak.Load(); p != limitN {
		t.Fatalf("peak in flight across two proxies = %d, want the limit, %d", p, limitN)
	}
	s.ingest(12)
}

// TestKilledProxyBillsInFlightStreams kills a proxy process while it relays 20 streams.
// Each stream's usage so far (message_start's) was checkpointed; once the dead proxy's
// leases expire, the surviving proxy bills every checkpoint exactly once, and the bill
// is what fakellm put on the wire for it. Leases and journal are empty afterwards.
func TestKilledProxyBillsInFlightStreams(t *testing.T) {
	const ttl = 2 * time.Second
	const n = 20
	s := newStack(t, func(su *setup) { su.limits = limit.Options{LeaseTTL: ttl} })
	ctx := context.Background()
	s.exec(t, "UPDATE groups SET default_concurrency = 0") // all 20 at once
	url, cmd := s.startProxy(t, "LEASE_TTL="+ttl.String())
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior {
		return fakellm.Behavior{EventDelay: 250 * time.Millisecond}
	})
	before := s.balance(s.seeded.DemoUserID)
	seq := s.lastServedSeq()

	body := `{"model":"` + model + `","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"an answer long enough to be cut in the middle of it"}]}`
	rids, release := s.holdRequests(t, url, body, n, true)
	// Every stream has relayed message_start; wait for the checkpoints to land.
	s.waitCheckpoints(t, n)
	journal := s.prefix + "journal:ev"
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(cmd)
	release()

	// fakellm notices the dead connection at its next event and logs what it wrote.
	cut := s.waitServed(t, seq, n)
	if len(cut) != n {
		t.Fatalf("fakellm logged %d streams, want %d", len(cut), n)
	}
	var want fakellm.Usage
	var wantBilled int64
	for _, e := range cut {
		if e.Complete {
			t.Fatalf("stream %s completed although its proxy was killed", e.RequestID)
		}
		want.InputTokens += e.Usage.InputTokens
		want.OutputTokens += e.Usage.OutputTokens
		wantBilled += s.expectedBilled(e.Usage)
	}

	// The in-process proxy sweeps every third of the TTL: all 20 are billed once.
	s.ingest(n)
	var rows, input, output, billed int64
	var classes []string
	err := s.pool.QueryRow(ctx, `SELECT count(*), sum(input_tokens), sum(output_tokens), sum(billed_cost_nano),
		array_agg(DISTINCT error_class) FROM usage_events WHERE request_id = ANY($1)`, rids).Scan(&rows, &input, &output, &billed, &classes)
	if err != nil {
		t.Fatal(err)
	}
	if rows != n || input != want.InputTokens || output != want.OutputTokens || billed != wantBilled {
		t.Fatalf("billed %d rows, %d in / %d out tokens, %d nano; fakellm wrote %d streams, %d in / %d out, %d nano",
			rows, input, output, billed, n, want.InputTokens, want.OutputTokens, wantBilled)
	}
	if len(classes) != 1 || classes[0] != "proxy_lost" {
		t.Fatalf("error classes %v, want [proxy_lost]", classes)
	}
	if after := s.balance(s.seeded.DemoUserID); before-after != wantBilled {
		t.Fatalf("wallet moved by %d nano, want %d", before-after, wantBilled)
	}
	if got, _ := s.rdb.HLen(ctx, journal).Result(); got != 0 {
		t.Fatalf("%d journal entries left", got)
	}
	if got := s.leasesHeld(t); got != 0 {
		t.Fatalf("%d leases left", got)
	}
}

// TestSweepSkipsRecordedRequests: a checkpoint whose request is already recorded in
// PostgreSQL (its completion went through the fallback while Redis was away, and the
// journal entry outlived it) is dropped by the sweep, not billed a second time.
func TestSweepSkipsRecordedRequests(t *testing.T) {
	s := newStack(t, func(su *setup) { su.limits = limit.Options{LeaseTTL: 2 * time.Second} })
	ctx := context.Background()
	stream := `{"model":"` + model + `","max_tokens":32,"stream":true,"messages":[{"role":"user","content":"recorded"}]}`
	resp, b := rawPost(t, s.proxyURL, s.seeded.DemoKey, stream, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	rid := resp.Header.Get("X-Tollgate-Request-Id")
	s.ingest(1)
	balance := s.balance(s.seeded.DemoUserID)
	snapKey := s.prefix + "bal:" + strconv.FormatInt(s.seeded.DemoUserID, 10)
	snap, _ := s.rdb.Get(ctx, snapKey).Int64()
	events, _ := s.rdb.XLen(ctx, s.prefix+"usage").Result()

	ev := usage.Event{RequestID: rid, Time: time.Now(), UserID: s.seeded.DemoUserID, KeyID: s.keyID(),
		AccountID: s.accountID(seed.DemoAccountName), BilledNano: 5000, ErrorClass: "proxy_lost", Status: 200, Stream: true}
	s.rdb.HSet(ctx, s.prefix+"journal:ev", rid, ev.AppendJSON(nil))
	s.rdb.ZAdd(ctx, s.prefix+"journal", redis.Z{Score: float64(time.Now().Add(-time.Second).UnixMilli()), Member: rid})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if n, _ := s.rdb.HLen(ctx, s.prefix+"journal:ev").Result(); n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sweep left the checkpoint of a recorded request")
		}
	}
	if n, _ := s.rdb.XLen(ctx, s.prefix+"usage").Result(); n != events {
		t.Fatalf("usage stream %d -> %d entries: the recorded request was billed again", events, n)
	}
	if got, _ := s.rdb.Get(ctx, snapKey).Int64(); got != snap {
		t.Fatalf("balance snapshot moved %d -> %d", snap, got)
	}
	if got := s.balance(s.seeded.DemoUserID); got != balance {
		t.Fatalf("balance moved %d -> %d", balance, got)
	}
}
