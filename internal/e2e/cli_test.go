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

// TestCodexCLI runs the real `codex exec` against the proxy (custom model provider,
// wire_api = "responses") with a Tollgate key.
func TestCodexCLI(t *testing.T) {
	bin := cliBin(t, "codex")
	s := newStack(t)
	root := t.TempDir()
	home, codexHome, work := filepath.Join(root, "home"), filepath.Join(root, "codex"), filepath.Join(root, "work")
	for _, d := range []string{home, codexHome, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	config := `model = "gpt-5-codex"
model_provider = "tollgate"
[model_providers.tollgate]
name = "Tollgate"
base_url = "` + s.proxyURL + `/v1"
wire_api = "responses"
env_key = "TOLLGATE_API_KEY"
request_max_retries = 1
stream_max_retries = 1
`
	if err := os.WriteFile(filepath.Join(codexHome, "config.toml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	seq := s.fake.LastSeq()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "exec", "--json", "--skip-git-repo-check", "say hi to Tollgate")
	cmd.Dir = work
	cmd.Stdin = nil
	cmd.Env = append(os.Environ(), "HOME="+home, "CODEX_HOME="+codexHome, "TOLLGATE_API_KEY="+s.seeded.DemoKey,
		"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "NO_PROXY=127.0.0.1,localhost")
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("codex: %v\nstdout: %s\nstderr: %s", err, out, stderr)
	}
	if !strings.Contains(string(out), "Hello from fakellm") || !strings.Contains(string(out), `"turn.completed"`) {
		t.Fatalf("codex printed:\n%s", out)
	}
	var turns int
	for _, e := range s.fake.ServedSince(seq) {
		if e.Endpoint == "responses" && e.Status == 200 {
			turns++
			if e.Header.Get("Authorization") != "Bearer sk-openai-fakellm-demo" {
				t.Fatalf("upstream Authorization %q", e.Header.Get("Authorization"))
			}
		}
	}
	if turns == 0 {
		t.Fatal("fakellm served no Responses request for codex")
	}
	s.ingest(turns)
	var n int
	s.pool.QueryRow(context.Background(), "SELECT count(*) FROM usage_events WHERE provider = 'openai' AND endpoint = 'responses' AND user_agent LIKE 'codex_exec/%'").Scan(&n)
	if n != turns {
		t.Fatalf("%d usage rows from codex, fakellm served %d turns", n, turns)
	}
	s.checkLastEvent("openai", "gpt-5-codex", s.lastServed("responses"))
}
