// Package secret seals credentials at rest (upstream secrets, TOTP secrets) with
// AES-256-GCM under keys derived from SECRET_KEY, one key per purpose.
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// Purposes separate the keys, so a sealed TOTP secret can never open as a credential.
const (
	PurposeAccount = "tollgate/account-secret/v1"
	PurposeTOTP    = "tollgate/totp-secret/v1"
)

// Box seals and opens values for one purpose.
type Box struct {
	aead cipher.AEAD
}

// NewBox derives the purpose's key from the 32-byte master secret.
func NewBox(master []byte, purpose string) (*Box, error) {
	if len(master) != 32 {
		return nil, errors.New("secret: master key must be 32 bytes")
	}
	key, err := hkdf.Key(sha256.New, master, nil, purpose, 32)
	if err != nil {
		return nil, fmt.Errorf("secret: derive key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Box{aead: aead}, nil
}

// Seal encrypts plaintext; the output is nonce || ciphertext.
func (b *Box) Seal(plaintext []byte) []byte {
	nonce := make([]byte, b.aead.NonceSize(), b.aead.NonceSize()+len(plaintext)+b.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return b.aead.Seal(nonce, nonce, plaintext, nil)
}

// Open decrypts what Seal produced. The error never includes the data.
func (b *Box) Open(sealed []byte) ([]byte, error) {
	n := b.aead.NonceSize()
	if len(sealed) < n+b.aead.Overhead() {
		return nil, errors.New("secret: sealed value too short")
	}
	out, err := b.aead.Open(nil, sealed[:n], sealed[n:], nil)
	if err != nil {
		return nil, errors.New("secret: cannot open sealed value (wrong SECRET_KEY?)")
	}
	return out, nil
}
