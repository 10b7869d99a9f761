// Package views renders Tollgate's web pages with templ. Components take the view data
// defined here, filled in by internal/web; they never reach the database.
package views

import "time"

// Layout is what every full page shows around its content.
type Layout struct {
	Title   string
	Nav     string       // the nav item to mark current: "dashboard", "keys", "usage", "wallet", "admin"
	User    *CurrentUser // nil when signed out
	Flashes []Flash
}

// CurrentUser is the signed-in user as the navigation shows them.
type CurrentUser struct {
	Email   string
	IsAdmin bool
}

// Flash is a one-time message carried across a redirect.
type Flash struct {
	Kind    string // "success" or "error"
	Message string
}

// Login is the sign-in form.
type Login struct {
	Email string
	Error string
}

// Dashboard is the signed-in user's home.
type Dashboard struct {
	BalanceNano     int64
	ProxyURL        string
	TodayRequests   int64
	TodayBilledNano int64
	ActiveKeys      int
	Usage           []UsageRow
	Ledger          []LedgerRow
}

// UsageRow is one metered upstream attempt.
type UsageRow struct {
	Time             time.Time
	KeyName          string
	Model            string
	InputTokens      int64
	OutputTokens     int64
	CacheWriteTokens int64
	CacheReadTokens  int64
	BilledNano       int64
	Status           int32
}

// LedgerRow is one wallet ledger entry.
type LedgerRow struct {
	Time       time.Time
	Kind       string
	AmountNano int64
	Ref        string
	Note       string
}

// Keys is the API keys page.
type Keys struct {
	Keys     []KeyRow
	Created  *CreatedKey // set once, in the response that created the key
	Form     KeyForm
	ProxyURL string
}

// KeyForm is the new-key form with what the user typed and what was wrong with it.
type KeyForm struct {
	Name  string
	Error string
}

// KeyRow is one API key as listed.
type KeyRow struct {
	ID            int64
	Name          string
	DisplayPrefix string
	Status        string
	CreatedAt     time.Time
	LastUsedAt    *time.Time
}

// CreatedKey is a key just created, with the secret its owner sees this one time.
type CreatedKey struct {
	Key       KeyRow
	Plaintext string
}

// Usage is the usage history page.
type Usage struct {
	Rows    []UsageRow
	MoreURL string // the next page; empty at the end
}

// AdminHome is the admin console's landing page.
type AdminHome struct {
	Users       int64
	ActiveKeys  int64
	Groups      int64
	PriceRules  int64
	LedgerCheck LedgerCheck
	FX          FXStatus
}

// Error is a friendly error page.
type Error struct {
	Status    int
	Title     string
	Message   string
	RequestID string
}
