package main

import (
	"bufio"
	"strings"
	"testing"
	"time"
)

func TestReadResponse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		raw       string
		status    int
		body      string
		keepAlive bool
	}{
		{
			name:   "content length",
			raw:    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello",
			status: 200, body: "hello", keepAlive: true,
		},
		{
			name:   "chunked with trailer",
			raw:    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nevent:\r\n3;x=1\r\n\n\n\n\r\n0\r\nX-T: 1\r\n\r\n",
			status: 200, body: "event:\n\n\n", keepAlive: true,
		},
		{
			name:   "connection close",
			raw:    "HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
			status: 429, body: "{}", keepAlive: false,
		},
		{
			name:   "body until EOF",
			raw:    "HTTP/1.0 200 OK\r\n\r\nall of it",
			status: 200, body: "all of it", keepAlive: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got strings.Builder
			status, keepAlive, err := readResponse(bufio.NewReaderSize(strings.NewReader(tt.raw), 64), make([]byte, 4),
				func(p []byte) { got.Write(p) })
			if err != nil {
				t.Fatal(err)
			}
			if status != tt.status || got.String() != tt.body || keepAlive != tt.keepAlive {
				t.Errorf("got %d %q keepAlive=%v, want %d %q keepAlive=%v", status, got.String(), keepAlive, tt.status, tt.body, tt.keepAlive)
			}
		})
	}
}

func TestBatched(t *testing.T) {
	t.Parallel()
	ms := func(v ...float64) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x * float64(time.Millisecond))
		}
		return out
	}
	tests := []struct {
		name string
		gaps []time.Duration
		want int
	}{
		{"flushed", ms(5, 5.2, 4.9, 5), 0},
		{"buffered", ms(0, 0, 0, 0.1, 5, 0), 5},
		{"catching up after a stall", ms(5, 20, 0, 0, 0, 5), 0},
		{"more quick events than the stall explains", ms(5, 11, 0, 0, 0, 0), 3},
	}
	for _, tt := range tests {
		if got := batched(tt.gaps, 5); got != tt.want {
			t.Errorf("%s: batched = %d, want %d", tt.name, got, tt.want)
		}
	}
}
