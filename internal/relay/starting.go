package relay

import (
	"net/http"
	"strings"
)

// Starting serves a proxy that cannot relay yet: it is waiting for PostgreSQL to load
// its keys, accounts and prices. /healthz answers (the process is alive), /readyz says
// 503 with why (so a load balancer sends traffic elsewhere), and every other request
// gets a 503 in its protocol's error shape with Retry-After, which clients and SDKs
// retry, instead of a connection that hangs until the proxy is up.
func Starting(why string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			w.Write([]byte("ok\n")) //nolint:errcheck
			return
		case "/readyz":
			http.Error(w, "not ready: starting: "+why, http.StatusServiceUnavailable)
			return
		}
		writeError := anthropicError
		switch p := r.URL.Path; {
		case strings.HasPrefix(p, "/v1beta/"):
			writeError = geminiError
		case p == "/v1/chat/completions" || p == "/v1/responses" || p == "/backend-api/codex/responses":
			writeError = openAIError
		}
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, errUnavailable, "Tollgate is starting and cannot serve yet ("+why+"); retry in a few seconds", "")
	})
}
