package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cliBin finds a real client CLI installed from npm by `make clients` (make test runs it).
func cliBin(t *testing.T, name string) string {
	t.Helper()
	dir := os.Getenv("TOLLGATE_CLIENTS_DIR")
	if dir == "" {
		dir = "../../.dev/clients"
	}
	bin, err := filepath.Abs(filepath.Join(dir, "node_modules", ".bin", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s CLI not installed at %s: run `make clients` (make test does)", name, bin)
	}
	return bin
}

// TestClaudeCodeCLI runs the real `claude -p` against the proxy with a Tollgate key.
func TestClaudeCodeCLI(t *testing.T) {
	bin := cliBin(t, "claude")
	s := newStack(t)
	home := t.TempDir()
	seq := s.fake.LastSeq()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-p", "say hi to Tollgate", "--output-format", "json")
	cmd.Dir = home
	cmd.Env = append(os.Environ(),
		"HOME="+home, "ANTHROPIC_BASE_URL="+s.proxyURL, "ANTHROPIC_API_KEY="+s.seeded.DemoKey,
		"DISABLE_AUTOUPDATER=1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_TELEMETRY=1",
		"DISABLE_ERROR_REPORTING=1", "CLAUDE_CODE_MAX_RETRIES=1",
		// Anything that tries to leave the machine hits a closed port.
		"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "NO_PROXY=127.0.0.1,localhost",
		"ANTHROPIC_MODEL="+model, "ANTHROPIC_SMALL_FAST_MODEL="+model)
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("claude: %v\nstdout: %s\nstderr: %s", err, out, stderr)
	}
	var res struct {
		IsError bool   `json:"is_error"`
		Result  string `json:"result"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("claude printed %q: %v", out, err)
	}
	if res.IsError || !strings.Contains(res.Result, "Hello from fakellm") {
		t.Fatalf("claude result: %+v", res)
	}
	served := s.fake.ServedSince(seq)
	var messages int
	for _, e := range served {
		if e.Path == "/v1/messages" && e.Status == 200 {
			messages++
			if e.Header.Get("X-Api-Key") != "sk-ant-fakellm-demo" || e.Header.Get("Anthropic-Beta") == "" {
				t.Fatalf("upstream request headers: %v", e.Header)
			}
		}
	}
	if messages == 0 {
		t.Fatal("fakellm served no message for claude")
	}
	s.ingest(messages)
	var n int
	var model string
	s.pool.QueryRow(context.Background(), "SELECT count(*), max(model_requested) FROM usage_events WHERE user_agent LIKE 'claude-cli/%'").Scan(&n, &model)
	if n != messages {
		t.Fatalf("%d usage rows from claude-cli, fakellm served %d messages", n, messages)
	}
}
