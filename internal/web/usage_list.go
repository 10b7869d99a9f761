package web

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/views"
)

// usagePageSize is how many usage rows one page or "load more" brings.
const usagePageSize = 50

// usageList shows usage newest first. ?before=<cursor> continues after a row; htmx
// requests get just the next rows to append.
func (s *Server) usageList(w http.ResponseWriter, r *http.Request) {
	ctx, user := r.Context(), currentUser(r)
	var rows []sqlc.UsageEventListByUserRow
	var err error
	if at, id, ok := parseUsageCursor(r.URL.Query().Get("before")); ok {
		var page []sqlc.UsageEventListByUserBeforeRow
		page, err = s.q.UsageEventListByUserBefore(ctx, s.db, sqlc.UsageEventListByUserBeforeParams{
			UserID: user.ID, BeforeTime: at, BeforeID: id, MaxRows: usagePageSize + 1,
		})
		for _, p := range page {
			rows = append(rows, sqlc.UsageEventListByUserRow(p))
		}
	} else {
		rows, err = s.q.UsageEventListByUser(ctx, s.db, sqlc.UsageEventListByUserParams{UserID: user.ID, MaxRows: usagePageSize + 1})
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}

	d := views.Usage{}
	if len(rows) > usagePageSize {
		rows = rows[:usagePageSize]
		last := rows[len(rows)-1]
		d.MoreURL = "/usage?before=" + usageCursor(last.CreatedAt, last.ID)
	}
	d.Rows = usageRows(rows)
	if isHTMX(r) {
		s.render(w, r, http.StatusOK, views.UsageMore(d))
		return
	}
	s.page(w, r, http.StatusOK, "Usage", "usage", views.UsageContent(d))
}

// usageCursor names a row's place in the newest-first order: "<unix µs>-<id>".
// PostgreSQL keeps microseconds, so the round trip is exact.
func usageCursor(at time.Time, id int64) string {
	return strconv.FormatInt(at.UnixMicro(), 10) + "-" + strconv.FormatInt(id, 10)
}

func parseUsageCursor(s string) (time.Time, int64, bool) {
	us, id, ok := strings.Cut(s, "-")
	if !ok {
		return time.Time{}, 0, false
	}
	micros, err1 := strconv.ParseInt(us, 10, 64)
	rowID, err2 := strconv.ParseInt(id, 10, 64)
	if err1 != nil || err2 != nil {
		return time.Time{}, 0, false
	}
	return time.UnixMicro(micros), rowID, true
}
