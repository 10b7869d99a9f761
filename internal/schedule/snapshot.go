// Package schedule chooses the upstream account for a request from an in-process
// snapshot of accounts, pools and groups, refreshed on change and never read from
// PostgreSQL on the hot path.
package schedule

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/internal/account"
	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/internal/secret"
)

// Account is the proxy's view of one upstream account, credential decrypted.
type Account struct {
	ID             int64
	Name           string
	Provider       string
	Kind           string // api_key|oauth
	BaseURL        string
	Credential     account.Credential
	EgressProxy    string // "" for direct
	Priority       int32
	Weight         int32
	MaxConcurrency int32
	Models         []string
	ModelMap       map[string]string
	State          string
	StateUntil     *time.Time
}

// Serves reports whether the account may take a request for the model now.
func (a *Account) Serves(model string, now time.Time) bool {
	if len(a.Models) > 0 && !slices.Contains(a.Models, model) {
		if _, mapped := a.ModelMap[model]; !mapped {
			return false
		}
	}
	switch a.State {
	case "active":
		return true
	case "cooling", "limited":
		return a.StateUntil != nil && !now.Before(*a.StateUntil)
	}
	return false
}

// UpstreamModel applies the account's model mapping.
func (a *Account) UpstreamModel(model string) string {
	if m, ok := a.ModelMap[model]; ok {
		return m
	}
	return model
}

// Snapshot is an immutable view: per group, the accounts its pools reach.
type Snapshot struct {
	byGroup map[int64][]*Account // sorted by priority
	loaded  time.Time
}

// Store holds the current snapshot and reloads it.
type Store struct {
	db  sqlc.DBTX
	box *secret.Box
	log *slog.Logger
	cur atomic.Pointer[Snapshot]
}

// NewStore returns a store that loads from db, decrypting with box.
func NewStore(db sqlc.DBTX, box *secret.Box, log *slog.Logger) *Store {
	return &Store{db: db, box: box, log: log}
}

// Reload reads accounts, pools and groups and swaps the snapshot in.
func (s *Store) Reload(ctx context.Context) error {
	q := sqlc.New()
	accs, err := q.AccountList(ctx, s.db)
	if err != nil {
		return fmt.Errorf("load accounts: %w", err)
	}
	poolAccs, err := q.PoolAccountList(ctx, s.db)
	if err != nil {
		return fmt.Errorf("load pool accounts: %w", err)
	}
	groupPools, err := q.GroupPoolList(ctx, s.db)
	if err != nil {
		return fmt.Errorf("load group pools: %w", err)
	}
	byID := make(map[int64]*Account, len(accs))
	for _, r := range accs {
		cred, err := account.Open(s.box, r.SecretEnc)
		if err != nil {
			// One bad row must not take every other account down with it.
			s.log.Error("account credential unreadable; account skipped", "account_id", r.ID, "err", err)
			continue
		}
		a := &Account{ID: r.ID, Name: r.Name, Provider: r.Provider, Kind: r.Kind, BaseURL: r.BaseURL,
			Credential: cred, Priority: r.Priority, Weight: r.Weight, MaxConcurrency: r.MaxConcurrency,
			Models: r.Models, State: r.State, StateUntil: r.StateUntil}
		if len(r.EgressProxyEnc) > 0 {
			p, err := s.box.Open(r.EgressProxyEnc)
			if err != nil {
				s.log.Error("account egress proxy unreadable; account skipped", "account_id", r.ID, "err", err)
				continue
			}
			a.EgressProxy = string(p)
		}
		if len(r.ModelMap) > 0 {
			if err := json.Unmarshal(r.ModelMap, &a.ModelMap); err != nil {
				s.log.Error("account model map unreadable; mapping ignored", "account_id", r.ID, "err", err)
			}
		}
		byID[r.ID] = a
	}
	byPool := map[int64][]*Account{}
	for _, pa := range poolAccs {
		if a := byID[pa.AccountID]; a != nil {
			byPool[pa.PoolID] = append(byPool[pa.PoolID], a)
		}
	}
	snap := &Snapshot{byGroup: map[int64][]*Account{}, loaded: time.Now()}
	for _, gp := range groupPools {
		for _, a := range byPool[gp.PoolID] {
			if !slices.Contains(snap.byGroup[gp.GroupID], a) {
				snap.byGroup[gp.GroupID] = append(snap.byGroup[gp.GroupID], a)
			}
		}
	}
	for _, list := range snap.byGroup {
		sort.SliceStable(list, func(i, j int) bool { return list[i].Priority < list[j].Priority })
	}
	s.cur.Store(snap)
	return nil
}

// Candidates lists the accounts of the group that may serve the provider and model now,
// by priority. Which one serves — sticky binding, load, concurrency — is decided
// atomically at admission (internal/limit); transient cooldowns live in Redis.
func (s *Store) Candidates(groupID int64, provider, model string) []*Account {
	snap := s.cur.Load()
	if snap == nil {
		return nil
	}
	now := time.Now()
	var out []*Account
	for _, a := range snap.byGroup[groupID] {
		if a.Provider == provider && a.Serves(model, now) {
			out = append(out, a)
		}
	}
	return out
}

// Models lists the distinct models the group's accounts of a provider allow; nil means
// some account allows every model.
func (s *Store) Models(groupID int64, provider string) []string {
	snap := s.cur.Load()
	if snap == nil {
		return []string{}
	}
	var out []string
	for _, a := range snap.byGroup[groupID] {
		if a.Provider != provider {
			continue
		}
		if len(a.Models) == 0 {
			return nil
		}
		out = append(out, a.Models...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
