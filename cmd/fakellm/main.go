// Command fakellm runs the fake upstream of internal/fakellm (Anthropic, OpenAI Chat
// Completions and Responses, Gemini, and an OAuth token endpoint) on its own, for
// development (make dev points the demo upstream account at it) and benchmarks.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/internal/fakellm"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakellm:", err)
		os.Exit(1)
	}
}

// config is everything fakellm reads from its flags and environment.
type config struct {
	addr          string
	apiKeys       []string
	refreshTokens []string
	logLevel      slog.Level
}

// loadConfig reads -addr (or FAKELLM_ADDR), FAKELLM_API_KEYS and
// FAKELLM_REFRESH_TOKENS (comma separated; the refresh tokens the token endpoint
// accepts at start, each once) and FAKELLM_LOG_LEVEL (debug logs every served request).
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	cfg := config{addr: "127.0.0.1:8090"}
	if v := getenv("FAKELLM_ADDR"); v != "" {
		cfg.addr = v
	}
	fs := flag.NewFlagSet("fakellm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.addr, "addr", cfg.addr, "listen address (default from FAKELLM_ADDR)")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if _, _, err := net.SplitHostPort(cfg.addr); err != nil {
		return config{}, fmt.Errorf("-addr or FAKELLM_ADDR %q is not host:port: %w", cfg.addr, err)
	}
	cfg.apiKeys = splitList(getenv("FAKELLM_API_KEYS"))
	cfg.refreshTokens = splitList(getenv("FAKELLM_REFRESH_TOKENS"))
	if v := getenv("FAKELLM_LOG_LEVEL"); v != "" {
		if err := cfg.logLevel.UnmarshalText([]byte(v)); err != nil {
			return config{}, fmt.Errorf("FAKELLM_LOG_LEVEL %q is not debug, info, warn or error", v)
		}
	}
	return cfg, nil
}

// splitList splits a comma-separated list, dropping blanks.
func splitList(s string) []string {
	var out []string
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// run serves until ctx is done, then shuts down gracefully.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := loadConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.logLevel}))

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.addr, err)
	}
	fake := fakellm.New(fakellm.Options{APIKeys: cfg.apiKeys, Logger: logger})
	for _, tok := range cfg.refreshTokens {
		fake.SetRefreshToken(tok)
	}
	srv := &http.Server{
		Handler:           fake,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		// No WriteTimeout: scripted streams may be slow on purpose.
	}
	logger.Info("fakellm listening", "addr", ln.Addr().String(), "api_keys", len(cfg.apiKeys), "refresh_tokens", len(cfg.refreshTokens))

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close() // streams still open after the timeout are cut
		return fmt.Errorf("shut down: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	logger.Info("fakellm stopped")
	return nil
}
