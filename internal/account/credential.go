// Package account holds upstream accounts: their credentials, sealed at rest, and the
// validation of their base URLs.
package account

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/internal/secret"
)

// Credential is what an account authenticates upstream with: an API key, or an OAuth
// access token with its refresh token. It is stored sealed (accounts.secret_enc).
type Credential struct {
	APIKey       string    `json:"api_key,omitempty"`
	AccessToken  string    `json:"access_token,omitempty"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	ExpiresAt    time.Time `json:"expires_at,omitzero"`
}

// String never reveals the secret, so a credential logged by mistake leaks nothing.
func (c Credential) String() string { return "Credential{…}" }

// Seal encrypts the credential with the account box.
func Seal(box *secret.Box, c Credential) ([]byte, error) {
	if c.APIKey == "" && c.AccessToken == "" {
		return nil, errors.New("credential has neither an API key nor an access token")
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	return box.Seal(b), nil
}

// Open decrypts a sealed credential.
func Open(box *secret.Box, sealed []byte) (Credential, error) {
	var c Credential
	b, err := box.Open(sealed)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("decode credential: %w", err)
	}
	return c, nil
}
