package secret

import (
	"bytes"
	"testing"
)

func TestBoxRoundTripAndPurposeSeparation(t *testing.T) {
	master := bytes.Repeat([]byte{7}, 32)
	acc, err := NewBox(master, PurposeAccount)
	if err != nil {
		t.Fatal(err)
	}
	totp, err := NewBox(master, PurposeTOTP)
	if err != nil {
		t.Fatal(err)
	}
	sealed := acc.Seal([]byte("sk-ant-secret"))
	if bytes.Contains(sealed, []byte("sk-ant-secret")) {
		t.Fatal("sealed value contains the plaintext")
	}
	got, err := acc.Open(sealed)
	if err != nil || string(got) != "sk-ant-secret" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := totp.Open(sealed); err == nil {
		t.Fatal("a TOTP box opened an account secret")
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := acc.Open(sealed); err == nil {
		t.Fatal("a tampered value opened")
	}
	if _, err := NewBox([]byte("short"), PurposeAccount); err == nil {
		t.Fatal("short master key accepted")
	}
}
