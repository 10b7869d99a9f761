package views

import "time"

// View data of the wallet and the billing parts of the admin console.

// Wallet is the user's wallet page.
type Wallet struct {
	BalanceNano int64
	Ledger      []LedgerRow
	Redeem      RedeemForm
}

// RedeemForm is the "redeem a code" form.
type RedeemForm struct {
	Code    string // what was typed, kept after an error
	Error   string
	Success string // set right after a redemption (htmx answers; plain posts redirect)
}

// FXStatus is the latest USD/CNY rate as the console shows it.
type FXStatus struct {
	Known     bool
	RateMicro int64 // yuan per dollar × 1e6
	FetchedAt time.Time
	Stale     bool
	Now       time.Time
}

// LedgerCheck is the last ledger consistency check.
type LedgerCheck struct {
	Ran        bool
	CheckedAt  time.Time
	Mismatches []LedgerMismatch
}

// LedgerMismatch is a user whose cached balance differs from their ledger.
type LedgerMismatch struct {
	UserID      int64
	Email       string
	BalanceNano int64
	LedgerNano  int64
}

// PriceRow is one price row (a rule's current row in the catalogue, or a row of its history).
type PriceRow struct {
	ID            int64
	Provider      string
	Pattern       string
	Match         string // exact|prefix
	EffectiveFrom time.Time
	InForce       bool // the row in force now (history view)
	Input         int64
	Output        int64
	CacheWrite5m  int64
	CacheWrite1h  int64
	CacheRead     int64
	TierThreshold *int64
	Note          string
	Versions      int64
}

// AdminPrices is the price catalogue page.
type AdminPrices struct {
	Query string
	Rows  []PriceRow
	Total int // rules before filtering
}

// PriceForm is the form that adds a price rule or a new price for one. Amounts are
// dollars per million tokens, as typed.
type PriceForm struct {
	ID                                                            int64 // the row edited; 0 for a new rule
	Provider, Match, Pattern                                      string
	Input, Output, CacheWrite5m, CacheWrite1h, CacheRead          string
	TierThreshold                                                 string
	InputAbove, OutputAbove, CacheWrite5mAbove, CacheWrite1hAbove string
	CacheReadAbove                                                string
	Note                                                          string
	Errors                                                        map[string]string // by field name
}

// AdminPrice is one rule's page: its history and the form for a new price.
type AdminPrice struct {
	Rule    PriceRow
	History []PriceRow
	Form    PriceForm
}

// GroupFactor is a group's price factor for one provider.
type GroupFactor struct {
	Provider   string
	Multiplier string // decimal, e.g. "1.5"
	Peg        string // ¥ per official $1, e.g. "2.00"; empty: no peg
	Effective  string // the factor now, e.g. "0.2778", or why there is none
	Example    string // what an official $1.00 bills now
}

// GroupRow is one group in the list.
type GroupRow struct {
	ID                 int64
	Name               string
	Description        string
	IsDefault          bool
	DefaultConcurrency int32
	Users              int64
	Pools              []string
	Factors            []GroupFactor
}

// AdminGroups is the groups page.
type AdminGroups struct {
	Groups  []GroupRow
	FX      FXStatus
	NewName string
	Error   string
}

// PoolChoice is a pool a group may be given.
type PoolChoice struct {
	ID       int64
	Name     string
	Attached bool
}

// GroupForm is the group edit form, as typed.
type GroupForm struct {
	ID                 int64
	Name               string
	IsDefault          bool
	Description        string
	DefaultConcurrency string
	Factors            []GroupFactor
	Pools              []PoolChoice
	Errors             map[string]string
}

// AdminGroup is one group's edit page.
type AdminGroup struct {
	Form  GroupForm
	FX    FXStatus
	Users int64
}

// RedeemBatchRow is one batch of redeem codes.
type RedeemBatchRow struct {
	Batch       string
	Codes       int64
	ValueNano   int64
	UsesPerCode int64
	Used        int64
	MaxUses     int64
	ExpiresAt   *time.Time
	CreatedAt   time.Time
	Disabled    int64 // codes disabled
	Now         time.Time
}

// RedeemBatchForm is the form that generates a batch, as typed.
type RedeemBatchForm struct {
	Batch   string
	Value   string
	Count   string
	Uses    string
	Expires string // YYYY-MM-DD (UTC), empty: never
	Error   string
}

// GeneratedCodes are a batch's codes, shown once.
type GeneratedCodes struct {
	Batch     string
	ValueNano int64
	Uses      int
	Codes     []string
}

// AdminRedeem is the redeem codes page.
type AdminRedeem struct {
	Batches   []RedeemBatchRow
	Form      RedeemBatchForm
	Generated *GeneratedCodes // set only in the answer that generated them
}

// UserRow is a user in the console's list.
type UserRow struct {
	ID          int64
	Email       string
	Role        string
	Status      string
	Group       string
	BalanceNano int64
	CreatedAt   time.Time
}

// AdminUsers is the users page.
type AdminUsers struct {
	Query string
	Users []UserRow
	More  bool // the list was cut at its limit
}

// AdjustForm is the balance adjustment form, as typed. Nonce makes a resubmitted form
// apply once: it becomes the ledger entry's reference.
type AdjustForm struct {
	Amount string
	Note   string
	Nonce  string
	Errors map[string]string
}

// AdminUser is one user's page in the console.
type AdminUser struct {
	User   UserRow
	Ledger []LedgerRow
	Adjust AdjustForm
}
