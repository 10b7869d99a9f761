package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/apikey"
)

// TestBadInput: malformed requests get clear errors, cost bounded resources and never
// reach an upstream.
func TestBadInput(t *testing.T) {
	s := newStack(t)
	addr := strings.TrimPrefix(s.proxyURL, "http://")
	seq := s.fake.LastSeq()

	t.Run("invalid UTF-8", func(t *testing.T) {
		status, e := s.post(t, s.seeded.DemoKey, "{\"model\":\""+model+"\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}")
		if status != 400 || !strings.Contains(e.Error.Message, "UTF-8") {
			t.Fatalf("%d %+v", status, e)
		}
	})

	t.Run("header injection", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /v1/messages HTTP/1.1\r\nHost: x\r\nX-Api-Key: %s\r\nX-Evil: a\rInjected: b\r\nContent-Length: 2\r\n\r\n{}", s.seeded.DemoKey)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})

	t.Run("slowloris headers", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		conn.Write([]byte("POST /v1/messages HTTP/1.1\r\nHost: x\r\n"))
		// Trickle a header byte at a time; the server must hang up at its header timeout.
		closed := make(chan struct{})
		go func() {
			io.Copy(io.Discard, conn)
			close(closed)
		}()
		for i := 0; ; i++ {
			select {
			case <-closed:
				if took := time.Since(start); took > 3*time.Second {
					t.Fatalf("closed after %s, want about the 1 s header timeout", took)
				}
				return
			case <-time.After(100 * time.Millisecond):
				if _, err := conn.Write([]byte("X")); err != nil {
					return
				}
			}
			if i > 60 {
				t.Fatal("the server kept a trickling connection open")
			}
		}
	})

	t.Run("slow body", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		fmt.Fprintf(conn, "POST /v1/messages HTTP/1.1\r\nHost: x\r\nX-Api-Key: %s\r\nContent-Length: 100000\r\n\r\n{", s.seeded.DemoKey)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, conn) // returns when the server gives up on the body
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("a stalled body held the connection for %s", took)
		}
	})

	t.Run("flood of unknown keys", func(t *testing.T) {
		db0 := s.metric(t, "tollgate_db_acquires_total")
		var wg sync.WaitGroup
		var mu sync.Mutex
		codes := map[int]int{}
		start := time.Now()
		for w := 0; w < 20; w++ {
			wg.Go(func() {
				for i := 0; i < 100; i++ {
					status, e := s.post(t, apikey.Generate().Plaintext, smallBody)
					if e.Type != "error" || status != 401 {
						t.Errorf("status %d body %+v", status, e)
					}
					mu.Lock()
					codes[status]++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		queries := s.metric(t, "tollgate_db_acquires_total") - db0
		// Keys absent from the known set get at most 10 lookups a second (burst 50).
		if limit := 50 + 10*elapsed.Seconds() + 5; queries > limit {
			t.Fatalf("2,000 unknown keys in %s cost %v PostgreSQL queries, want at most %.0f", elapsed, queries, limit)
		}
		t.Logf("2,000 unknown keys in %s: %v queries, statuses %v", elapsed.Round(time.Millisecond), queries, codes)
	})

	if n := len(s.fake.ServedSince(seq)); n != 0 {
		t.Fatalf("bad input reached the upstream %d times", n)
	}
}
