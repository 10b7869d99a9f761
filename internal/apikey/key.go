// Package apikey defines Tollgate's API key format and the proxy's in-process key cache.
//
// A key is "tg-" followed by 43 base64url characters (32 random bytes). Keys carry 256
// bits of entropy, so a single SHA-256 is a safe and fast hash to store and look up by;
// a slow password hash would only slow the hot path without adding security.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// Prefix starts every Tollgate key; it lets secret scanners and people recognise one.
const Prefix = "tg-"

// keyLen is the length of a well-formed key.
const keyLen = len(Prefix) + 43

// New is a freshly generated key. Plaintext is shown to its owner once and never stored.
type New struct {
	Plaintext     string
	Hash          []byte
	DisplayPrefix string
}

// Generate makes a new random key.
func Generate() New {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return FromPlaintext(Prefix + base64.RawURLEncoding.EncodeToString(b))
}

// FromPlaintext derives the stored form of a key (used by the seed to keep a demo key).
func FromPlaintext(plaintext string) New {
	return New{Plaintext: plaintext, Hash: Hash(plaintext), DisplayPrefix: Display(plaintext)}
}

// Hash is the lookup hash stored in api_keys.hash.
func Hash(plaintext string) []byte {
	h := sha256.Sum256([]byte(plaintext))
	return h[:]
}

// Display is the safe-to-show form: the prefix and first characters, then an ellipsis.
func Display(plaintext string) string {
	if len(plaintext) <= 10 {
		return plaintext
	}
	return plaintext[:10] + "…"
}

// WellFormed reports whether s looks like a Tollgate key. Malformed keys are refused
// without a cache or database lookup.
func WellFormed(s string) bool {
	if len(s) != keyLen || !strings.HasPrefix(s, Prefix) {
		return false
	}
	for i := len(Prefix); i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
