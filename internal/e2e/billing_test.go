package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/apikey"
	"github.com/tollgate/tollgate/internal/billing"
	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/internal/fakellm"
)

// TestBillingMatchesWhatTheUpstreamServed sends 500 concurrent mixed requests — streams,
// plain calls, streams the client abandons, streams the upstream cuts — and checks that
// the ledger holds exactly the cost of what fakellm served, computed independently.
func TestBillingMatchesWhatTheUpstreamServed(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	// "out=N" in the prompt sets the answer's length, so token counts vary per request.
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior {
		var b fakellm.Behavior
		if i := strings.Index(r.LastUserText, "out="); i >= 0 {
			n, _ := strconv.Atoi(strings.Fields(r.LastUserText[i+4:])[0])
			b.OutputTokens = n
		}
		return b
	})
	startBalance := s.balance(s.seeded.DemoUserID)
	seq := s.fake.LastSeq()

	const total = 500
	kinds := map[string]int{}
	var mu sync.Mutex
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < 40; w++ {
		wg.Go(func() {
			for i := range jobs {
				kind := s.mixedRequest(t, i)
				mu.Lock()
				kinds[kind]++
				mu.Unlock()
			}
		})
	}
	for i := 0; i < total; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	t.Logf("request mix: %v", kinds)

	// Abandoned streams are logged by fakellm when the proxy finishes reading them.
	var served []fakellm.Served
	deadline := time.Now().Add(20 * time.Second)
	for {
		served = s.fake.ServedSince(seq)
		if len(served) >= total || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(served) != total {
		t.Fatalf("fakellm served %d requests, want %d", len(served), total)
	}
	var want, wantIn, wantOut int64
	billable := 0
	for _, e := range served {
		u := e.Usage
		if u.InputTokens+u.OutputTokens+u.CacheCreation5m+u.CacheCreation1h+u.CacheRead == 0 {
			continue
		}
		billable++
		want += s.expectedBilled(u)
		wantIn += u.InputTokens
		wantOut += u.OutputTokens
	}
	s.ingest(billable)

	var n, distinct int
	var billed, in, out int64
	var unlinked int
	err := s.pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT request_id), sum(billed_cost_nano), sum(input_tokens),
		sum(output_tokens), count(*) FILTER (WHERE wallet_tx_id IS NULL) FROM usage_events`).Scan(&n, &distinct, &billed, &in, &out, &unlinked)
	if err != nil {
		t.Fatal(err)
	}
	if n != billable || distinct != n || unlinked != 0 {
		t.Fatalf("%d usage events (%d distinct, %d without a debit), want %d", n, distinct, unlinked, billable)
	}
	if in != wantIn || out != wantOut {
		t.Fatalf("tokens in %d out %d, fakellm served in %d out %d", in, out, wantIn, wantOut)
	}
	if billed != want {
		t.Fatalf("usage events bill %d nano-USD, what fakellm served costs %d", billed, want)
	}
	if got := s.balance(s.seeded.DemoUserID); got != startBalance-want {
		t.Fatalf("balance %d, want %d - %d", got, startBalance, want)
	}
	var debits int64
	s.pool.QueryRow(ctx, "SELECT -sum(amount_nano) FROM wallet_tx WHERE kind = 'usage'").Scan(&debits)
	if debits != want {
		t.Fatalf("usage debits in the ledger %d, want %d", debits, want)
	}
}

// mixedRequest sends request i of the mix and returns its kind.
func (s *stack) mixedRequest(t *testing.T, i int) string {
	rng := rand.New(rand.NewPCG(uint64(i), 7))
	words := strings.Repeat("lorem ipsum ", 1+rng.IntN(200))
	out := 1 + rng.IntN(120)
	kind := [...]string{"stream", "stream", "stream", "plain", "plain", "abandoned", "cut"}[rng.IntN(7)]
	prompt := fmt.Sprintf("%s out=%d", words, out)
	if kind == "cut" {
		prompt += fmt.Sprintf(" FAKE_CUT_%d", 1+rng.IntN(8))
	}
	stream := kind != "plain"
	body := fmt.Sprintf(`{"model":%q,"max_tokens":1024,"stream":%v,"messages":[{"role":"user","content":%q}]}`, model, stream, prompt)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.proxyURL+"/v1/messages", strings.NewReader(body))
	req.Header.Set("X-Api-Key", s.seeded.DemoKey)
	req.Header.Set("Anthropic-Version", "2023-06-01")
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Errorf("request %d: %v", i, err)
		return kind
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Errorf("request %d: %d %s", i, resp.StatusCode, b)
		return kind
	}
	if kind == "abandoned" {
		// Read into the answer, then hang up.
		br := bufio.NewReader(resp.Body)
		for range 3 + rng.IntN(10) {
			if _, err := br.ReadString('\n'); err != nil {
				break
			}
		}
		cancel()
		return kind
	}
	io.Copy(io.Discard, resp.Body) //nolint:errcheck // a cut stream ends in an error
	return kind
}

// TestMixedProviderBilling runs Anthropic, OpenAI (chat and Responses) and Gemini
// traffic concurrently, streamed and not, and checks the ledger against fakellm's log.
func TestMixedProviderBilling(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	startBalance := s.balance(s.seeded.DemoUserID)
	seq := s.fake.LastSeq()
	type call struct{ path, body, auth string }
	calls := []call{
		{"/v1/messages", `{"model":"` + model + `","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"anthropic stream %d"}]}`, "x-api-key"},
		{"/v1/messages", `{"model":"` + model + `","max_tokens":64,"messages":[{"role":"user","content":"anthropic plain %d"}]}`, "x-api-key"},
		{"/v1/chat/completions", `{"model":"` + gptModel + `","stream":true,"messages":[{"role":"user","content":"chat stream %d"}]}`, "bearer"},
		{"/v1/chat/completions", `{"model":"` + gptModel + `","messages":[{"role":"user","content":"chat plain %d"}]}`, "bearer"},
		{"/v1/responses", `{"model":"` + gptModel + `","stream":true,"input":"responses stream %d"}`, "bearer"},
		{"/v1/responses", `{"model":"` + gptModel + `","input":"responses plain %d"}`, "bearer"},
		{"/v1beta/models/" + geminiModel + ":streamGenerateContent?alt=sse", `{"contents":[{"role":"user","parts":[{"text":"gemini sse %d"}]}]}`, "goog"},
		{"/v1beta/models/" + geminiModel + ":streamGenerateContent", `{"contents":[{"role":"user","parts":[{"text":"gemini array %d"}]}]}`, "goog"},
		{"/v1beta/models/" + geminiModel + ":generateContent", `{"contents":[{"role":"user","parts":[{"text":"gemini plain %d"}]}]}`, "goog"},
	}
	const total = 270
	var wg sync.WaitGroup
	jobs := make(chan int)
	for w := 0; w < 30; w++ {
		wg.Go(func() {
			for i := range jobs {
				c := calls[i%len(calls)]
				body := fmt.Sprintf(c.body, i) + strings.Repeat(" ", i%7)
				req, _ := http.NewRequest(http.MethodPost, s.proxyURL+c.path, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				switch c.auth {
				case "x-api-key":
					req.Header.Set("X-Api-Key", s.seeded.DemoKey)
					req.Header.Set("Anthropic-Version", "2023-06-01")
				case "bearer":
					req.Header.Set("Authorization", "Bearer "+s.seeded.DemoKey)
				case "goog":
					req.Header.Set("X-Goog-Api-Key", s.seeded.DemoKey)
				}
				resp, err := httpClient.Do(req)
				if err != nil {
					t.Errorf("%s: %v", c.path, err)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("%s: %d %s", c.path, resp.StatusCode, b)
				}
			}
		})
	}
	for i := 0; i < total; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()

	served := s.fake.ServedSince(seq)
	if len(served) != total {
		t.Fatalf("fakellm served %d, want %d", len(served), total)
	}
	var want int64
	byProvider := map[string]int64{}
	for _, e := range served {
		m := map[string]string{"anthropic": model, "openai": gptModel, "gemini": geminiModel}[e.Provider]
		c := s.expectedBilledFor(e.Provider, m, e.Usage)
		want += c
		byProvider[e.Provider] += c
	}
	s.ingest(total)
	rows, err := s.pool.Query(ctx, "SELECT provider, sum(billed_cost_nano) FROM usage_events GROUP BY provider")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for rows.Next() {
		var p string
		var v int64
		rows.Scan(&p, &v)
		got[p] = v
	}
	for p, v := range byProvider {
		if got[p] != v {
			t.Errorf("%s: billed %d, fakellm served %d worth", p, got[p], v)
		}
	}
	if bal := s.balance(s.seeded.DemoUserID); bal != startBalance-want {
		t.Fatalf("balance %d, want %d", bal, startBalance-want)
	}
}

// TestLedgerPerUserUnderLoad: 1,000 concurrent requests over 20 keys of 5 users, random
// token counts, some abandoned by the client: for every user the ledger equals top-ups
// minus the cost of what fakellm served for that user, recomputed independently; every
// usage event has its debit and every debit its events.
func TestLedgerPerUserUnderLoad(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	q := sqlc.New()
	type keyOf struct {
		user  int64
		plain string
	}
	var keys []keyOf
	users := map[int64]int64{} // user → top-up
	for u := 0; u < 5; u++ {
		row, err := q.UserInsert(ctx, s.pool, sqlc.UserInsertParams{Email: fmt.Sprintf("load%d@example.com", u), PasswordHash: "x", Role: "user", GroupID: s.groupID(t)})
		if err != nil {
			t.Fatal(err)
		}
		topup := int64(5+u) * 1_000_000_000
		tx, _ := s.pool.Begin(ctx)
		if _, err := billing.Post(ctx, tx, billing.Entry{UserID: row.ID, Amount: topup, Kind: "topup", Ref: fmt.Sprintf("test:%d", u)}); err != nil {
			t.Fatal(err)
		}
		tx.Commit(ctx)
		users[row.ID] = topup
		for k := 0; k < 4; k++ {
			key := apikey.Generate()
			if _, err := q.APIKeyInsert(ctx, s.pool, sqlc.APIKeyInsertParams{UserID: row.ID, Name: "load", DisplayPrefix: key.DisplayPrefix, Hash: key.Hash}); err != nil {
				t.Fatal(err)
			}
			keys = append(keys, keyOf{row.ID, key.Plaintext})
		}
	}
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior {
		var b fakellm.Behavior
		if i := strings.Index(r.LastUserText, "out="); i >= 0 {
			b.OutputTokens, _ = strconv.Atoi(strings.Fields(r.LastUserText[i+4:])[0])
		}
		return b
	})
	seq := s.fake.LastSeq()
	const total = 1000
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < 40; w++ {
		wg.Go(func() {
			for i := range jobs {
				rng := rand.New(rand.NewPCG(uint64(i), 11))
				k := keys[rng.IntN(len(keys))]
				stream := rng.IntN(3) > 0
				abandon := stream && rng.IntN(8) == 0
				body := fmt.Sprintf(`{"model":%q,"max_tokens":512,"stream":%v,"messages":[{"role":"user","content":"%s out=%d"}]}`,
					model, stream, strings.Repeat("tok ", 1+rng.IntN(300)), 1+rng.IntN(80))
				rctx, cancel := context.WithCancel(ctx)
				req, _ := http.NewRequestWithContext(rctx, http.MethodPost, s.proxyURL+"/v1/messages", strings.NewReader(body))
				req.Header.Set("X-Api-Key", k.plain)
				req.Header.Set("X-Test-User", strconv.FormatInt(k.user, 10)) // forwarded: tells fakellm's log whose request it was
				resp, err := httpClient.Do(req)
				if err != nil {
					t.Error(err)
					cancel()
					continue
				}
				if resp.StatusCode != 200 {
					b, _ := io.ReadAll(resp.Body)
					t.Errorf("status %d %s", resp.StatusCode, b)
				} else if abandon {
					bufio.NewReader(resp.Body).ReadString('\n')
					cancel()
				} else {
					io.Copy(io.Discard, resp.Body)
				}
				resp.Body.Close()
				cancel()
			}
		})
	}
	for i := 0; i < total; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()

	var served []fakellm.Served
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if served = s.fake.ServedSince(seq); len(served) >= total {
			break
		}
	}
	if len(served) != total {
		t.Fatalf("fakellm served %d, want %d", len(served), total)
	}
	spent := map[int64]int64{}
	for _, e := range served {
		u, _ := strconv.ParseInt(e.Header.Get("X-Test-User"), 10, 64)
		spent[u] += s.expectedBilled(e.Usage)
	}
	s.ingest(total)
	for u, topup := range users {
		if got, want := s.balance(u), topup-spent[u]; got != want {
			t.Errorf("user %d: balance %d, want %d − %d = %d", u, got, topup, spent[u], want)
		}
	}
	// Events and debits match one to one: each usage ledger row equals the sum of the
	// events linked to it, and no event is unlinked.
	var orphans, mismatched int
	s.pool.QueryRow(ctx, "SELECT count(*) FROM usage_events WHERE wallet_tx_id IS NULL").Scan(&orphans)
	s.pool.QueryRow(ctx, `SELECT count(*) FROM wallet_tx w WHERE kind = 'usage' AND -amount_nano <>
		(SELECT coalesce(sum(billed_cost_nano), 0) FROM usage_events e WHERE e.wallet_tx_id = w.id)`).Scan(&mismatched)
	if orphans != 0 || mismatched != 0 {
		t.Fatalf("%d events without a debit, %d debits that differ from their events", orphans, mismatched)
	}
}
