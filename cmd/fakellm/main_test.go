package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    config
		wantErr string
	}{
		{name: "defaults", want: config{addr: "127.0.0.1:8090"}},
		{
			name: "env",
			env: map[string]string{"FAKELLM_ADDR": ":9000", "FAKELLM_API_KEYS": " sk-a, ,sk-b ", "FAKELLM_LOG_LEVEL": "debug",
				"FAKELLM_REFRESH_TOKENS": "rt-1,rt-2"},
			want: config{addr: ":9000", apiKeys: []string{"sk-a", "sk-b"}, refreshTokens: []string{"rt-1", "rt-2"}, logLevel: slog.LevelDebug},
		},
		{name: "flag wins", args: []string{"-addr", "0.0.0.0:1"}, env: map[string]string{"FAKELLM_ADDR": ":9000"}, want: config{addr: "0.0.0.0:1"}},
		{name: "bad addr", env: map[string]string{"FAKELLM_ADDR": "nope"}, wantErr: "FAKELLM_ADDR"},
		{name: "bad level", env: map[string]string{"FAKELLM_LOG_LEVEL": "loud"}, wantErr: "FAKELLM_LOG_LEVEL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := loadConfig(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.addr != tt.want.addr || !slices.Equal(got.apiKeys, tt.want.apiKeys) ||
				!slices.Equal(got.refreshTokens, tt.want.refreshTokens) || got.logLevel != tt.want.logLevel {
				t.Errorf("config = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	var logs bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-addr", "127.0.0.1:0"}, func(string) string { return "" }, &logs) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not stop")
	}
	if !strings.Contains(logs.String(), "fakellm listening") {
		t.Errorf("logs = %s", logs.String())
	}
}
