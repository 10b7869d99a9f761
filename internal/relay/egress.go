package relay

import (
	"errors"
	"net/http"
	"net/url"
	"sync"

	"github.com/tollgate/tollgate/internal/schedule"
)

// egressPool keeps one pooled transport per egress proxy URL, so accounts that share a
// proxy share its connections, and connections survive across requests.
type egressPool struct {
	mu sync.Mutex
	m  map[string]http.RoundTripper
}

// transportFor returns the transport for the account: the shared direct transport, or
// the pooled one for its egress proxy (http, https or socks5). An unusable proxy URL
// fails the attempt rather than silently going direct.
func (s *Server) transportFor(acc *schedule.Account) http.RoundTripper {
	if acc.EgressProxy == "" {
		return s.cfg.Transport
	}
	s.egress.mu.Lock()
	defer s.egress.mu.Unlock()
	if t, ok := s.egress.m[acc.EgressProxy]; ok {
		return t
	}
	if s.egress.m == nil {
		s.egress.m = map[string]http.RoundTripper{}
	}
	u, err := url.Parse(acc.EgressProxy)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "socks5" && u.Scheme != "socks5h") {
		return failingTransport{errors.New("egress proxy URL must be http://, https:// or socks5://")}
	}
	tr := NewTransport()
	tr.Proxy = http.ProxyURL(u)
	s.egress.m[acc.EgressProxy] = tr
	return tr
}

type failingTransport struct{ err error }

func (f failingTransport) RoundTrip(*http.Request) (*http.Response, error) { return nil, f.err }
