package relay

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
)

func TestSessionOf(t *testing.T) {
	sess := func(key int64, hdr map[string]string, body string) string {
		r, _ := http.NewRequest(http.MethodPost, "/", nil)
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		req, err := sniff([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return sessionOf(key, r, &req)
	}
	ccMeta := `{"model":"m","metadata":{"user_id":"{\"device_id\":\"d\",\"session_id\":\"S1\"}"},"messages":[{"role":"user","content":"a"}]}`
	ccMeta2 := `{"model":"m","metadata":{"user_id":"{\"device_id\":\"d\",\"session_id\":\"S1\"}"},"messages":[{"role":"user","content":"other turn"}]}`
	if a, b := sess(1, nil, ccMeta), sess(1, nil, ccMeta2); a == "" || a != b {
		t.Fatalf("one Claude Code session, two turns: %q %q", a, b)
	}
	if a, b := sess(1, nil, ccMeta), sess(2, nil, ccMeta); a == b {
		t.Fatal("sessions are not namespaced by key")
	}
	head := `{"model":"m","system":"be brief","messages":[{"role":"user","content":"first"},{"role":"assistant","content":"x"}]}`
	head2 := `{"model":"m","system":"be brief","messages":[{"role":"user","content":"first"},{"role":"assistant","content":"y"},{"role":"user","content":"more"}]}`
	if a, b := sess(1, nil, head), sess(1, nil, head2); a == "" || a != b {
		t.Fatalf("the same conversation head: %q %q", a, b)
	}
	if a, b := sess(1, map[string]string{"X-Claude-Code-Session-Id": "h"}, head), sess(1, nil, head); a == b {
		t.Fatal("the session header is not preferred")
	}
	cache := `{"model":"gpt","prompt_cache_key":"k1","input":"x"}`
	if a, b := sess(1, nil, cache), sess(1, nil, `{"model":"gpt","prompt_cache_key":"k1","input":"y"}`); a == "" || a != b {
		t.Fatalf("prompt_cache_key: %q %q", a, b)
	}
	if s := sess(1, nil, `{"model":"m"}`); s != "" {
		t.Fatalf("no hint gave session %q", s)
	}
}

func TestLocalExhaustionIsNotTheAccountsFault(t *testing.T) {
	emfile := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", syscall.EMFILE)}
	if !localExhaustion(fmt.Errorf("round trip: %w", emfile)) {
		t.Fatal("EMFILE not recognised")
	}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	if localExhaustion(refused) {
		t.Fatal("a refused connection blamed on the proxy")
	}
}
