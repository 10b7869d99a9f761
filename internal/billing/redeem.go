package billing

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/internal/db/sqlc"
)

// Redeem codes look like TG-7KQ4-M2XH-9PDA: twelve characters from an alphabet without
// the look-alikes 0/O and 1/I, so a code read aloud or copied from paper comes out right.
// Each character carries 5 bits (60 bits per code): guessing one is hopeless, and the
// redeem form is rate-limited on top.
const (
	codeAlphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ" // 32 symbols: a byte & 31 picks one without bias
	codeChars    = 12
	codePrefix   = "TG"
)

// Limits of a generated batch, wide enough for any real promotion and narrow enough that
// a typo (an extra zero) is caught.
const (
	MaxCodesPerBatch = 1000
	MaxCodeUses      = 1_000_000
	MaxCodeValueNano = 100_000 * 1_000_000_000 // $100,000
	MaxBatchName     = 100
)

// Errors of Redeem: the reasons a code cannot be redeemed, for the caller to explain.
var (
	ErrCodeUnknown         = errors.New("no such redeem code")
	ErrCodeExpired         = errors.New("redeem code expired")
	ErrCodeDisabled        = errors.New("redeem code disabled")
	ErrCodeUsedUp          = errors.New("redeem code used up")
	ErrCodeAlreadyRedeemed = errors.New("redeem code already redeemed by this user")
)

// BatchError says what is wrong with a requested batch, in words for the admin's form.
type BatchError struct{ Problem string }

func (e *BatchError) Error() string { return "invalid redeem batch: " + e.Problem }

// validateBatch checks a batch request against the limits above.
func validateBatch(batch string, n int, valueNano int64, maxUses int, expiresAt *time.Time, now time.Time) error {
	problem := ""
	switch {
	case batch == "":
		problem = "Give the batch a name."
	case utf8.RuneCountInString(batch) > MaxBatchName:
		problem = fmt.Sprintf("Keep the batch name under %d characters.", MaxBatchName)
	case n < 1 || n > MaxCodesPerBatch:
		problem = fmt.Sprintf("A batch has 1 to %d codes.", MaxCodesPerBatch)
	case valueNano <= 0 || valueNano > MaxCodeValueNano:
		problem = "A code is worth more than $0 and at most $100,000."
	case maxUses < 1 || maxUses > MaxCodeUses:
		problem = fmt.Sprintf("A code may be used 1 to %d times.", MaxCodeUses)
	case expiresAt != nil && !expiresAt.After(now):
		problem = "The expiry must be in the future."
	}
	if problem != "" {
		return &BatchError{Problem: problem}
	}
	return nil
}

// GenerateCodes creates a batch of n codes, each worth valueNano and redeemable by up to
// maxUses users (each once) until expiresAt (nil: no expiry), and returns the plaintexts.
// They exist only in this answer: the database keeps SHA-256 hashes and a display prefix.
// A bad request or a batch name in use is a *BatchError. Pass a transaction as db to
// make the batch part of a larger change (the console audits it in the same one).
func GenerateCodes(ctx context.Context, db sqlc.DBTX, batch string, n int, valueNano int64, maxUses int, expiresAt *time.Time, actorID int64) ([]string, error) {
	batch = strings.TrimSpace(batch)
	if err := validateBatch(batch, n, valueNano, maxUses, expiresAt, time.Now()); err != nil {
		return nil, err
	}
	q := sqlc.New()
	exists, err := q.RedeemBatchExists(ctx, db, batch)
	if err != nil {
		return nil, fmt.Errorf("check redeem batch %q: %w", batch, err)
	}
	if exists {
		return nil, &BatchError{Problem: "A batch with this name exists already. Choose another name."}
	}
	codes := make([]string, n)
	hashes := make([][]byte, n)
	prefixes := make([]string, n)
	for i := range codes {
		codes[i] = newCode()
		hashes[i] = codeHash(codes[i])
		prefixes[i] = codes[i][:len("TG-XXXX")] + "-…"
	}
	_, err = q.RedeemCodeInsertBatch(ctx, db, sqlc.RedeemCodeInsertBatchParams{
		Batch: batch, CodeHash: hashes, DisplayPrefix: prefixes, ValueNano: valueNano,
		MaxUses: int32(maxUses), ExpiresAt: expiresAt, CreatedBy: &actorID,
	})
	if err != nil {
		return nil, fmt.Errorf("insert redeem batch %q: %w", batch, err)
	}
	return codes, nil
}

// newCode draws a code from crypto/rand.
func newCode() string {
	var raw [codeChars]byte
	rand.Read(raw[:]) // never fails (crypto/rand panics on a broken source)
	var b strings.Builder
	b.WriteString(codePrefix)
	for i, r := range raw {
		if i%4 == 0 {
			b.WriteByte('-')
		}
		b.WriteByte(codeAlphabet[r&31])
	}
	return b.String()
}

// NormalizeCode turns what a user typed into the canonical TG-XXXX-XXXX-XXXX form:
// case, spaces and dashes do not matter, and the TG prefix may be left out. ok is false
// for anything that cannot be a code.
func NormalizeCode(typed string) (string, bool) {
	var body []byte
	for _, r := range strings.ToUpper(typed) {
		switch {
		case r == '-' || r == ' ' || r == '\t' || r == '\n' || r == '\r':
		case r < utf8.RuneSelf && strings.IndexByte(codeAlphabet, byte(r)) >= 0:
			body = append(body, byte(r))
		default:
			return "", false
		}
	}
	if len(body) == codeChars+len(codePrefix) && string(body[:2]) == codePrefix {
		body = body[2:]
	}
	if len(body) != codeChars {
		return "", false
	}
	var b strings.Builder
	b.WriteString(codePrefix)
	for i, c := range body {
		if i%4 == 0 {
			b.WriteByte('-')
		}
		b.WriteByte(c)
	}
	return b.String(), true
}

func codeHash(canonical string) []byte {
	sum := sha256.Sum256([]byte(canonical))
	return sum[:]
}

// Beginner starts a transaction; *pgxpool.Pool and *pgx.Conn are Beginners.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Redeem credits the code's value to the user, once per user and at most max_uses times
// per code, in one transaction: the code row is locked (so concurrent redemptions of one
// code queue up and its count never passes its limit), the use and the `redeem` ledger
// entry (ref "redeem:<code id>:<user id>") are written and the count moves. The error
// is one of the ErrCode… values when the code cannot be redeemed. The caller moves the
// user's balance snapshot after this returns.
func Redeem(ctx context.Context, db Beginner, code string, userID int64) (creditedNano int64, err error) {
	canonical, ok := NormalizeCode(code)
	if !ok {
		return 0, ErrCodeUnknown
	}
	q := sqlc.New()
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		c, err := q.RedeemCodeGetByHashForUpdate(ctx, tx, codeHash(canonical))
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrCodeUnknown
		}
		if err != nil {
			return fmt.Errorf("look up redeem code: %w", err)
		}
		used, err := q.RedeemUseExists(ctx, tx, sqlc.RedeemUseExistsParams{CodeID: c.ID, UserID: userID})
		if err != nil {
			return fmt.Errorf("check redemptions of code %d: %w", c.ID, err)
		}
		switch {
		case used:
			return ErrCodeAlreadyRedeemed
		case c.DisabledAt != nil:
			return ErrCodeDisabled
		case c.ExpiresAt != nil && !c.ExpiresAt.After(time.Now()):
			return ErrCodeExpired
		case c.UsedCount >= c.MaxUses:
			return ErrCodeUsedUp
		}
		posted, err := Post(ctx, tx, Entry{
			UserID: userID, Amount: c.ValueNano, Kind: "redeem",
			Ref:  "redeem:" + strconv.FormatInt(c.ID, 10) + ":" + strconv.FormatInt(userID, 10),
			Note: "Redeem code " + c.DisplayPrefix, // not the batch: its name is the admin's label
		})
		if err != nil {
			return err
		}
		if !posted.Applied {
			return ErrCodeAlreadyRedeemed // the ledger already holds this redemption
		}
		if _, err := q.RedeemUseInsert(ctx, tx, sqlc.RedeemUseInsertParams{CodeID: c.ID, UserID: userID, WalletTxID: posted.Row.ID}); err != nil {
			return fmt.Errorf("record redemption of code %d: %w", c.ID, err)
		}
		if err := q.RedeemCodeUse(ctx, tx, c.ID); err != nil {
			return fmt.Errorf("count redemption of code %d: %w", c.ID, err)
		}
		creditedNano = c.ValueNano
		return nil
	})
	if err != nil {
		return 0, err
	}
	return creditedNano, nil
}
