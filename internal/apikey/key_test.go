package apikey

import (
	"bytes"
	"strings"
	"testing"
)

func TestGenerate(t *testing.T) {
	a, b := Generate(), Generate()
	if a.Plaintext == b.Plaintext || bytes.Equal(a.Hash, b.Hash) {
		t.Fatal("two generated keys are equal")
	}
	if !WellFormed(a.Plaintext) {
		t.Fatalf("generated key %q is not well formed", a.Plaintext)
	}
	if !strings.HasPrefix(a.DisplayPrefix, a.Plaintext[:10]) || strings.Contains(a.DisplayPrefix, a.Plaintext[10:]) {
		t.Fatalf("display prefix %q leaks or misses the key", a.DisplayPrefix)
	}
	if !bytes.Equal(FromPlaintext(a.Plaintext).Hash, a.Hash) {
		t.Fatal("hash is not deterministic")
	}
	for _, bad := range []string{"", "tg-", "sk-" + a.Plaintext[3:], a.Plaintext + "x", a.Plaintext[:len(a.Plaintext)-1] + "!"} {
		if WellFormed(bad) {
			t.Errorf("WellFormed(%q) = true", bad)
		}
	}
}
