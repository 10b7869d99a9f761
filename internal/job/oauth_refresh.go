package job

import (
	"context"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/tollgate/tollgate/internal/account"
)

// OAuthRefreshArgs refreshes the OAuth accounts' access tokens that expire within
// OAUTH_REFRESH_AHEAD, so that requests do not meet an expired token and pay a refresh
// (a 401, the token endpoint, a retry) on their path. The proxy still refreshes on a 401
// (a token revoked early); both go through the same cluster-wide lock.
type OAuthRefreshArgs struct{}

// Kind is the job kind and the periodic job's ID.
func (OAuthRefreshArgs) Kind() string { return "oauth_refresh" }

// InsertOpts: one attempt. The next run, a minute later, retries whatever is still due,
// and a retry of the whole job would ask again for tokens that just failed.
func (OAuthRefreshArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueDefault, MaxAttempts: 1}
}

// OAuthRefreshWorker runs OAuthRefreshArgs.
type OAuthRefreshWorker struct {
	river.WorkerDefaults[OAuthRefreshArgs]
	refresher *account.Refresher
	ahead     time.Duration
	log       *slog.Logger
}

// NewOAuthRefreshWorker returns the worker of OAuthRefreshArgs; tokens expiring within
// ahead are refreshed.
func NewOAuthRefreshWorker(refresher *account.Refresher, ahead time.Duration, log *slog.Logger) *OAuthRefreshWorker {
	return &OAuthRefreshWorker{refresher: refresher, ahead: ahead, log: log}
}

// Work refreshes every token due; failures are logged (each names its account) and
// returned, so River records them on the job.
func (w *OAuthRefreshWorker) Work(ctx context.Context, _ *river.Job[OAuthRefreshArgs]) error {
	if w.refresher == nil {
		return nil // a client built without OAuth configuration (tests of other jobs)
	}
	n, err := w.refresher.RefreshDue(ctx, time.Now().Add(w.ahead))
	if n > 0 {
		w.log.Info("OAuth access tokens refreshed ahead of expiry", "accounts", n)
	}
	if err != nil {
		w.log.Error("OAuth refresh ahead of expiry failed; the proxy refreshes on the first 401", "err", err)
	}
	return err
}
