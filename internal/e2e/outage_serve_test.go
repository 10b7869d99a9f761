package e2e

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/tollgate/tollgate/internal/apikey"
	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/internal/fakellm"
	"github.com/tollgate/tollgate/internal/limit"
	"github.com/tollgate/tollgate/internal/testenv"
)

// TestServingThroughRedisOutage: an operator who opted in (REDIS_OUTAGE=serve) keeps
// serving while Redis is down. The proxy stays ready; known keys are served on every
// protocol; each answer fakellm served is billed exactly once, straight in PostgreSQL,
// and the wallet moves by exactly that; a used-up wallet is still refused and the key's
// concurrency limit still holds, counted in the proxy. A proxy process started with the
// option during the outage serves too. When Redis returns, admission goes through it
// again and the balance snapshot it brings back is reset for the usage stored meanwhile.
func TestServingThroughRedisOutage(t *testing.T) {
	rs := testenv.DurableRedisServer(t)
	s := newStack(t, func(su *setup) {
		su.redis = rs
		su.limits = limit.Options{RedisOutage: limit.OutageServe}
	})
	ctx := context.Background()
	s.exec(t, "UPDATE api_keys SET concurrency = 1")
	broke := s.userWithEmptyWallet(t)
	if status, _ := s.post(t, s.seeded.DemoKey, smallBody); status != 200 {
		t.Fatalf("before the outage: %d", status)
	}
	s.ingest(1)
	before := s.balance(s.seeded.DemoUserID)
	rowsBefore, billedBefore := s.usageTotals(t)
	seq := s.lastServedSeq()

	rs.Stop()
	if resp, err := httpClient.Get(s.proxyURL + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/readyz with Redis down, serving without it: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	const plain = 8
	for i := range plain {
		if status, e := s.post(t, s.seeded.DemoKey, smallBody); status != 200 {
			t.Fatalf("request %d without Redis: %d %+v", i, status, e)
		}
	}
	oai := s.openai()
	chat, err := oai.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: gptModel,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello without Redis")}})
	if err != nil || chat.Usage.PromptTokens == 0 {
		t.Fatalf("OpenAI request without Redis: %v %+v", err, chat)
	}
	// A stream holds the key's one slot: another request is refused meanwhile.
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior { return fakellm.Behavior{EventDelay: 40 * time.Millisecond} })
	body := `{"model":"` + model + `","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"one two three four five six seven"}]}`
	req, _ := http.NewRequest(http.MethodPost, s.proxyURL+"/v1/messages", strings.NewReader(body))
	req.Header.Set("X-Api-Key", s.seeded.DemoKey)
	resp, err := httpClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream without Redis: %v %v", resp, err)
	}
	br := bufio.NewReader(resp.Body)
	br.ReadString('\n') //nolint:errcheck
	if status, e := s.post(t, s.seeded.DemoKey, smallBody); status != 429 || e.Error.Type != "tollgate_concurrency_limit" {
		t.Fatalf("a second request while the key's one slot is taken: %d %+v", status, e)
	}
	rest, _ := io.ReadAll(br)
	resp.Body.Close()
	if !strings.Contains(string(rest), "message_stop") {
		t.Fatalf("the stream served without Redis broke:\n%s", rest)
	}
	s.fake.SetScript(nil)
	if status, e := s.post(t, broke, smallBody); status != 402 || e.Error.Type != "tollgate_insufficient_balance" {
		t.Fatalf("an empty wallet without Redis: %d %+v", status, e)
	}

	// Billed exactly once, in PostgreSQL (no worker has run), for what fakellm served.
	const answers = plain + 2
	served := s.waitServed(t, seq, answers)
	if len(served) != answers {
		t.Fatalf("fakellm served %d answers, want %d", len(served), answers)
	}
	var want int64
	for _, e := range served {
		if e.Status != 200 || !e.Complete {
			t.Fatalf("fakellm entry %+v, want a complete answer", e)
		}
		want += s.expectedBilledFor(e.Provider, e.Model, e.Usage)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if rows, _ := s.usageTotals(t); rows == rowsBefore+answers {
			break
		}
		if time.Now().After(deadline) {
			rows, _ := s.usageTotals(t)
			t.Fatalf("%d usage rows during the outage, want %d", rows-rowsBefore, answers)
		}
	}
	if _, billed := s.usageTotals(t); billed-billedBefore != want {
		t.Fatalf("billed %d nano during the outage; fakellm served %d worth", billed-billedBefore, want)
	}
	if moved := before - s.balance(s.seeded.DemoUserID); moved != want {
		t.Fatalf("wallet moved by %d nano, the answers were worth %d", moved, want)
	}
	if n := s.metric(t, "tollgate_admissions_without_redis_total"); n != answers {
		t.Fatalf("%v admissions without Redis, want %d", n, answers)
	}

	// A proxy process started with the option while Redis is down is ready and serves.
	addr := freeAddr(t)
	late := exited(s.startProcess(t, "proxy", "PROXY_ADDR="+addr, "PROXY_SPOOL_DIR="+t.TempDir(), "REDIS_OUTAGE=serve"))
	waitUp(t, "http://"+addr+"/readyz", "proxy started during the outage with REDIS_OUTAGE=serve")
	if resp, b := rawPost(t, "http://"+addr, s.seeded.DemoKey, smallBody, nil); resp.StatusCode != 200 {
		t.Fatalf("the proxy started during the outage: %d %s", resp.StatusCode, b)
	}
	stillRunning(t, map[string]<-chan error{"proxy": late})

	rs.Start()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		admitted := s.metric(t, "tollgate_admissions_without_redis_total")
		if status, _ := s.post(t, s.seeded.DemoKey, smallBody); status != 200 {
			t.Fatalf("after Redis returned: %d", status)
		}
		if s.metric(t, "tollgate_admissions_without_redis_total") == admitted {
			break // admitted through Redis
		}
		if time.Now().After(deadline) {
			t.Fatal("still admitting without Redis 15 s after it returned")
		}
	}
	s.checkSnapshotHonest(t, s.seeded.DemoUserID)
}

// userWithEmptyWallet adds a user with no money and a key, and returns the key.
func (s *stack) userWithEmptyWallet(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	q := sqlc.New()
	u, err := q.UserInsert(ctx, s.pool, sqlc.UserInsertParams{Email: "broke@example.com", PasswordHash: "x", Role: "user", GroupID: s.groupID(t)})
	if err != nil {
		t.Fatal(err)
	}
	key := apikey.Generate()
	if _, err := q.APIKeyInsert(ctx, s.pool, sqlc.APIKeyInsertParams{UserID: u.ID, Name: "broke", DisplayPrefix: key.DisplayPrefix, Hash: key.Hash}); err != nil {
		t.Fatal(err)
	}
	return key.Plaintext
}

// TestServingThroughHungRedis: with REDIS_OUTAGE=serve and Redis hung (frozen), the
// first request pays the read timeout and is admitted without Redis; the following ones
// do not touch Redis at all (a background probe looks for it), so none of them waits for
// a timeout; once Redis answers, admission goes back to it, and what was served is
// billed.
func TestServingThroughHungRedis(t *testing.T) {
	rs := testenv.DurableRedisServer(t)
	s := newStack(t, func(su *setup) {
		su.redis = rs
		su.limits = limit.Options{RedisOutage: limit.OutageServe}
	})
	if status, _ := s.post(t, s.seeded.DemoKey, smallBody); status != 200 {
		t.Fatalf("before Redis hung: %d", status)
	}
	rs.Freeze()
	start := time.Now()
	if status, e := s.post(t, s.seeded.DemoKey, smallBody); status != 200 {
		t.Fatalf("first request with Redis hung: %d %+v", status, e)
	}
	t.Logf("first request with Redis hung: %s", time.Since(start).Round(time.Millisecond))
	served, slowest := 1, time.Duration(0)
	for start := time.Now(); time.Since(start) < 4*time.Second; served++ {
		t0 := time.Now()
		if status, e := s.post(t, s.seeded.DemoKey, smallBody); status != 200 {
			t.Fatalf("request with Redis hung: %d %+v", status, e)
		}
		slowest = max(slowest, time.Since(t0))
	}
	t.Logf("then %d requests in 4 s, the slowest %s", served-1, slowest.Round(time.Millisecond))
	// A request that tried Redis would wait for its read timeout (2 s).
	if slowest > 1500*time.Millisecond {
		t.Fatalf("a request with Redis hung took %s: it waited for Redis", slowest)
	}
	rs.Thaw()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		admitted := s.metric(t, "tollgate_admissions_without_redis_total")
		if status, _ := s.post(t, s.seeded.DemoKey, smallBody); status != 200 {
			t.Fatalf("after Redis answered again: %d", status)
		}
		served++
		if s.metric(t, "tollgate_admissions_without_redis_total") == admitted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still admitting without Redis 15 s after it answered again")
		}
	}
	s.ingest(served + 1)
	s.checkSnapshotHonest(t, s.seeded.DemoUserID)
}
