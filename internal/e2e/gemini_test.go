package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/fakellm"
)

const geminiModel = "gemini-2.5-flash"

// geminiPost calls the proxy the way Google's SDKs do: x-goog-api-key and the model in
// the path.
func (s *stack) geminiPost(t *testing.T, action, query, body string) (*http.Response, []byte) {
	t.Helper()
	url := s.proxyURL + "/v1beta/models/" + geminiModel + ":" + action
	if query != "" {
		url += "?" + query
	}
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("X-Goog-Api-Key", s.seeded.DemoKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

type geminiResponse struct {
	Candidates []struct {
		Content struct {
			Parts []struct {
				Text string `json:"text"`
			} `json:"parts"`
		} `json:"content"`
	} `json:"candidates"`
	UsageMetadata struct {
		PromptTokenCount     int64 `json:"promptTokenCount"`
		CandidatesTokenCount int64 `json:"candidatesTokenCount"`
	} `json:"usageMetadata"`
}

func (g geminiResponse) text() string {
	var b strings.Builder
	for _, c := range g.Candidates {
		for _, p := range c.Content.Parts {
			b.WriteString(p.Text)
		}
	}
	return b.String()
}

func TestGemini(t *testing.T) {
	s := newStack(t)
	body := `{"contents":[{"role":"user","parts":[{"text":"Say hello to Gemini"}]}]}`
	events := 0

	t.Run("generateContent", func(t *testing.T) {
		resp, b := s.geminiPost(t, "generateContent", "", body)
		var g geminiResponse
		if resp.StatusCode != 200 || json.Unmarshal(b, &g) != nil || !strings.Contains(g.text(), "Hello from fakellm") {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		events++
		s.ingest(events)
		s.checkLastEvent("gemini", geminiModel, s.lastServed(fakellm.EndpointGeminiGenerate))
	})

	t.Run("streamGenerateContent alt=sse", func(t *testing.T) {
		resp, b := s.geminiPost(t, "streamGenerateContent", "alt=sse", body)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, b)
		}
		var text strings.Builder
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var g geminiResponse
				if err := json.Unmarshal([]byte(line), &g); err != nil {
					t.Fatalf("chunk %q: %v", line, err)
				}
				text.WriteString(g.text())
			}
		}
		if !strings.Contains(text.String(), "Hello from fakellm") {
			t.Fatalf("text %q", text.String())
		}
		events++
		s.ingest(events)
		s.checkLastEvent("gemini", geminiModel, s.lastServed(fakellm.EndpointGeminiGenerate))
	})

	t.Run("streamGenerateContent JSON array", func(t *testing.T) {
		resp, b := s.geminiPost(t, "streamGenerateContent", "", body)
		var chunks []geminiResponse
		if resp.StatusCode != 200 || json.Unmarshal(b, &chunks) != nil || len(chunks) < 2 {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		var text strings.Builder
		for _, c := range chunks {
			text.WriteString(c.text())
		}
		if !strings.Contains(text.String(), "Hello from fakellm") {
			t.Fatalf("text %q", text.String())
		}
		events++
		s.ingest(events)
		s.checkLastEvent("gemini", geminiModel, s.lastServed(fakellm.EndpointGeminiGenerate))
	})

	t.Run("countTokens and models", func(t *testing.T) {
		resp, b := s.geminiPost(t, "countTokens", "", body)
		if resp.StatusCode != 200 || !strings.Contains(string(b), "totalTokens") {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		req, _ := http.NewRequest(http.MethodGet, s.proxyURL+"/v1beta/models", nil)
		req.Header.Set("X-Goog-Api-Key", s.seeded.DemoKey)
		mresp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		mb, _ := io.ReadAll(mresp.Body)
		mresp.Body.Close()
		if !strings.Contains(string(mb), `"models/`+geminiModel+`"`) {
			t.Fatalf("models: %s", mb)
		}
		s.consumer.ProcessOnce(context.Background())
		var n int
		s.pool.QueryRow(context.Background(), "SELECT count(*) FROM usage_events").Scan(&n)
		if n != events {
			t.Fatalf("countTokens was billed: %d events", n)
		}
	})

	t.Run("errors in Google's shape", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, s.proxyURL+"/v1beta/models/"+geminiModel+":generateContent", strings.NewReader(body))
		req.Header.Set("X-Goog-Api-Key", "tg-wrong")
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct {
			Error struct {
				Code    int    `json:"code"`
				Status  string `json:"status"`
				Details []struct {
					Reason string `json:"reason"`
				} `json:"details"`
			} `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || resp.StatusCode != 401 || e.Error.Status != "UNAUTHENTICATED" || e.Error.Details[0].Reason != "tollgate_authentication_error" {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
	})
}
