package web

import (
	"net/http"
	"strings"

	"github.com/tollgate/tollgate/internal/billing"
)

// redeemDownload answers a just-generated batch's codes (posted back by the page that
// shows them) as a text file. Nothing is stored or looked up: the codes exist only in
// the admin's page, and only well-formed codes are echoed.
func (s *Server) redeemDownload(w http.ResponseWriter, r *http.Request) {
	fields := strings.Fields(r.PostFormValue("codes"))
	if len(fields) == 0 || len(fields) > billing.MaxCodesPerBatch {
		s.errorPage(w, r, http.StatusUnprocessableEntity, "Nothing to download", "Generate a batch first; its codes can be downloaded from the page that shows them.")
		return
	}
	var b strings.Builder
	for _, f := range fields {
		code, ok := billing.NormalizeCode(f)
		if !ok {
			s.errorPage(w, r, http.StatusUnprocessableEntity, "Nothing to download", "The codes sent are not redeem codes.")
			return
		}
		b.WriteString(code)
		b.WriteString("\n")
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="`+codesFileName(r.PostFormValue("batch"))+`"`)
	w.Write([]byte(b.String())) //nolint:errcheck // the client went away
}

// codesFileName is a safe file name for a batch's codes.
func codesFileName(batch string) string {
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		case r == ' ':
			return '-'
		}
		return -1
	}, strings.TrimSpace(batch))
	if name == "" || strings.Trim(name, ".") == "" {
		name = "codes"
	}
	if len(name) > 60 {
		name = name[:60]
	}
	return "tollgate-" + name + ".txt"
}
