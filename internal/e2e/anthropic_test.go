package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"

	"github.com/tollgate/tollgate/internal/fakellm"
)

var httpClient = &http.Client{Timeout: 30 * time.Second}

const model = "claude-sonnet-4-5"

func (s *stack) sdk(key string) anthropic.Client {
	return anthropic.NewClient(option.WithBaseURL(s.proxyURL), option.WithAPIKey(key), option.WithMaxRetries(0))
}

// expectedBilled prices a served request independently of internal/billing: list prices
// read straight from the prices table, summed with math/big, rounded half up once.
func (s *stack) expectedBilled(u fakellm.Usage) int64 {
	return s.expectedBilledFor("anthropic", model, u)
}

func (s *stack) expectedBilledFor(provider, model string, u fakellm.Usage) int64 {
	s.t.Helper()
	var in, out, w5, w1, rd int64
	err := s.pool.QueryRow(context.Background(), `SELECT input_pico, output_pico, cache_write_5m_pico,
		cache_write_1h_pico, cache_read_pico FROM prices WHERE provider = $1 AND pattern = $2 AND match = 'exact'
		ORDER BY effective_from DESC LIMIT 1`, provider, model).Scan(&in, &out, &w5, &w1, &rd)
	if err != nil {
		s.t.Fatal(err)
	}
	pico := new(big.Int)
	for _, p := range [][2]int64{{u.InputTokens, in}, {u.OutputTokens, out}, {u.CacheCreation5m, w5}, {u.CacheCreation1h, w1}, {u.CacheRead, rd}} {
		pico.Add(pico, new(big.Int).Mul(big.NewInt(p[0]), big.NewInt(p[1])))
	}
	nano := new(big.Rat).SetFrac(pico, big.NewInt(1000))
	nano.Add(nano, big.NewRat(1, 2))
	return new(big.Int).Quo(nano.Num(), nano.Denom()).Int64() // floor(x + 1/2)
}

type usageRow struct {
	RequestID                             string
	Input, Output, Write5m, Write1h, Read int64
	Billed                                int64
	Stream                                bool
	WalletTxID                            *int64
}

func (s *stack) lastUsage() usageRow {
	s.t.Helper()
	var r usageRow
	err := s.pool.QueryRow(context.Background(), `SELECT request_id, input_tokens, output_tokens,
		cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens, billed_cost_nano, stream, wallet_tx_id
		FROM usage_events ORDER BY id DESC LIMIT 1`).Scan(&r.RequestID, &r.Input, &r.Output, &r.Write5m,
		&r.Write1h, &r.Read, &r.Billed, &r.Stream, &r.WalletTxID)
	if err != nil {
		s.t.Fatal(err)
	}
	return r
}

// checkBilled asserts that the last usage row matches what fakellm served and that the
// wallet moved by exactly its independently computed cost.
func (s *stack) checkBilled(served fakellm.Served, balanceBefore int64, stream bool) {
	s.t.Helper()
	row := s.lastUsage()
	u := served.Usage
	if row.Input != u.InputTokens || row.Output != u.OutputTokens || row.Write5m != u.CacheCreation5m ||
		row.Write1h != u.CacheCreation1h || row.Read != u.CacheRead || row.Stream != stream {
		s.t.Fatalf("usage row %+v does not match what fakellm served %+v (stream %v)", row, u, stream)
	}
	want := s.expectedBilled(u)
	if want <= 0 || row.Billed != want {
		s.t.Fatalf("billed %d nano-USD, want %d", row.Billed, want)
	}
	if row.WalletTxID == nil {
		s.t.Fatal("usage event is not linked to a ledger entry")
	}
	if got := s.balance(s.seeded.DemoUserID); got != balanceBefore-want {
		s.t.Fatalf("balance %d, want %d - %d = %d", got, balanceBefore, want, balanceBefore-want)
	}
}

func TestAnthropicSDKThroughProxy(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	client := s.sdk(s.seeded.DemoKey)
	prompt := "Say hello to the ledger"
	params := anthropic.MessageNewParams{
		Model:     model,
		MaxTokens: 256,
		System:    []anthropic.TextBlockParam{{Text: "You are terse.", CacheControl: anthropic.NewCacheControlEphemeralParam()}},
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(prompt))},
	}

	t.Run("streaming", func(t *testing.T) {
		before := s.balance(s.seeded.DemoUserID)
		stream := client.Messages.NewStreaming(ctx, params)
		var msg anthropic.Message
		for stream.Next() {
			if err := msg.Accumulate(stream.Current()); err != nil {
				t.Fatal(err)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if got, want := msg.Content[0].Text, "Hello from fakellm. You said: "+prompt; got != want {
			t.Fatalf("text = %q, want %q", got, want)
		}
		served := s.fake.Served()
		last := served[len(served)-1]
		if !last.Complete || last.Usage.CacheCreation5m == 0 {
			t.Fatalf("fakellm served %+v; want a complete answer with cache writes", last)
		}
		if got := last.Header.Get("X-Api-Key"); got != "sk-ant-fakellm-demo" {
			t.Fatalf("upstream saw x-api-key %q, want the account's credential", got)
		}
		s.ingest(1)
		s.checkBilled(last, before, true)
	})

	t.Run("non-streaming", func(t *testing.T) {
		before := s.balance(s.seeded.DemoUserID)
		var raw *http.Response
		msg, err := client.Messages.New(ctx, params, option.WithResponseInto(&raw))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := msg.Content[0].Text, "Hello from fakellm. You said: "+prompt; got != want {
			t.Fatalf("text = %q, want %q", got, want)
		}
		served := s.fake.Served()
		last := served[len(served)-1]
		if msg.Usage.InputTokens != last.Usage.InputTokens || msg.Usage.OutputTokens != last.Usage.OutputTokens {
			t.Fatalf("client saw usage %+v, fakellm served %+v", msg.Usage, last.Usage)
		}
		s.ingest(2)
		s.checkBilled(last, before, false)
		if rid := raw.Header.Get("X-Tollgate-Request-Id"); rid == "" || rid != s.lastUsage().RequestID {
			t.Fatalf("x-tollgate-request-id %q does not name the usage event %q", rid, s.lastUsage().RequestID)
		}
	})
}

// anthropicErrorBody is the provider's error shape, which Tollgate's refusals keep.
type anthropicErrorBody struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
	RequestID string `json:"request_id"`
}

func (s *stack) post(t *testing.T, key, body string) (int, anthropicErrorBody) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.proxyURL+"/v1/messages", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Anthropic-Version", "2023-06-01")
	if key != "" {
		req.Header.Set("X-Api-Key", key)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var e anthropicErrorBody
	if err := json.Unmarshal(raw, &e); err != nil {
		t.Fatalf("status %d, body %q is not JSON", resp.StatusCode, raw)
	}
	return resp.StatusCode, e
}

func TestAnthropicRefusals(t *testing.T) {
	s := newStack(t)
	ok := `{"model":"` + model + `","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}`
	servedBefore := len(s.fake.Served())

	t.Run("wrong key", func(t *testing.T) {
		bad := s.sdk("tg-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
		_, err := bad.Messages.New(context.Background(), anthropic.MessageNewParams{
			Model: model, MaxTokens: 16, Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))},
		})
		var apiErr *anthropic.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized {
			t.Fatalf("err = %v, want a 401 API error", err)
		}
		status, body := s.post(t, "not-a-tollgate-key", ok)
		if status != 401 || body.Type != "error" || body.Error.Type != "tollgate_authentication_error" || !strings.Contains(body.Error.Message, "invalid API key") || body.RequestID == "" {
			t.Fatalf("status %d body %+v", status, body)
		}
		status, body = s.post(t, "", ok)
		if status != 401 || !strings.Contains(body.Error.Message, "missing API key") {
			t.Fatalf("no key: status %d body %+v", status, body)
		}
	})

	t.Run("malformed JSON", func(t *testing.T) {
		status, body := s.post(t, s.seeded.DemoKey, `{"model": "x", "messages": [`)
		if status != 400 || body.Error.Type != "tollgate_invalid_request" || !strings.Contains(body.Error.Message, "not valid JSON") {
			t.Fatalf("status %d body %+v", status, body)
		}
		status, body = s.post(t, s.seeded.DemoKey, `{"messages":[]}`)
		if status != 400 || !strings.Contains(body.Error.Message, "model is required") {
			t.Fatalf("missing model: status %d body %+v", status, body)
		}
	})

	t.Run("unpriced model", func(t *testing.T) {
		status, body := s.post(t, s.seeded.DemoKey, `{"model":"claude-imaginary-9","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}`)
		if status != 400 || body.Error.Type != "tollgate_unpriced_model" {
			t.Fatalf("status %d body %+v", status, body)
		}
	})

	// Refused requests never reach the upstream.
	if got := len(s.fake.Served()); got != servedBefore {
		t.Fatalf("refused requests reached the upstream: %d served", got-servedBefore)
	}

	t.Run("no account available", func(t *testing.T) {
		if _, err := s.pool.Exec(context.Background(), "UPDATE accounts SET state = 'disabled'"); err != nil {
			t.Fatal(err)
		}
		s.publish("accounts:")
		deadline := time.Now().Add(5 * time.Second)
		for {
			status, body := s.post(t, s.seeded.DemoKey, ok)
			if status == 503 && body.Error.Type == "tollgate_no_upstream" && strings.Contains(body.Error.Message, "Tollgate has no upstream account") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("status %d body %+v, want 503 tollgate_no_upstream", status, body)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

func (s *stack) publish(msg string) {
	s.t.Helper()
	if err := s.rdb.Publish(context.Background(), s.prefix+"invalidate", msg).Err(); err != nil {
		s.t.Fatal(err)
	}
}
