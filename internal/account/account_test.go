package account

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/secret"
)

func TestCredentialSealOpen(t *testing.T) {
	box, err := secret.NewBox(bytes.Repeat([]byte{1}, 32), secret.PurposeAccount)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := Seal(box, Credential{APIKey: "sk-ant-xyz"})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("sk-ant-xyz")) {
		t.Fatal("sealed credential contains the key")
	}
	c, err := Open(box, sealed)
	if err != nil || c.APIKey != "sk-ant-xyz" {
		t.Fatalf("Open = %+v, %v", c, err)
	}
	if strings.Contains(c.String(), "sk-ant") {
		t.Fatal("String() reveals the secret")
	}
	if _, err := Seal(box, Credential{}); err == nil {
		t.Fatal("empty credential sealed")
	}
}

func TestValidateBaseURL(t *testing.T) {
	ctx := context.Background()
	for _, ok := range []string{"https://203.0.113.7", "https://8.8.8.8/v1"} {
		if err := ValidateBaseURL(ctx, ok, false); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"ftp://x", "https://user:pw@8.8.8.8", "https://8.8.8.8?x=1", "http://127.0.0.1:8090",
		"http://localhost", "http://10.1.2.3", "http://169.254.169.254", "http://[::1]", "http://100.64.1.1", "http://0.0.0.0"} {
		if err := ValidateBaseURL(ctx, bad, false); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if err := ValidateBaseURL(ctx, "http://127.0.0.1:8090", true); err != nil {
		t.Errorf("loopback refused with allowPrivate: %v", err)
	}
}
