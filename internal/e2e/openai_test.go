package e2e

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/tollgate/tollgate/internal/account"
	"github.com/tollgate/tollgate/internal/fakellm"
)

const gptModel = "gpt-5"

func (s *stack) openai() openai.Client {
	return openai.NewClient(option.WithBaseURL(s.proxyURL+"/v1"), option.WithAPIKey(s.seeded.DemoKey), option.WithMaxRetries(0))
}

// lastServed returns fakellm's newest entry of an endpoint.
func (s *stack) lastServed(endpoint string) fakellm.Served {
	s.t.Helper()
	served := s.fake.Served()
	for i := len(served) - 1; i >= 0; i-- {
		if served[i].Endpoint == endpoint {
			return served[i]
		}
	}
	s.t.Fatalf("fakellm served no %s request", endpoint)
	return fakellm.Served{}
}

// checkLastEvent compares the newest usage event with what fakellm generated (what the
// provider bills) and its independently computed cost.
func (s *stack) checkLastEvent(provider, model string, served fakellm.Served) {
	s.t.Helper()
	row := s.lastUsage()
	u := served.Generated
	if row.Input != u.InputTokens || row.Output != u.OutputTokens || row.Read != u.CacheRead {
		s.t.Fatalf("usage row %+v, fakellm generated %+v", row, u)
	}
	if want := s.expectedBilledFor(provider, model, u); row.Billed != want || want == 0 {
		s.t.Fatalf("billed %d, want %d", row.Billed, want)
	}
}

func TestOpenAIChatAndResponses(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	client := s.openai()
	events := 0
	msgs := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello to the OpenAI side")}

	t.Run("chat", func(t *testing.T) {
		res, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: gptModel, Messages: msgs})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(res.Choices[0].Message.Content, "Hello from fakellm") || res.Usage.PromptTokens == 0 {
			t.Fatalf("response %+v", res)
		}
		events++
		s.ingest(events)
		s.checkLastEvent("openai", gptModel, s.lastServed(fakellm.EndpointChat))
	})

	t.Run("chat stream without include_usage", func(t *testing.T) {
		stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: gptModel, Messages: msgs})
		acc := openai.ChatCompletionAccumulator{}
		sawUsage := false
		for stream.Next() {
			chunk := stream.Current()
			acc.AddChunk(chunk)
			if chunk.JSON.Usage.Valid() || len(chunk.Choices) == 0 {
				sawUsage = true
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if sawUsage {
			t.Fatal("the client saw a usage chunk it did not ask for")
		}
		if !strings.Contains(acc.Choices[0].Message.Content, "Hello from fakellm") {
			t.Fatalf("text %q", acc.Choices[0].Message.Content)
		}
		served := s.lastServed(fakellm.EndpointChat)
		if served.Usage.InputTokens == 0 {
			t.Fatal("Tollgate did not ask the upstream for usage")
		}
		events++
		s.ingest(events)
		s.checkLastEvent("openai", gptModel, served)

		// On the wire: no usage chunk, no "usage":null.
		body := `{"model":"` + gptModel + `","stream":true,"messages":[{"role":"user","content":"hi there"}]}`
		raw := s.rawOpenAI(t, "/v1/chat/completions", body)
		if strings.Contains(raw, `"usage"`) || !strings.HasSuffix(strings.TrimSpace(raw), "data: [DONE]") {
			t.Fatalf("stream as the client got it:\n%s", raw)
		}
		events++
	})

	t.Run("chat stream with include_usage and tool calls", func(t *testing.T) {
		s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior { return fakellm.Behavior{ToolUse: true} })
		defer s.fake.SetScript(nil)
		stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
			Model: gptModel, Messages: msgs,
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
			Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
				Name: "get_weather", Parameters: openai.FunctionParameters{"type": "object",
					"properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"}},
			})},
		})
		acc := openai.ChatCompletionAccumulator{}
		for stream.Next() {
			acc.AddChunk(stream.Current())
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if acc.Usage.TotalTokens == 0 {
			t.Fatal("the client asked for usage and did not get it")
		}
		if tc := acc.Choices[0].Message.ToolCalls; len(tc) != 1 || tc[0].Function.Name != "get_weather" || !strings.Contains(tc[0].Function.Arguments, "city") {
			t.Fatalf("tool calls %+v", acc.Choices[0].Message.ToolCalls)
		}
		events++
		s.ingest(events)
		s.checkLastEvent("openai", gptModel, s.lastServed(fakellm.EndpointChat))
	})

	t.Run("responses", func(t *testing.T) {
		res, err := client.Responses.New(ctx, responses.ResponseNewParams{
			Model: gptModel, Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Say hello to Responses")},
		})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(res.OutputText(), "Hello from fakellm") {
			t.Fatalf("output %q", res.OutputText())
		}
		events++
		s.ingest(events)
		s.checkLastEvent("openai", gptModel, s.lastServed(fakellm.EndpointResponses))
	})

	t.Run("responses stream", func(t *testing.T) {
		stream := client.Responses.NewStreaming(ctx, responses.ResponseNewParams{
			Model: gptModel, Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Stream hello to Responses")},
		})
		var text strings.Builder
		var completed bool
		for stream.Next() {
			ev := stream.Current()
			switch ev.Type {
			case "response.output_text.delta":
				text.WriteString(ev.Delta)
			case "response.completed":
				completed = ev.Response.Usage.TotalTokens > 0
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if !completed || !strings.Contains(text.String(), "Hello from fakellm") {
			t.Fatalf("text %q completed %v", text.String(), completed)
		}
		events++
		s.ingest(events)
		s.checkLastEvent("openai", gptModel, s.lastServed(fakellm.EndpointResponses))
	})

	t.Run("websocket upgrade gets 426", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, s.proxyURL+"/v1/responses", nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUpgradeRequired || len(b) != 0 {
			t.Fatalf("status %d body %q", resp.StatusCode, b)
		}
	})

	t.Run("errors in OpenAI's shape", func(t *testing.T) {
		bad := s.openai()
		_, err := bad.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-imaginary-9", Messages: msgs})
		var apiErr *openai.Error
		if !asOpenAIError(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Type != "tollgate_unpriced_model" {
			t.Fatalf("unpriced model: %v", err)
		}
	})
}

func asOpenAIError(err error, target **openai.Error) bool {
	e, ok := err.(*openai.Error)
	if ok {
		*target = e
	}
	return ok
}

func (s *stack) rawOpenAI(t *testing.T, path, body string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.proxyURL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+s.seeded.DemoKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}

// TestChatGPTOAuthAccountUsesTheCodexBackend: a ChatGPT OAuth account serves the
// Responses API through the Codex backend path, with its Bearer token and the ChatGPT
// account id from the token's claims; it never serves Chat Completions.
func TestChatGPTOAuthAccountUsesTheCodexBackend(t *testing.T) {
	claims := base64.RawURLEncoding.EncodeToString([]byte(`{"https://api.openai.com/auth":{"chatgpt_account_id":"acct-1234"}}`))
	token := "eyJhbGciOiJub25lIn0." + claims + ".sig"
	s := newStack(t, func(su *setup) {
		su.accounts = []accountSpec{{name: "chatgpt", provider: "openai", priority: 1, baseURL: "/backend-api/codex",
			oauth: &account.Credential{AccessToken: token, RefreshToken: "rt"}}}
	})
	// Only the OAuth account may serve Responses: take the API-key demo account out.
	s.exec(t, "UPDATE accounts SET state = 'disabled' WHERE name = 'fakellm-openai'")
	s.publish("accounts:")
	// Chat Completions cannot use a ChatGPT token: once the proxy has dropped the demo
	// account, it finds no account for it.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		req, _ := http.NewRequest(http.MethodPost, s.proxyURL+"/v1/chat/completions", strings.NewReader(`{"model":"`+gptModel+`","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer "+s.seeded.DemoKey)
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("chat through a ChatGPT-only pool: %d", resp.StatusCode)
		}
	}
	seq := s.fake.LastSeq()
	raw := s.rawOpenAI(t, "/v1/responses", `{"model":"`+gptModel+`","input":"hello codex backend"}`)
	if !strings.Contains(raw, "Hello from fakellm") {
		t.Fatalf("response %s", raw)
	}
	served := s.fake.ServedSince(seq)
	if len(served) != 1 || served[0].Path != "/backend-api/codex/responses" ||
		served[0].Header.Get("Authorization") != "Bearer "+token || served[0].Header.Get("Chatgpt-Account-Id") != "acct-1234" {
		t.Fatalf("upstream saw %+v", served)
	}
}
